"""User/item biases fitted on Spark: alternating regularised passes, each one DataFrame aggregation.

Spark's ALS has no bias terms; our explicit `als` does (r_ui = mu + b_u + b_i + x_u . y_i). The
Spark engine fits the biases first, here, and factorises the residuals with Spark's ALS. One
half-pass is b_x = sum over x's ratings of (r - mu - b_other) / (n_x + reg_x), with reg_x =
reg * n_x under weighted-lambda (scale_reg): the same closed form our kernels use.
"""

from __future__ import annotations

import numpy as np


def _bias_frame(spark, key: str, values: np.ndarray):
    import pyarrow as pa

    return spark.createDataFrame(pa.table({key: pa.array(np.arange(len(values), dtype=np.int32)),
                                           "b": pa.array(values.astype(np.float64))}))


def _half_pass(spark, df, key: str, other: str, other_bias: np.ndarray | None, mu: float, reg: float,
               scale: bool, size: int) -> np.ndarray:
    from pyspark.sql import functions as F

    resid = F.col("r") - F.lit(mu)
    if other_bias is not None:
        df = df.join(F.broadcast(_bias_frame(spark, other, other_bias)), other, "left")
        resid = resid - F.coalesce(F.col("b"), F.lit(0.0))
    agg = df.groupBy(key).agg(F.sum(resid).alias("s"), F.count(F.lit(1)).alias("n")).toArrow()
    idx = agg.column(key).to_numpy()
    s = agg.column("s").to_numpy().astype(np.float64)
    n = agg.column("n").to_numpy().astype(np.float64)
    out = np.zeros(size, np.float64)
    out[idx] = s / (n + (reg * n if scale else reg))
    return out


def fit_biases(spark, df, *, mu: float, n_users: int, n_items: int, reg_user: float, reg_item: float,
               passes: int, scale: bool, start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(b_u, b_i) float32 over a DataFrame(u, i, r): each pass sets b_i from b_u, then b_u from b_i.

    start: user biases to begin from (a warm start; None: zeros).
    """
    bu: np.ndarray | None = None if start is None else np.asarray(start, np.float64)
    bi = np.zeros(n_items)
    for _ in range(passes):
        bi = _half_pass(spark, df, "i", "u", bu, mu, reg_item, scale, n_items)
        bu = _half_pass(spark, df, "u", "i", bi, mu, reg_user, scale, n_users)
    return (bu if bu is not None else np.zeros(n_users)).astype(np.float32), bi.astype(np.float32)


def fit_biases_ref(users, items, ratings, *, mu: float, n_users: int, n_items: int, reg_user: float,
                   reg_item: float, passes: int, scale: bool, start: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Plain NumPy twin of fit_biases (tests compare the two)."""
    u, i, r = np.asarray(users), np.asarray(items), np.asarray(ratings, np.float64)
    nu = np.bincount(u, minlength=n_users).astype(np.float64)
    ni = np.bincount(i, minlength=n_items).astype(np.float64)
    bu = np.zeros(n_users) if start is None else np.asarray(start, np.float64)
    bi = np.zeros(n_items)
    for _ in range(passes):
        si = np.bincount(i, weights=r - mu - bu[u], minlength=n_items)
        bi = np.divide(si, ni + (reg_item * ni if scale else reg_item), out=np.zeros(n_items),
                       where=(ni + (0 if scale else reg_item)) > 0)
        su = np.bincount(u, weights=r - mu - bi[i], minlength=n_users)
        bu = np.divide(su, nu + (reg_user * nu if scale else reg_user), out=np.zeros(n_users),
                       where=(nu + (0 if scale else reg_user)) > 0)
    return bu.astype(np.float32), bi.astype(np.float32)
