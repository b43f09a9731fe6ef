"""Why a model scored an item: exact additive splits of a recommendation's score.

An `Explanation` splits one score into parts that add up to it (float64, within float32
rounding of what `recommend` shows):

    score = base + sum(contributions) + residual

- kind "items": `keys` are the user's rated items (indices), each with its contribution.
  Factor models (svd, svdpp, als, ials, hybrid-als) read the user's vector as the ridge
  solve it is (exactly, for ALS and a fold-in; at its stationary point, for SGD):
  w = A^-1 Z^T t over the rated items' rows z_j and targets t_j, so
  z_i . w = sum_j t_j (z_i^T A^-1 z_j) + z_i^T A^-1 (A w - Z^T t). The first sum is the
  per-item attribution (implicit's ALS `explain`); the last term, `residual`, is what the
  stored vector differs from that solve (a few CG steps, SGD noise, the other side moved
  after the last user step); it is 0 up to rounding for a folded-in user. item-knn: sim x
  residual rating of each rated neighbour; content: the same over genre/tag cosine; ease and
  rp3beta: x_uj W_ji per rated item j (their score is that sum: base 0, no residual).
- kind "genres": a cold item of hybrid-als, scored from its genres: the user's affinity
  x_u . W_g plus the genre's bias w_b,g for each of the item's genres; residual = the
  distance of the stored item vector from the current genre projection.
- kind "baseline": only global mean and biases (bias model).
- kind "popular": the popularity fallback (unknown user, popularity model; ease's items
  outside `max_items`, ranked by popularity below every covered item).
- kind "none": the model has no explanation (bpr, user-knn, blend, rank-blend, fm, bpmf,
  surprise:*).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("items", "genres", "baseline", "popular", "none")


@dataclass
class Explanation:
    """One score split into parts: base + sum(contributions) + residual (see the module docstring)."""

    kind: str
    base: float = 0.0
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rated item / genre indices
    contributions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    residual: float = 0.0
    base_label: str = "global mean + biases"  # what `base` holds, as shown in reasons

    @property
    def total(self) -> float:
        """The score these parts add up to."""
        return float(self.base + self.contributions.sum() + self.residual)

    def sorted(self) -> Explanation:
        """The same parts, largest contribution first (ties by key)."""
        order = np.lexsort((self.keys, -self.contributions))
        return Explanation(self.kind, self.base, self.keys[order], self.contributions[order], self.residual,
                           self.base_label)


def ridge_parts(A: np.ndarray, Z: np.ndarray, t: np.ndarray, w: np.ndarray,
                targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split z . w for each target row z, where w is (about) the ridge solve A^-1 Z^T t.

    A: (d, d) symmetric positive definite; Z: (n, d) rows of the rated items; t: (n,) their
    targets; w: (d,) the stored solution; targets: (m, d). Returns (contributions (m, n),
    residual (m,)) with contributions.sum(1) + residual == targets @ w up to rounding.
    """
    A = np.asarray(A, np.float64)
    V = np.linalg.solve(A, np.asarray(targets, np.float64).T)  # (d, m): A^-1 z_i
    Z = np.asarray(Z, np.float64)
    t = np.asarray(t, np.float64)
    contributions = (Z @ V).T * t[None, :]
    gap = A @ np.asarray(w, np.float64) - Z.T @ t  # 0 when w is the exact solve
    return contributions, gap @ V


def factor_explanations(base: np.ndarray, A: np.ndarray, Z: np.ndarray, t: np.ndarray, w: np.ndarray,
                        targets: np.ndarray, rated: np.ndarray, extra: np.ndarray | None = None,
                        base_label: str = "global mean + item bias") -> list[Explanation]:
    """Explanations of base_i + targets_i . w for each target (extra: (m, n) parts added per rated item).

    The user's own bias, when solved with the vector, is split over the rated items too: base
    holds what the user's ratings do not move (by default the global mean and the item's bias).
    """
    contrib, resid = ridge_parts(A, Z, t, w, targets)
    if extra is not None:
        contrib = contrib + extra
    keys = np.asarray(rated, np.int64)
    return [Explanation("items", float(base[m]), keys, contrib[m], float(resid[m]), base_label).sorted()
            for m in range(len(targets))]


def popular(scores) -> list[Explanation]:
    """The popularity fallback: the whole score is the item's popularity rank score."""
    return [Explanation("popular", float(s)) for s in np.asarray(scores, np.float64)]
