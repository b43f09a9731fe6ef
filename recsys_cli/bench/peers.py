"""Peers: scikit-surprise and implicit doing the same work on the same data, split and threads.

Counterparts: surprise SVD, SVDpp, BaselineOnly and KNNBaseline for our svd, svdpp, bias and
item-knn / user-knn; implicit ALS and BPR for our ials and bpr. SVD and SVD++ are compared at
Surprise's own defaults (our `--preset surprise`, label `svd@surprise`); the other peers get
our model's hyperparameters translated (recorded in the report's settings).

What "the same work" means per step: fit on the same training ratings (building the peer's
input - Surprise trainset, users x items CSR - is not timed, as loading our data is not);
predict the same test pairs (Surprise's `test`; implicit has no pair prediction, reported as
skipped); recommend the top 10 unseen items over the items with training data for every
training user (implicit's batch `recommend`; Surprise has no top-N, so it predicts every
unseen item of a sample of users one by one - ratios use users/s); evaluate with the same
metric code. Surprise is single-threaded; implicit gets `num_threads` = --threads; BLAS is
held at one thread for everyone (as for our models).
"""

from __future__ import annotations

import heapq
import inspect
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from recsys_cli.bench.datasets import load_splits, tiny
from recsys_cli.bench.machine import dir_size_mb
from recsys_cli.bench.measure import (
    PER_ITERATION,
    TOP_N,
    make_row,
    measure,
    ranking_quality,
    ranking_setup,
    rating_quality,
    train_auc,
)

PEERS = ("surprise", "implicit")
PACKAGES = {"surprise": "scikit-surprise", "implicit": "implicit"}
COUNTERPARTS: dict[str, dict[str, str]] = {
    "surprise": {"svd": "SVD", "svdpp": "SVDpp", "bias": "BaselineOnly", "item-knn": "KNNBaseline",
                 "user-knn": "KNNBaseline"},
    "implicit": {"ials": "ALS", "bpr": "BPR"},
}
AT_PEER_DEFAULTS = {"surprise": ("SVD", "SVDpp")}  # compared with our preset named after the peer
SURPRISE_SIMILARITIES = ("cosine", "msd", "pearson", "pearson_baseline")
SURPRISE_RECOMMEND_USERS = 30
WARMUP_RATINGS = 2000


def peer_missing(peer: str) -> str | None:
    """None when the peer can be imported, else the reason it is skipped."""
    try:
        if peer == "surprise":
            import surprise  # noqa: F401
        else:
            import implicit.cpu.als  # noqa: F401
            import implicit.cpu.bpr  # noqa: F401
    except ImportError as exc:
        return f"{PACKAGES[peer]} is not installed ({exc}); install it with `make install-compare`"
    return None


def _get(config: Any, names: tuple[str, ...], default: Any) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def peer_params(peer: str, algorithm: str, model: str, config: Any) -> dict[str, Any]:
    """Constructor arguments of the peer algorithm that match our model's config."""
    if algorithm in AT_PEER_DEFAULTS.get(peer, ()):
        return {}
    if algorithm == "BaselineOnly":
        if _get(config, ("method",), "als") == "sgd":
            bsl = {"method": "sgd", "reg": config.reg, "learning_rate": config.lr, "n_epochs": config.epochs}
        else:
            bsl = {"method": "als", "reg_u": _get(config, ("reg_u",), 15), "reg_i": _get(config, ("reg_i",), 10),
                   "n_epochs": _get(config, ("epochs",), 10)}
        return {"bsl_options": bsl}
    if algorithm == "KNNBaseline":
        sim = _get(config, ("similarity", "sim", "kind"), "pearson_baseline")
        return {
            "k": int(_get(config, ("k", "neighbors", "n_neighbors"), 40)),
            "min_k": int(_get(config, ("min_k",), 1)),
            "sim_options": {
                "name": sim if sim in SURPRISE_SIMILARITIES else "pearson_baseline",
                "user_based": model == "user-knn",
                "min_support": int(_get(config, ("min_support",), 1)),
                "shrinkage": float(_get(config, ("shrinkage",), 100)),
            },
        }
    if algorithm == "ALS":
        return {
            "factors": int(_get(config, ("factors",), 100)),
            "regularization": float(_get(config, ("reg", "regularization", "reg_all"), 0.01)),
            "alpha": float(_get(config, ("alpha",), 1.0)),
            "iterations": int(_get(config, ("epochs", "iterations"), 15)),
            "use_cg": _get(config, ("solver",), "cg") != "cholesky",
        }
    if algorithm == "BPR":
        return {
            "factors": int(_get(config, ("factors",), 100)),
            "learning_rate": float(_get(config, ("lr", "learning_rate", "lr_all"), 0.01)),
            "regularization": float(_get(config, ("reg", "regularization", "reg_all"), 0.01)),
            "iterations": int(_get(config, ("epochs", "iterations"), 100)),
        }
    raise ValueError(f"no parameter mapping for {peer}:{algorithm}")


def peer_input(algorithm: str, config: Any) -> dict[str, Any]:
    """How implicit's users x items matrix is built from the training ratings, as our model does.

    `interactions` all | threshold (rating >= min_rating); `weight` binary | rating | log
    (log(1 + rating)); implicit ALS's confidence is then 1 + alpha * weight, like our ials.
    """
    if algorithm not in ("ALS", "BPR"):
        return {}
    return {
        "interactions": _get(config, ("interactions",), "all"),
        "min_rating": float(_get(config, ("min_rating",), 4.0)),
        "weight": _get(config, ("weight",), "rating") if algorithm == "ALS" else "binary",
    }


def _numpy(a) -> np.ndarray:
    """implicit's factors as a NumPy array (its GPU models hold their own matrix type)."""
    return a.to_numpy() if hasattr(a, "to_numpy") else np.asarray(a)


def implicit_matrix(data, spec: dict[str, Any]):
    """users x items float32 CSR of the kept interactions with their weights (see `peer_input`)."""
    keep = np.ones(len(data), bool) if spec["interactions"] == "all" else data.ratings >= spec["min_rating"]
    sub = data.subset(keep)
    r = sub.ratings.astype(np.float32)
    w = {"binary": np.ones_like(r), "rating": r, "log": np.log1p(r)}[spec["weight"]]
    return sub.__class__(**{**sub.__dict__, "ratings": w, "_cache": {}}).csr().astype(np.float32)


def run_peer_unit(task: dict[str, Any]) -> list[dict[str, Any]]:
    """All requested steps for one peer algorithm; a failure becomes a skipped row, not a crash."""
    from threadpoolctl import threadpool_limits

    try:
        peer_missing(task["peer"])  # load the peer's own BLAS first, so the limit below reaches it
        with threadpool_limits(limits=1, user_api="blas"):
            if task["peer"] == "surprise":
                return _surprise_unit(task)
            return _implicit_unit(task)
    except Exception as exc:  # a peer's bug must not sink our report
        return [make_row(task["model"], task["peer"], None, task["scale"],
                         skipped=f"{task['peer']}:{task['algorithm']} failed: {type(exc).__name__}: {exc}")]


def _data(task: dict[str, Any]):
    ds = task["dataset"]
    splits = load_splits(ds["name"], ds["data_dir"], task["seed"])
    return splits.train[task["split"]], splits.test[task["split"]]


def _scratch(task: dict[str, Any]) -> Path:
    return Path(tempfile.mkdtemp(prefix=".bench-peer-", dir=task["dataset"]["data_dir"]))


# ----- scikit-surprise ------------------------------------------------------------------------


def _surprise_trainset(data, path: Path, reader):
    import surprise

    table = np.column_stack([data.user_ids[data.users], data.item_ids[data.items], data.ratings])
    np.savetxt(path, table, fmt="%d,%d,%g")
    return surprise.Dataset.load_from_file(str(path), reader).build_full_trainset()


def _surprise_top_n(algo, trainset, raw_users: list[str], n: int = TOP_N) -> list[list[tuple[float, str]]]:
    """Surprise's way to a top-n: predict every unseen item with training data, keep the best n."""
    items = [trainset.to_raw_iid(j) for j in trainset.all_items()]
    out = []
    for ru in raw_users:
        seen = {trainset.to_raw_iid(j) for j, _ in trainset.ur[trainset.to_inner_uid(ru)]}
        out.append(heapq.nlargest(n, ((algo.predict(ru, ri).est, ri) for ri in items if ri not in seen)))
    return out


def _surprise_unit(task: dict[str, Any]) -> list[dict[str, Any]]:
    import surprise
    import surprise.dump

    steps, repeat, seed, scale, label = task["steps"], task["repeat"], task["seed"], task["scale"], task["model"]
    train, test = _data(task)
    cls = getattr(surprise, task["algorithm"])
    accepted = inspect.signature(cls.__init__).parameters
    extra = {k: v for k, v in {"random_state": seed, "verbose": False}.items() if k in accepted}
    rows: list[dict[str, Any]] = []
    folder = _scratch(task)
    try:
        reader = surprise.Reader(line_format="user item rating", sep=",", rating_scale=train.rating_scale)
        trainset = _surprise_trainset(train, folder / "train.csv", reader)
        small = _surprise_trainset(tiny(train, WARMUP_RATINGS), folder / "small.csv", reader)

        def new():
            return cls(**task["params"], **extra)

        m = measure(lambda: new().fit(trainset), repeat=repeat if "fit" in steps else 1,
                    warmup=lambda: new().fit(small))
        algo = m.result
        if "fit" in steps:
            surprise.dump.dump(str(folder / "model.pkl"), algo=algo)
            rows.append(make_row(label, "surprise", "fit", scale, m, work=len(train), compile_time=False,
                                 artifact_mb=dir_size_mb(folder / "model.pkl")))
        testset = [(str(u), str(i), float(r)) for u, i, r in
                   zip(test.user_ids[test.users], test.item_ids[test.items], test.ratings, strict=True)]

        def predict(k=None):
            return np.array([p.est for p in algo.test(testset[:k])], np.float32)

        if "predict" in steps:
            m = measure(predict, repeat=repeat, warmup=lambda: predict(100))
            rows.append(make_row(label, "surprise", "predict", scale, m, work=len(testset), compile_time=False))
        if "recommend" in steps:
            users = [trainset.to_raw_uid(u) for u in trainset.all_users()]
            rng = np.random.default_rng(seed)
            sample = sorted(rng.choice(users, min(SURPRISE_RECOMMEND_USERS, len(users)), replace=False).tolist())
            m = measure(lambda: _surprise_top_n(algo, trainset, sample), repeat=repeat,
                        warmup=lambda: _surprise_top_n(algo, trainset, sample[:1]))
            rows.append(make_row(label, "surprise", "recommend", scale, m, work=len(sample), compile_time=False))
        if "evaluate" in steps:
            m = measure(lambda: rating_quality(predict(), test.ratings), repeat=repeat,
                        warmup=lambda: rating_quality(predict(100), test.ratings[:100]))
            rows.append(make_row(label, "surprise", "evaluate", scale, m, work=len(testset), compile_time=False,
                                 metrics=m.result))
        if "latency" in steps:
            rows.append(make_row(label, "surprise", "latency", scale, skipped="surprise has no command line"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


# ----- implicit -------------------------------------------------------------------------------


def _implicit_unit(task: dict[str, Any]) -> list[dict[str, Any]]:
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    steps, repeat, seed, scale, label = task["steps"], task["repeat"], task["seed"], task["scale"], task["model"]
    train, test = _data(task)
    cls = AlternatingLeastSquares if task["algorithm"] == "ALS" else BayesianPersonalizedRanking
    fit_items = implicit_matrix(train, task["input"])  # what the model learns from
    small = implicit_matrix(tiny(train, WARMUP_RATINGS), task["input"])
    user_items = train.csr().astype(np.float32)  # every training item is "seen", as for our models
    cold = np.flatnonzero(train.item_counts() == 0)
    filter_items = cold if len(cold) else None
    rows: list[dict[str, Any]] = []

    laps: list[float] = []

    def fit(matrix):
        model = cls(**task["params"], random_state=seed, num_threads=task["threads"])
        laps.clear()
        model.fit(matrix, show_progress=False, callback=lambda _it, seconds, *_: laps.append(seconds))
        return model

    def top_n(users: np.ndarray) -> np.ndarray:
        ids, _ = model.recommend(users, user_items[users], N=TOP_N, filter_already_liked_items=True,
                                 filter_items=filter_items)
        return np.asarray(ids).reshape(len(users), -1)

    m = measure(lambda: fit(fit_items), repeat=repeat if "fit" in steps else 1, warmup=lambda: fit(small))
    model = m.result
    if "fit" in steps:
        folder = _scratch(task)
        try:
            model.save(str(folder / "model.npz"))
            size = dir_size_mb(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        fit_metrics = {PER_ITERATION: round(float(np.median(laps)), 6)} if laps else {}
        if task["algorithm"] == "BPR":  # implicit folds the item bias into the factors (user column of ones)
            fit_metrics["train_auc"] = train_auc(train, _numpy(model.user_factors), _numpy(model.item_factors),
                                                 None, seed)
        rows.append(make_row(label, "implicit", "fit", scale, m, work=len(train), compile_time=False, artifact_mb=size,
                             metrics=fit_metrics))
    if "predict" in steps:
        rows.append(make_row(label, "implicit", "predict", scale,
                             skipped="implicit has no rating or pair-score prediction API"))
    if "latency" in steps:
        rows.append(make_row(label, "implicit", "latency", scale, skipped="implicit has no command line"))
    if "recommend" in steps:
        users = np.flatnonzero(train.user_counts() > 0).astype(np.int32)
        m = measure(lambda: top_n(users), repeat=repeat, warmup=lambda: top_n(users[:10]))
        rows.append(make_row(label, "implicit", "recommend", scale, m, work=len(users), compile_time=False))
    if "evaluate" in steps:
        eval_users, indptr, indices = ranking_setup(train, test)
        m = measure(lambda: ranking_quality(top_n(eval_users), indptr, indices, train.n_items), repeat=repeat,
                    warmup=lambda: top_n(eval_users[:10]))
        rows.append(make_row(label, "implicit", "evaluate", scale, m, work=len(eval_users), compile_time=False,
                             metrics=m.result))
    return rows
