"""`recsys recommend RUN --all-users --engine spark --out PATH`: top-n for every user, scored on Spark.

The run's user rows (index, raw id, factors, bias, seen items) become a DataFrame; the item side
(factors, biases, ids, titles, which items have ratings) is broadcast once to every executor,
and each partition scores its users in blocks (one BLAS product per block), masks what the local
engine masks (items without ratings, each user's seen items) and keeps the top n with the same
tie rule (lower index first). Rows are written as Parquet part files with the columns of the
CLI's JSON rows: user_id, rank, item_id, title, score.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys_cli.errors import ArtifactError, UsageError
from recsys_cli.spark.session import SparkOptions, engine_info, job_errors, spark_session

OUT_SCHEMA = "user_id long, rank int, item_id long, title string, score double"
BLOCK_USERS = 512


def score_block(factors: np.ndarray, user_bias: np.ndarray, seen: list[np.ndarray], side: dict,
                n: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
    """Top-n (item indices, scores) for a block of users, as the local engine ranks them."""
    from recsys_cli.models.base import topk

    s = factors @ side["Y"].T
    if side["bi"] is not None:
        s += user_bias[:, None]
        s += side["bi"][None, :]
    s[:, side["cold"]] = -np.inf
    if exclude_seen:
        for r, items in enumerate(seen):
            s[r, items] = -np.inf
    return topk(s, n)


def _partition_scorer(side_bc, n: int, exclude_seen: bool, k: int):
    def run(batches):
        import pyarrow as pa

        side = side_bc.value
        for batch in batches:
            if batch.num_rows == 0:
                continue
            uid = batch.column(batch.schema.get_field_index("user_id")).to_numpy()
            fac = batch.column(batch.schema.get_field_index("factors"))
            F = fac.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, k)
            ub = batch.column(batch.schema.get_field_index("bias")).to_numpy().astype(np.float32)
            seen_col = batch.column(batch.schema.get_field_index("seen"))
            offs = seen_col.offsets.to_numpy()
            vals = seen_col.flatten().to_numpy(zero_copy_only=False)
            for lo in range(0, len(uid), BLOCK_USERS):
                hi = min(lo + BLOCK_USERS, len(uid))
                seen = [vals[offs[r] - offs[0]:offs[r + 1] - offs[0]] for r in range(lo, hi)]
                idx, val = score_block(F[lo:hi], ub[lo:hi], seen, side, n, exclude_seen)
                ok = idx >= 0
                rows, ranks = np.nonzero(ok)
                items = idx[ok]
                yield pa.RecordBatch.from_pydict({
                    "user_id": pa.array(uid[lo:hi][rows].astype(np.int64)),
                    "rank": pa.array((ranks + 1).astype(np.int32)),
                    "item_id": pa.array(side["item_ids"][items].astype(np.int64)),
                    "title": pa.array(side["titles"].take(pa.array(items)) if side["titles"] is not None
                                      else [None] * len(items), type=pa.string()),
                    "score": pa.array(np.round(val[ok].astype(np.float64), 6)),
                })
    return run


def _user_table(model, users: np.ndarray):
    """Arrow table of the users to score: user_id, factors, bias (mu + b_u for als), seen item indices."""
    import pyarrow as pa

    X = model.X[users]
    k = X.shape[1]
    seen_all = pa.ListArray.from_arrays(pa.array(model.seen_indptr.astype(np.int32)),
                                        pa.array(model.seen_indices.astype(np.int32)))
    bias = (model.mu + model.bu[users]).astype(np.float32) if model.name == "als" else np.zeros(len(users), np.float32)
    return pa.table({
        "user_id": pa.array(model.user_ids[users].astype(np.int64)),
        "factors": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(X).reshape(-1)), k),
        "bias": pa.array(bias),
        "seen": seen_all.take(pa.array(users.astype(np.int64))),
    })


def recommend_all_users(
    run: str,
    out: str,
    *,
    n: int = 10,
    exclude_seen: bool = True,
    artifacts_dir=None,
    force: bool = False,
    spark: SparkOptions | None = None,
    progress=None,
) -> dict[str, Any]:
    """Score every user the run knows on Spark and write Parquet to `out`; returns a summary."""
    from recsys_cli.artifacts import ArtifactStore
    from recsys_cli.progress import NullProgress

    progress = progress or NullProgress()
    store = ArtifactStore(artifacts_dir)
    model, manifest = store.load(run)
    if not hasattr(model, "X") or model.name not in ("als", "ials"):
        raise UsageError(f"--engine spark scores factor runs (als, ials); {run!r} is a {model.name!r} run: "
                         "use --engine local")
    target = local_target(out)
    if target is not None and target.exists():
        if not force:
            raise ArtifactError(f"{target} exists; use --force to replace it")
        if not (target / "_SUCCESS").exists():
            raise ArtifactError(f"{target} exists and is not a recsys recommendation output; pick another --out")
    users = np.flatnonzero(model.user_counts > 0)
    titles = store.titles(run)
    import pyarrow as pa

    side = {
        "Y": np.ascontiguousarray(model.Y, np.float32),
        "bi": model.bi.astype(np.float32) if model.name == "als" else None,
        "cold": model.item_counts == 0,
        "item_ids": model.item_ids.astype(np.int64),
        "titles": pa.array([titles.get(int(i)) for i in model.item_ids], type=pa.string()) if titles else None,
    }
    options = spark or SparkOptions()
    t0 = time.perf_counter()
    with spark_session(options, app=f"recsys recommend {run}") as session, job_errors("batch recommend"):
        info = engine_info(session)
        progress.log(f"Spark {info['spark_version']} on {info['master']}: top-{n} for {len(users):,} users of {run}")
        frame = session.createDataFrame(_user_table(model, users))
        parts = max(1, min(len(users) // BLOCK_USERS + 1, 4 * session.sparkContext.defaultParallelism))
        side_bc = session.sparkContext.broadcast(side)
        recs = frame.repartition(parts).mapInArrow(_partition_scorer(side_bc, n, exclude_seen, model.X.shape[1]),
                                                   OUT_SCHEMA)
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
            try:
                recs.write.mode("overwrite").parquet(str(tmp / "out"))
                _swap_into(tmp / "out", target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            recs.write.mode("overwrite" if force else "errorifexists").parquet(out)
        rows = session.read.parquet(str(target) if target is not None else out).count()
    seconds = time.perf_counter() - t0
    return {"run": run, "engine": "spark", "users": int(len(users)), "rows": int(rows), "n": n,
            "out": str(target) if target is not None else out, "seconds": round(seconds, 3),
            "spark_version": info["spark_version"], "master": info["master"]}


def local_target(out: str) -> Path | None:
    """The local folder `--out` names (a path, file:///path or Spark's own file:/path), None for another URI."""
    import re

    if out.startswith("file:"):
        rest = out[len("file:"):]
        if rest.startswith("//"):  # file://HOST/path: only an empty host (or localhost) is this machine
            host, _, path = rest[2:].partition("/")
            if host not in ("", "localhost"):
                raise UsageError(f"--out {out!r}: a file: URI names this machine's disk; use file:///PATH")
            rest = "/" + path
        return Path(rest)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", out):  # hdfs:, s3a:, gs:, ... (one letter would be a drive)
        return None
    return Path(out)


def _swap_into(new: Path, target: Path) -> None:
    """Move a complete output folder into place; an old one is removed only after the new one is in."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
