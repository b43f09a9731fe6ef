"""Item half-step of genre-augmented ALS (hybrid-als), with a NumPy reference twin.

For each item i, solve for [b_i, v_i] given user factors X and biases bu:

    min  sum_u (r_ui - mu - bu_u - b_i - x_u . v_i)^2
         + reg_b * b_i^2 + reg * |v_i|^2 + tau * |v_i - m_i|^2 + tau_b * (b_i - mb_i)^2

where m_i = W^T g_i and mb_i = w_b . g_i are the genre priors of the vector and the bias
(regularisers times the item's rating count when `scale`). An item with no ratings gets
v_i = tau m_i / (tau + reg*[scale? 0 : 1]) and b_i = tau_b mb_i / (tau_b + reg_b*[scale? 0 : 1]).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def hybrid_item_step(indptr, indices, ratings, X, bu, mu, V, bi, M, MB, reg, reg_b, tau, tau_b, scale):
    """In place: V (n_items, k), bi (n_items,) from item-major CSR (indptr, indices = users)."""
    n_items, k = V.shape
    K = k + 1
    for i in prange(n_items):
        A = np.zeros((K, K))
        rhs = np.zeros(K)
        z = np.empty(K)
        start, end = indptr[i], indptr[i + 1]
        n = end - start
        for p in range(start, end):
            u = indices[p]
            t = np.float64(ratings[p]) - mu - np.float64(bu[u])
            z[0] = 1.0
            for f in range(k):
                z[f + 1] = X[u, f]
            for a in range(K):
                rhs[a] += z[a] * t
                for b in range(a + 1):
                    A[a, b] += z[a] * z[b]
        w = np.float64(n) if scale else 1.0
        A[0, 0] += reg_b * w + tau_b
        rhs[0] += tau_b * np.float64(MB[i])
        for f in range(k):
            A[f + 1, f + 1] += reg * w + tau
            rhs[f + 1] += tau * np.float64(M[i, f])
        for a in range(K):
            for b in range(a + 1, K):
                A[a, b] = A[b, a]
        if A[0, 0] == 0.0:  # unrated item with no bias regularisation: bias stays 0
            A[0, 0] = 1.0
        sol = np.linalg.solve(A, rhs)
        bi[i] = sol[0]
        for f in range(k):
            V[i, f] = sol[f + 1]


def hybrid_item_step_ref(indptr, indices, ratings, X, bu, mu, V, bi, M, MB, reg, reg_b, tau, tau_b,
                         scale) -> None:
    """Plain NumPy twin of `hybrid_item_step`."""
    k = V.shape[1]
    for i in range(V.shape[0]):
        users = indices[indptr[i]:indptr[i + 1]]
        t = ratings[indptr[i]:indptr[i + 1]].astype(np.float64) - mu - bu[users]
        Z = np.hstack([np.ones((len(users), 1)), X[users].astype(np.float64)])
        w = len(users) if scale else 1.0
        D = np.diag([reg_b * w + tau_b] + [reg * w + tau] * k)
        if D[0, 0] == 0 and len(users) == 0:
            D[0, 0] = 1.0
        rhs = Z.T @ t + np.concatenate([[tau_b * float(MB[i])], tau * M[i].astype(np.float64)])
        sol = np.linalg.solve(Z.T @ Z + D, rhs)
        bi[i], V[i] = sol[0], sol[1:]


def genre_projection(G: np.ndarray, V: np.ndarray, reg_w: float, weights: np.ndarray | None = None) -> np.ndarray:
    """W minimising sum_i w_i |V_i - G_i W|^2 + reg_w |W|^2 (ridge; G is items x genres, V may be 1-D)."""
    G64 = G.astype(np.float64)
    GW = G64.T if weights is None else G64.T * weights.astype(np.float64)[None, :]
    A = GW @ G64 + reg_w * np.eye(G.shape[1])
    return np.linalg.solve(A, GW @ V.astype(np.float64)).astype(np.float32)
