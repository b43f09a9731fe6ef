"""2-D projections of item vectors for the item map: PCA, t-SNE or UMAP.

- pca (default, NumPy only): the first two principal components (SVD of the centred vectors),
  each component's sign fixed so its largest-magnitude loading is positive (same vectors, same
  picture); `variance` is each axis's share of the variance.
- tsne: scikit-learn's `sklearn.manifold.TSNE` (Barnes-Hut, cosine distance between the item
  vectors, PCA initialisation, perplexity 30 or (n - 1) / 3 when fewer points), seeded
  (random_state; with the PCA start it only enters scikit-learn's randomized SVD of that
  start, which is practically exact, so the map hardly depends on it): the same vectors and
  seed give the same map. Needs the `maps` extra
  (pip install 'recsys-cli[maps]'). Slow on large catalogues (about 1,000 gradient
  iterations over every point): at most `MAX_POINTS["tsne"]` items are projected, evenly
  spaced over the catalogue, and every face says how many are shown of how many.
- umap: umap-learn's `umap.UMAP` (cosine, 15 neighbours, seeded), only when that package is
  installed (pip install umap-learn).

t-SNE and UMAP keep neighbourhoods, not distances or variance: their axes have no units and
no variance share, and clusters look tighter than in the vectors themselves; the genre
separation is therefore reported both on the map shown and in the full factor space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.errors import UsageError

PROJECTIONS = ("pca", "tsne", "umap")
LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
AXES = {"pca": ("component 1", "component 2"), "tsne": ("t-SNE 1", "t-SNE 2"), "umap": ("UMAP 1", "UMAP 2")}
# module imported, package to install, the command that installs it
PACKAGES = {"tsne": ("sklearn.manifold", "scikit-learn", "pip install 'recsys-cli[maps]'"),
            "umap": ("umap", "umap-learn", "pip install umap-learn")}
# Items projected at most (evenly spaced over the catalogue beyond it). t-SNE: about 10-30 s for 2,000
# items on a laptop core; PCA and UMAP take every item their caller passes.
MAX_POINTS = {"tsne": 2000}


def check_projection(method: str | None) -> str:
    """The projection's canonical name; UsageError (exit 2, API 422) naming the choices or the install command."""
    name = (method or "pca").strip().lower().replace("-", "")
    if name not in PROJECTIONS:
        raise UsageError(f"unknown projection {method!r}; choose one of: {', '.join(PROJECTIONS)}")
    if name in PACKAGES:
        module, package, command = PACKAGES[name]
        try:
            __import__(module)
        except ImportError:
            raise UsageError(f"projection {name} needs {package}, which is not installed: {command}") from None
    return name


def shown_indices(n: int, method: str, max_points: int | None = None) -> np.ndarray:
    """Indices of the n items a `method` map shows: all, or at most the cap, evenly spaced (deterministic)."""
    caps = [c for c in (max_points, MAX_POINTS.get(method)) if c is not None]
    cap = min(caps) if caps else n
    if n <= cap:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, cap).round().astype(np.int64))


@dataclass
class Projection:
    method: str
    coords: np.ndarray  # (n, 2)
    variance: np.ndarray | None = None  # pca: each axis's share of the variance; None for tsne/umap

    @property
    def label(self) -> str:
        return LABELS[self.method]

    @property
    def axes(self) -> tuple[str, str]:
        return AXES[self.method]


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) coordinates on the first two principal components and each one's share of the variance.

    Each component's sign is fixed so its largest-magnitude loading is positive. Fewer than two
    vectors, or none with a dimension: zeros. One latent dimension: a flat second axis.
    """
    X = np.asarray(vectors, np.float64)
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        return np.zeros((X.shape[0] if X.ndim else 0, 2)), np.zeros(2)
    X = X - X.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    comps = vt[:2].copy()
    for row in comps:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1.0
    coords = X @ comps.T
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((len(coords), 2 - coords.shape[1]))])
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(min(2, len(var)))
    return coords, np.pad(ratio, (0, 2 - ratio.size))


def tsne_2d(vectors: np.ndarray, seed: int = 42) -> np.ndarray:
    """scikit-learn's t-SNE of the vectors (cosine distance, PCA start, seeded): (n, 2)."""
    from sklearn.manifold import TSNE

    X = np.asarray(vectors, np.float64)
    n = X.shape[0]
    if n < 4:  # t-SNE needs a perplexity below n; with this few points PCA shows the same thing
        return pca_2d(X)[0]
    perplexity = float(min(30.0, (n - 1) / 3.0))
    model = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed)
    return np.asarray(model.fit_transform(X), np.float64)


def umap_2d(vectors: np.ndarray, seed: int = 42) -> np.ndarray:
    """umap-learn's UMAP of the vectors (cosine, 15 neighbours or n - 1, seeded): (n, 2)."""
    import umap

    X = np.asarray(vectors, np.float64)
    n = X.shape[0]
    if n < 4:
        return pca_2d(X)[0]
    model = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed)
    return np.asarray(model.fit_transform(X), np.float64)


def project(vectors: np.ndarray, method: str = "pca", *, seed: int = 42) -> Projection:
    """The vectors on the 2-D map `method` draws (see the module docstring)."""
    method = check_projection(method)
    if method == "pca":
        coords, ratio = pca_2d(vectors)
        return Projection("pca", coords, ratio)
    coords = tsne_2d(vectors, seed) if method == "tsne" else umap_2d(vectors, seed)
    return Projection(method, coords)
