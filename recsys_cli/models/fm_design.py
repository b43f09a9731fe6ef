"""The block-structured design matrix of `fm`: which features each rating row carries.

A row (u, i) touches one entity in the user block (features of u) and one in the item block
(features of i); see `_kernels/fm.py` for why the matrix is kept in that factored form. The
feature groups:

    user            one-hot of the user                                    (user block)
    implicit        the items the user rated, each 1/sqrt(count) (SVD++'s N(u))     (user block)
    item            one-hot of the item                                    (item block)
    implicit_item   the users who rated the item, each 1/sqrt(count) ("flipped")   (item block)
    genres          the item's genres, each 1/sqrt(number of genres)       (item block)
    time            one-hot of the rating's time bin                       (time block)

Time bins split the training ratings' timestamps into `time_bins` periods of about equal rating
counts (`time_edges`); a rating is in the bin its timestamp falls in, a timestamp before the first
or after the last training rating in the first or last bin. The time block's vectors meet the user's
and the item's: a period effect, each item's drift across periods and each user's across periods
(the day/bin part of Koren's timeSVD++, as a factorization machine models it).

Only training ratings enter; implicit sets come from the ratings the model is fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.data.dataset import Interactions
from recsys_cli.errors import ConfigError, UsageError

USER_GROUPS = ("user", "implicit")
ITEM_GROUPS = ("item", "implicit_item", "genres")
TIME_GROUPS = ("time",)
GROUPS = USER_GROUPS + ITEM_GROUPS + TIME_GROUPS


def time_edges(timestamps: np.ndarray, bins: int) -> np.ndarray:
    """The inner edges (int64, increasing, at most bins - 1) of periods with about equal rating counts."""
    ts = np.asarray(timestamps, np.int64)
    if bins <= 1 or len(ts) == 0:
        return np.zeros(0, np.int64)
    qs = np.quantile(ts, np.arange(1, bins) / bins, method="higher").astype(np.int64)
    return np.unique(qs[qs > ts.min()])  # a period holding many ratings at one instant merges with the next


def time_bin(timestamps: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin (int32, 0 .. len(edges)) of each timestamp: bin k holds edges[k-1] <= t < edges[k]."""
    return np.searchsorted(np.asarray(edges, np.int64), np.asarray(timestamps, np.int64), side="right").astype(np.int32)


def parse_groups(text: str) -> tuple[str, ...]:
    """Validated, de-duplicated group names in canonical order."""
    names = [g.strip() for g in text.split(",") if g.strip()]
    unknown = [g for g in names if g not in GROUPS]
    if unknown:
        raise ConfigError(f"fm: unknown feature group {unknown[0]!r}; valid groups: {', '.join(GROUPS)}")
    if not names:
        raise ConfigError("fm: `groups` is empty")
    return tuple(g for g in GROUPS if g in names)


@dataclass
class Design:
    """Everything the kernels need; entity and feature ids are global (user block first)."""

    groups: tuple[str, ...]
    row_ent: np.ndarray  # (blocks, rows) int32 global entity of each row in each block
    blk_ent: np.ndarray  # (blocks + 1,) int64 entity ranges
    blk_feat: np.ndarray  # (blocks + 1,) int64 feature ranges
    blk_names: tuple[str, ...]  # "user" / "item"
    blk_joint: np.ndarray  # (blocks,) int64 how many of the block's first features are its one-hot (user / item)
    ent_ptr: np.ndarray  # entity -> features (CSR)
    ent_feat: np.ndarray
    ent_val: np.ndarray
    feat_ptr: np.ndarray  # feature -> entities (CSC)
    feat_ent: np.ndarray
    feat_val: np.ndarray
    feat_group: np.ndarray  # int32 index into groups
    feat_obs: np.ndarray  # bool: the feature touches at least one training row
    rows_ptr: np.ndarray  # entity -> its rows
    rows: np.ndarray

    @property
    def n_feat(self) -> int:
        return len(self.feat_group)

    @property
    def n_ent(self) -> int:
        return len(self.ent_ptr) - 1


def _row_scaled(m, counts: np.ndarray):
    """Binary pattern of m with each row scaled to 1/sqrt(row count) (empty rows stay empty)."""
    import scipy.sparse as sp

    b = sp.csr_matrix((np.ones(m.nnz, np.float32), m.indices, m.indptr), shape=m.shape)
    inv = np.zeros(len(counts), np.float32)
    inv[counts > 0] = 1.0 / np.sqrt(counts[counts > 0])
    return sp.diags(inv) @ b


def build_design(data: Interactions, groups: tuple[str, ...], edges: np.ndarray | None = None) -> Design:
    """The design of `data`'s rows under the chosen feature groups (sparse, never dense); `edges`: the time
    bins' edges (`time_edges`), with the time group."""
    import scipy.sparse as sp

    nu, ni, n = data.n_users, data.n_items, len(data)
    ucount = np.bincount(data.users, minlength=nu)
    icount = np.bincount(data.items, minlength=ni)
    parts: dict[str, object] = {}
    if "user" in groups:
        parts["user"] = sp.identity(nu, np.float32, format="csr")
    if "implicit" in groups:
        parts["implicit"] = _row_scaled(data.csr(), ucount)
    if "item" in groups:
        parts["item"] = sp.identity(ni, np.float32, format="csr")
    if "implicit_item" in groups:
        parts["implicit_item"] = _row_scaled(data.csc(), icount)
    if "genres" in groups:
        if data.item_genres is None or not data.item_genres.any():
            raise UsageError("fm: the genres group needs item genres, and this dataset has none")
        G = sp.csr_matrix((data.item_genres > 0).astype(np.float32))
        parts["genres"] = _row_scaled(G, np.asarray(G.sum(axis=1)).ravel())
    tbin, tcount = np.zeros(n, np.int32), np.zeros(0, np.int64)
    if "time" in groups:
        if data.timestamps is None or edges is None:
            raise UsageError("fm: the time group needs rating timestamps, and this dataset has none")
        tbin = time_bin(data.timestamps, edges)
        tcount = np.bincount(tbin, minlength=len(edges) + 1)
        parts["time"] = sp.identity(len(edges) + 1, np.float32, format="csr")

    blocks, names, group_of_feat, row_ent, ent_counts, row_orders, joint = [], [], [], [], [], [], []
    offset = 0
    for block, members, idx, count in (("user", USER_GROUPS, data.users, ucount),
                                       ("item", ITEM_GROUPS, data.items, icount),
                                       ("time", TIME_GROUPS, tbin, tcount)):
        present = [g for g in members if g in parts]
        if not present:
            continue
        blocks.append(sp.hstack([parts[g] for g in present], format="csr", dtype=np.float32))
        for g in present:
            group_of_feat.append(np.full(parts[g].shape[1], groups.index(g), np.int32))
        names.append(block)
        joint.append(parts[members[0]].shape[1] if members[0] in parts else 0)  # the one-hot comes first
        row_ent.append(np.asarray(idx, np.int64) + offset)
        ent_counts.append(count)
        row_orders.append(np.argsort(idx, kind="stable"))
        offset += blocks[-1].shape[0]
    M = sp.block_diag(blocks, format="csr", dtype=np.float32)
    M.sort_indices()
    C = M.tocsc()
    C.sort_indices()
    counts = np.concatenate(ent_counts).astype(np.int64)
    rows_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    obs = (C.T.tocsr() @ (counts > 0).astype(np.float32)) > 0
    blk_ent = np.concatenate([[0], np.cumsum([b.shape[0] for b in blocks])]).astype(np.int64)
    blk_feat = np.concatenate([[0], np.cumsum([b.shape[1] for b in blocks])]).astype(np.int64)
    return Design(
        groups=groups,
        row_ent=np.vstack(row_ent).astype(np.int32),
        blk_ent=blk_ent,
        blk_feat=blk_feat,
        blk_names=tuple(names),
        blk_joint=np.array(joint, np.int64),
        ent_ptr=M.indptr.astype(np.int64),
        ent_feat=M.indices.astype(np.int32),
        ent_val=M.data.astype(np.float32),
        feat_ptr=C.indptr.astype(np.int64),
        feat_ent=C.indices.astype(np.int32),
        feat_val=C.data.astype(np.float32),
        feat_group=np.concatenate(group_of_feat),
        feat_obs=np.asarray(obs).ravel(),
        rows_ptr=rows_ptr,
        rows=np.concatenate(row_orders).astype(np.int64) if n else np.zeros(0, np.int64),
    )
