"""`recsys train als|ials --engine spark`: Spark MLlib ALS fills a normal run of our ALS/IALS classes.

Mapping of our hyperparameters to pyspark.ml.recommendation.ALS (recorded in the manifest):

  factors -> rank, iterations -> maxIter, --seed -> seed, nonnegative=False, coldStartStrategy=drop
  als:  reg -> regParam (Spark always scales it by each row's rating count: our scale_reg=true);
        biases (ours: solved with the factors) are fitted on Spark, BIAS_PASSES alternating passes
        with reg_bias, then Spark's ALS factorises r - mu - b_u - b_i; BIAS_ROUNDS rounds of that,
        each refitting the biases to r - x_u . y_i of the previous round's factors.
  ials: implicitPrefs=True, alpha -> alpha, the rating fed to Spark is our weight w_ui (binary,
        rating or log1p), so Spark's confidence 1 + alpha*|r| is ours; interactions=threshold
        filters first. Spark's objective (mllib ALS.computeFactors) is, per row,
          (YtY + sum_i alpha|r_i| y_i y_i^T + regParam * n I) x = sum_i (1 + alpha r_i) y_i,
        n the row's count of ratings > 0: our ials with scale_reg=true, regParam = reg exactly.
        Our default (scale_reg=false, a constant reg) has no exact counterpart: regParam =
        reg / sqrt(E[n_u] E[n_i]) (see ials_reg_param) approximates it, listed in the differences.

Options Spark cannot honour, when given explicitly, are a UsageError naming them (exit 2):
scale_reg=false, solver=cg, cg_steps, init_std (Spark solves every row exactly with Cholesky and
initialises the factors itself). Their defaults are listed under `spark.differences`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from recsys_cli.errors import UsageError
from recsys_cli.spark.session import SparkOptions, checkpointing, engine_info, job_errors, spark_session

SPARK_MODELS = ("als", "ials")
CHECKPOINT_INTERVAL = 5  # iterations between lineage cuts (Spark's default is 10)
BIAS_PASSES = 5  # on ml-100k the biases after 5 passes are within 5e-4 of the converged ones
# als: Spark's ALS has no biases and cannot start from given factors, so biases and factors alternate in
# rounds: biases, a full ALS fit on the residuals, biases refitted to those factors, a new fit, ...
BIAS_ROUNDS = 3


def unhonoured(model: str, params: dict[str, Any], config) -> list[str]:
    """The explicitly given options Spark's ALS cannot honour, as 'name=value' strings."""
    bad = []
    for key in params:
        key = key.replace("-", "_")
        value = getattr(config, key, None)
        if key in ("cg_steps", "init_std") or (key == "solver" and value == "cg") or \
                (key == "scale_reg" and value is False):
            bad.append(f"{key}={value}")
    return bad


def differences(model: str, config, reg_param: float | None = None) -> list[str]:
    """What differs between this Spark fit and our local fit of the same config (empty: none but rounding)."""
    out = ["factors are initialised by Spark (unit-length random rows; ours: normal, init_std), and each "
           "iteration solves items first, then users (ours: users, then items)"]
    if config.solver == "cg":
        out.append("every row is solved exactly (Cholesky); our solver=cg takes cg_steps CG steps")
    if model == "als":
        out.append(f"biases and factors alternate in {BIAS_ROUNDS} rounds (biases by {BIAS_PASSES} passes, "
                   "reg_bias, then a full Spark ALS fit on the residuals); ours refines the biases with the "
                   "factors every iteration")
    elif not config.scale_reg:
        out.append(f"Spark scales regParam by each row's interaction count and our scale_reg=false does not: "
                   f"reg={config.reg:g} mapped to regParam={reg_param:.6g} (reg / sqrt(E[n_u] E[n_i]), E[n] the "
                   "interaction count of the row an interaction belongs to), an approximation; with "
                   "scale_reg=true both minimise the same objective and regParam = reg")
    return out


def ials_reg_param(config, users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> float:
    """Spark's regParam for our ials `reg`: reg / g, g = sqrt(E[n_u] * E[n_i]) over the interactions.

    Spark regularises a row by regParam * (its interaction count n), ours by reg. E[n] is the count
    of the row an interaction belongs to (sum n^2 / sum n): the rows that hold most interactions
    then get our regularisation. On ml-100k (per-user split, defaults) nDCG@10 peaks near this
    value; the plain mean count over-regularises (Spark nDCG 0.449 against our 0.486).
    """
    keep = ratings >= config.min_rating if config.interactions == "threshold" else slice(None)
    u, i = users[keep], items[keep]
    total = max(1, len(u))
    nu = np.bincount(u).astype(np.float64)
    ni = np.bincount(i).astype(np.float64)
    g = np.sqrt(((nu ** 2).sum() / total) * ((ni ** 2).sum() / total))
    return float(config.reg) / max(1.0, float(g))


def _factors(frame, n: int, k: int) -> np.ndarray:
    """Spark's (id, features) factor DataFrame -> float32 (n, k), zero rows where Spark has none."""
    table = frame.toArrow()
    ids = table.column("id").to_numpy()
    feats = table.column("features").combine_chunks()
    values = feats.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(ids), k)
    out = np.zeros((n, k), np.float32)
    out[ids] = values
    return out


def _residual_frame(spark, df, mu: float, bu: np.ndarray, bi: np.ndarray):
    """DataFrame(u, i, r - mu - b_u - b_i): what Spark's ALS factorises for our explicit als."""
    from pyspark.sql import functions as F

    from recsys_cli.spark.biases import _bias_frame

    return (df.join(F.broadcast(_bias_frame(spark, "u", bu).withColumnRenamed("b", "bu")), "u")
              .join(F.broadcast(_bias_frame(spark, "i", bi).withColumnRenamed("b", "bi")), "i")
              .select("u", "i", (F.col("r") - F.lit(mu) - F.col("bu") - F.col("bi")).cast("float").alias("r")))


def _ials_frame(df, config):
    """DataFrame(u, i, r) with r = our weight w_ui (after the interactions filter)."""
    from pyspark.sql import functions as F

    if config.interactions == "threshold":
        df = df.where(F.col("r") >= F.lit(config.min_rating))
    w = {"binary": F.lit(1.0), "rating": F.col("r"), "log": F.log1p(F.col("r"))}[config.weight]
    return df.select("u", "i", w.cast("float").alias("r"))


def train_spark_run(
    model_name: str,
    dataset_name: str,
    *,
    split: str | None = None,
    params: dict[str, Any] | None = None,
    preset: str | None = None,
    seed: int = 42,
    run_name: str | None = None,
    data_dir=None,
    artifacts_dir=None,
    force: bool = False,
    progress=None,
    mlflow=None,
    spark: SparkOptions | None = None,
) -> dict[str, Any]:
    """Train als/ials on Spark and save a standard run (manifest engine: spark); the summary train_run gives."""
    from recsys_cli import ledger
    from recsys_cli.artifacts import ArtifactStore, check_run_name
    from recsys_cli.models.registry import create_model, get_model_class
    from recsys_cli.progress import NullProgress
    from recsys_cli.settings import processed_dir
    from recsys_cli.spark.reading import dataset_meta
    from recsys_cli.training import default_run_name

    if model_name not in SPARK_MODELS:
        raise UsageError(f"--engine spark trains {' and '.join(SPARK_MODELS)} only, not {model_name!r}; "
                         "use --engine local for it")
    params = dict(params or {})
    config = create_model(model_name, params, preset).config
    bad = unhonoured(model_name, params, config)
    if bad:
        raise UsageError(f"Spark's ALS cannot honour {', '.join(bad)}; drop it or use --engine local")
    run = check_run_name(run_name or default_run_name(model_name, dataset_name, split))
    store = ArtifactStore(artifacts_dir)
    store.check_writable(run, force=force)
    path = processed_dir(dataset_name, data_dir)
    meta = dataset_meta(path)
    progress = progress or NullProgress()
    options = spark or SparkOptions()
    t_session = time.perf_counter()
    with spark_session(options, app=f"recsys train {model_name}") as session, job_errors("training"):
        session_seconds = time.perf_counter() - t_session
        info = engine_info(session)
        progress.log(f"Spark {info['spark_version']} on {info['master']}: training {model_name} on {dataset_name}"
                     + (f" split {split}" if split else " (all ratings)"))
        t0 = time.perf_counter()
        state, fit_info, n_train, spark_params, diffs = _fit_on_spark(
            session, model_name, config, path, meta, split, seed, progress)
        seconds = time.perf_counter() - t0
    cls = get_model_class(model_name)
    model = cls.from_state(config, state)
    fit_info.update(spark_session_seconds=round(session_seconds, 3))
    model.fit_info = fit_info
    spark_record = {**info, "conf": options.conf, "als_params": spark_params, "differences": diffs}
    saved = store.save(
        run, model, dataset=dataset_name, fingerprint=meta.get("fingerprint", ""), split=split, seed=seed,
        train_seconds=seconds, titles=_titles(path),
        extra={"preset": preset, "n_train_ratings": n_train, "engine": "spark", "spark": spark_record,
               "split_fingerprint": _split_fingerprint(dataset_name, split, data_dir)},
        force=force,
    )
    entry = dict(run=run, model=model_name, params=config.to_dict(), seed=seed, dataset=dataset_name,
                 fingerprint=meta.get("fingerprint", ""), split=split,
                 timings={"train_seconds": round(seconds, 4)})
    ledger.record("train", root=artifacts_dir, **entry)
    if mlflow is not None:
        from recsys_cli.tracking import log_run

        log_run(mlflow, "train", run_path=saved, **entry)
    return {
        "run": run, "model": model_name, "dataset": dataset_name, "split": split, "seed": seed,
        "train_ratings": n_train, "train_seconds": round(seconds, 3), "path": str(saved),
        "config": config.to_dict(), "fit_info": fit_info, "engine": "spark", "spark": spark_record,
    }


def _split_fingerprint(dataset_name: str, split: str | None, data_dir) -> str | None:
    """The split's identity as the local engine records it (evaluate refuses the run if the split is replaced)."""
    if not split:
        return None
    from recsys_cli.data.dataset import load_dataset

    return load_dataset(dataset_name, data_dir).split_fingerprint(split)


def _titles(path) -> dict[int, str]:
    import pyarrow.parquet as pq

    t = pq.read_table(path / "items.parquet", columns=["item_id", "title"])
    return dict(zip(t.column("item_id").to_pylist(), t.column("title").to_pylist(), strict=False))


def _fit_on_spark(spark, model_name, config, path, meta, split, seed, progress):
    """(state dict for from_state, fit_info, n_train, ALS params, differences)."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    from recsys_cli.data.dataset import Interactions
    from recsys_cli.models.registry import get_model_class
    from recsys_cli.spark.biases import fit_biases
    from recsys_cli.spark.reading import read_part, to_index_space, vocabularies

    user_ids, item_ids = vocabularies(spark, path)
    n_users, n_items = len(user_ids), len(item_ids)
    train = read_part(spark, path, meta, split, "train")
    df = to_index_space(spark, train, user_ids, item_ids).select("u", "i", F.col("rating").cast("double").alias("r"))
    df = df.cache()
    # The run stores every model's common arrays (seen lists, counts, fallback baselines): the driver
    # collects the training triples once, 12 bytes a rating, and computes them as the local engine does.
    table = df.toArrow()
    if table.num_rows == 0:
        raise UsageError("cannot train on an empty set of ratings")
    users = table.column("u").to_numpy().astype(np.int32)
    items = table.column("i").to_numpy().astype(np.int32)
    ratings = table.column("r").to_numpy().astype(np.float32)
    del table
    order = np.lexsort((items, users))
    users, items, ratings = users[order], items[order], ratings[order]
    lo, hi = meta.get("rating_scale", [0.5, 5.0])
    data = Interactions(users=users, items=items, ratings=ratings, user_ids=user_ids, item_ids=item_ids,
                        rating_scale=(float(lo), float(hi)))
    common = get_model_class(model_name)(config)
    common._fit_common(data)
    state = {f"core.{k}": getattr(common, k) for k in common._COMMON}
    state["core.global_mean"] = np.float32(common.global_mean)
    state["core.rating_scale"] = np.asarray(common.rating_scale, np.float64)
    mu = float(common.global_mean)
    k = config.factors
    als_params = dict(rank=k, maxIter=config.iterations, seed=int(seed), nonnegative=False,
                      coldStartStrategy="drop", userCol="u", itemCol="i", ratingCol="r")
    fit_info: dict[str, Any] = {"engine": "spark"}
    rounds = 1
    if model_name == "als":
        rounds = BIAS_ROUNDS
        t0 = time.perf_counter()
        bu, bi = fit_biases(spark, df, mu=mu, n_users=n_users, n_items=n_items, reg_user=config.reg_bias,
                            reg_item=config.reg_bias, passes=BIAS_PASSES, scale=config.scale_reg)
        bias_seconds = time.perf_counter() - t0
        progress.log(f"biases fitted on Spark in {bias_seconds:.1f} s ({BIAS_PASSES} passes)")
        als_params.update(regParam=float(config.reg), implicitPrefs=False)
        diffs = differences("als", config)
    else:
        fit_frame = _ials_frame(df, config)
        # weighted-lambda (scale_reg): Spark's objective exactly; else the approximate mapping.
        reg_param = float(config.reg) if config.scale_reg else ials_reg_param(config, users, items, ratings)
        als_params.update(regParam=reg_param, implicitPrefs=True, alpha=float(config.alpha))
        diffs = differences("ials", config, reg_param)
    als_seconds = 0.0
    with checkpointing(spark, progress) as checkpoints:
        if checkpoints:
            als_params["checkpointInterval"] = CHECKPOINT_INTERVAL
        for round_ in range(rounds):
            if model_name == "als":
                fit_frame = _residual_frame(spark, df, mu, bu, bi)
            t0 = time.perf_counter()
            fitted = ALS(**als_params).fit(fit_frame)
            als_seconds += time.perf_counter() - t0
            if round_ + 1 < rounds:
                # Biases given these factors: the same passes over r - x_u . y_i (Spark's prediction), warm.
                t0 = time.perf_counter()
                # cached: each of the passes reads it, and recomputing the ALS transform per pass cost 10x
                dots = fitted.transform(df).select("u", "i", (F.col("r") - F.col("prediction")).alias("r")).cache()
                bu, bi = fit_biases(spark, dots, mu=mu, n_users=n_users, n_items=n_items, reg_user=config.reg_bias,
                                    reg_item=config.reg_bias, passes=BIAS_PASSES, scale=config.scale_reg,
                                    start=bu)
                dots.unpersist()
                bias_seconds += time.perf_counter() - t0
                progress.log(f"round {round_ + 1}/{rounds}: biases refitted to Spark's factors")
        X = _factors(fitted.userFactors, n_users, k)  # collected while the checkpoints still exist
        Y = _factors(fitted.itemFactors, n_items, k)
    df.unpersist()
    if model_name == "als":
        fit_info["bias_seconds"] = round(bias_seconds, 3)
        fit_info["bias_rounds"] = rounds
    fit_info["als_seconds"] = round(als_seconds, 3)
    # Spark runs the iterations inside one fit: per iteration is the fits' wall time over their iterations.
    fit_info["seconds_per_iteration"] = round(als_seconds / (config.iterations * rounds), 6)
    progress.log(f"Spark ALS fitted in {als_seconds:.1f} s ({rounds} x {config.iterations} iterations)")
    if model_name == "als":
        state.update({"model.mu": np.float32(mu), "model.bu": bu, "model.bi": bi, "model.X": X, "model.Y": Y})
        pred = mu + bu[users] + bi[items] + np.einsum("ij,ij->i", X[users], Y[items])
        fit_info["train_rmse"] = [float(np.sqrt(np.mean((pred - ratings) ** 2)))]
    else:
        from recsys_cli.models._kernels.ials import gram

        state.update({"model.X": X, "model.Y": Y, "model.YtY": gram(Y)})
    return state, fit_info, int(len(ratings)), {k_: v for k_, v in als_params.items()}, diffs
