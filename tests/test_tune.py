"""`recsys tune`: search-space parsing, Optuna samplers and pruners, resumable studies, nested CV + holdout,
ledger, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recsys_cli import ledger
from recsys_cli.cli.app import app
from recsys_cli.data.dataset import load_dataset
from recsys_cli.errors import ConfigError, UsageError
from recsys_cli.evaluation import tuning as T
from recsys_cli.evaluation.search_space import (
    Distribution,
    grid_trials,
    parse_distribution,
    parse_grid,
    parse_space,
    plan_search,
)

N_USERS, N_ITEMS, PER_USER = 120, 80, 30
N_RATINGS = N_USERS * PER_USER
SVD_GRID = ["--grid", "lr_all=0.00001,0.01", "-p", "factors=2", "-p", "epochs=6"]


def write_dataset(data_dir: Path, name: str = "syn", seed: int = 0) -> Path:
    """A processed dataset (LAYOUT.md) whose ratings come from a planted rank-2 model plus noise."""
    rng = np.random.default_rng(seed)
    p, q = rng.normal(0, 0.8, (N_USERS, 2)), rng.normal(0, 0.8, (N_ITEMS, 2))
    bu, bi = rng.normal(0, 0.5, N_USERS), rng.normal(0, 0.5, N_ITEMS)
    users = np.repeat(np.arange(N_USERS), PER_USER)
    items = np.concatenate([rng.choice(N_ITEMS, PER_USER, replace=False) for _ in range(N_USERS)])
    true = 3.2 + bu[users] + bi[items] + np.einsum("ij,ij->i", p[users], q[items])
    ratings = np.clip(np.round((true + rng.normal(0, 0.3, len(users))) * 2) / 2, 0.5, 5.0)
    path = data_dir / "processed" / name
    path.mkdir(parents=True)
    pq.write_table(pa.table({
        "user_id": pa.array(users + 1, pa.int32()),
        "item_id": pa.array(items + 1, pa.int32()),
        "rating": pa.array(ratings, pa.float32()),
        "timestamp": pa.array(np.arange(len(users)) * 60, pa.int64()),
    }), path / "ratings.parquet")
    pq.write_table(pa.table({
        "item_id": pa.array(np.arange(1, N_ITEMS + 1), pa.int32()),
        "title": pa.array([f"Movie {i}" for i in range(1, N_ITEMS + 1)], pa.string()),
        "year": pa.array([1990 + i % 20 for i in range(N_ITEMS)], pa.int16()),
        "genres": pa.array([["Drama"] if i % 2 else ["Comedy", "Action"] for i in range(N_ITEMS)], pa.list_(pa.string())),
    }), path / "items.parquet")
    meta = {"schema_version": 1, "name": name, "layout": "generic", "n_ratings": len(users), "n_users": N_USERS,
            "n_items": N_ITEMS, "rating_scale": [0.5, 5.0], "fingerprint": f"sha256:test-{seed}", "splits": {}}
    (path / "dataset.json").write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tune-data")
    write_dataset(root)
    return root


# ------------------------------------------------------------------------ parsing
def test_parse_grid_good_and_bad():
    assert parse_grid(["factors=10, 20", "lr-all=0.01", "biased=true,false"]) == {
        "factors": ["10", "20"], "lr_all": ["0.01"], "biased": ["true", "false"]}
    assert parse_grid(["k=1,1,2"]) == {"k": ["1", "2"]}
    assert grid_trials({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    for bad in (["factors"], ["factors="], ["=1,2"], ["factors=1,,2"], ["k=1", "k=2"], ['models="ials,ease']):
        with pytest.raises(UsageError):
            parse_grid(bad)


def test_quoted_values_hold_commas():
    """rank-blend's `models` is itself a comma-separated list: quoted, it is one grid value or one choice."""
    assert parse_grid(['models="ials,ease", "ials,ease,rp3beta"', "fusion=rank,score"]) == {
        "models": ["ials,ease", "ials,ease,rp3beta"], "fusion": ["rank", "score"]}
    assert parse_space(['models=choice("ials,ease",ials)']) == {
        "models": Distribution("choice", ("ials,ease", "ials"))}


def test_parse_space_good():
    space = parse_space(["lr_all=loguniform(1e-4, 0.1)", "reg=uniform(0,.5)", "factors=int(2,8)",
                         "k=intlog(1,100)", "method=choice(als, sgd)"])
    assert space == {
        "lr_all": Distribution("loguniform", (1e-4, 0.1)), "reg": Distribution("uniform", (0.0, 0.5)),
        "factors": Distribution("int", (2, 8)), "k": Distribution("intlog", (1, 100)),
        "method": Distribution("choice", ("als", "sgd")),
    }
    assert str(space["factors"]) == "int(2,8)"


@pytest.mark.parametrize("text", [
    "normal(0,1)", "loguniform(0,1)", "loguniform(-1,1)", "uniform(2,1)", "uniform(1,1)", "int(1.5,3)",
    "int(5,2)", "intlog(0,5)", "loguniform(1)", "uniform(1,2,3)", "choice()", "choice(a,,b)", "uniform(a,b)",
    "__import__('os').system('true')", "uniform(1,2", "uniform(1,2)+1", "1e-3",
])
def test_parse_distribution_rejects(text):
    with pytest.raises(UsageError):
        parse_distribution(text, "x")


def _draws(space, n, sampler="random", seed=7):
    """n draws of an Optuna sampler from a parsed space, with no objective (the values only)."""
    import optuna

    from recsys_cli.evaluation.study import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(sampler, seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append({k: d.suggest(trial, k) for k, d in space.items()})
        study.tell(trial, 0.0)
    return out


def test_sampled_values_deterministic_by_seed_and_in_bounds():
    space = parse_space(["lr=loguniform(0.001,0.1)", "u=uniform(-1,1)", "n=int(2,4)", "m=intlog(1,1000)",
                         "c=choice(a,b,c)"])
    a, b = _draws(space, 200), _draws(space, 200)
    assert a == b
    assert a != _draws(space, 200, seed=8)
    lr = np.array([t["lr"] for t in a])
    assert lr.min() >= 0.001 and lr.max() <= 0.1
    assert (np.log10(lr) < -2).mean() == pytest.approx(0.5, abs=0.12)  # log-uniform: half below 0.01
    assert all(-1 <= t["u"] <= 1 for t in a)
    assert {t["n"] for t in a} == {2, 3, 4}  # both ends included
    m = np.array([t["m"] for t in a])
    assert m.min() >= 1 and m.max() <= 1000 and (m < 32).mean() == pytest.approx(0.5, abs=0.12)
    assert {t["c"] for t in a} == {"a", "b", "c"}
    assert all(isinstance(t["n"], int) and isinstance(t["m"], int) for t in a)
    assert all(t["lr"] == float(f"{t['lr']:.6g}") for t in a)  # 6 significant digits, readable configs


def test_tpe_concentrates_where_the_objective_is_good():
    """TPE, after its 10 random start-up trials, draws near the optimum far more often than random search."""
    import optuna

    from recsys_cli.evaluation.study import make_sampler

    space = parse_space(["x=uniform(0,10)"])

    def run(sampler):
        study = optuna.create_study(sampler=make_sampler(sampler, 3))
        xs = []
        for _ in range(40):
            trial = study.ask()
            x = space["x"].suggest(trial, "x")
            xs.append(x)
            study.tell(trial, (x - 7.3) ** 2)
        return np.array(xs[10:])

    near = lambda xs: float(np.mean(np.abs(xs - 7.3) < 1.0))  # noqa: E731
    assert near(run("tpe")) > 0.5 > 0.3 > near(run("random"))


def test_metrics_and_direction():
    assert T.check_metric("rmse") == ("rmse", None)
    assert T.check_metric("ndcg@20") == ("ndcg", 20)
    for bad in ("rmsee", "ndcg", "ndcg@0", "ndcg@x", "rmse@10", "users_skipped"):
        with pytest.raises(UsageError, match="known metrics"):
            T.check_metric(bad)
    assert T.lower_is_better("rmse") and T.lower_is_better("popularity_bias@10")
    assert not T.lower_is_better("ndcg@10") and not T.lower_is_better("auc")
    s = T.metric_settings("recall@5", "any")
    assert s.ks == (5,) and s.relevance == "any" and not s.rating_metrics and s.ranking_metrics


def test_plan_search_validates_before_running():
    plan = plan_search("svd", grid={"factors": ["2", "4"], "lr_all": ["0.01"]}, fixed={"epochs": "3"})
    assert plan.sampler == "grid" and plan.n_trials == 2 and plan.fixed == {"epochs": "3"}
    sampled = plan_search("svd", space={"lr_all": Distribution("loguniform", (0.001, 0.1))}, n_trials=5)
    assert sampled.sampler == "tpe" and sampled.n_trials == 5
    assert plan_search("svd", space=sampled.space, n_trials=5, sampler="random").sampler == "random"
    with pytest.raises(ConfigError, match="valid parameters: factors, epochs"):
        plan_search("svd", grid={"factorz": ["1", "2"]})
    with pytest.raises(ConfigError, match="valid parameters"):
        plan_search("svd", space={"lr": Distribution("uniform", (0.0, 1.0))}, n_trials=2)
    with pytest.raises(ConfigError):
        plan_search("svd", grid={"factors": ["2", "many"]})
    with pytest.raises(ConfigError):  # a range the config refuses at one end
        plan_search("svd", space={"factors": Distribution("int", (-3, 5))}, n_trials=2)
    with pytest.raises(UsageError, match="not both"):
        plan_search("svd", grid={"factors": ["2"]}, space={"lr_all": Distribution("uniform", (0.0, 1.0))}, n_trials=2)
    with pytest.raises(UsageError, match="--space"):
        plan_search("svd", n_trials=3)
    with pytest.raises(UsageError, match="both fixed"):
        plan_search("svd", grid={"factors": ["2"]}, fixed={"factors": "3"})
    with pytest.raises(UsageError, match="nothing to tune"):
        plan_search("svd")
    with pytest.raises(UsageError, match="--grid runs every combination"):
        plan_search("svd", grid={"factors": ["2"]}, sampler="tpe")
    with pytest.raises(UsageError, match="--sampler grid"):
        plan_search("svd", space=sampled.space, n_trials=2, sampler="grid")
    with pytest.raises(UsageError, match="unknown --sampler"):
        plan_search("svd", space=sampled.space, n_trials=2, sampler="bayes")


def test_cmaes_without_its_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a))
    with pytest.raises(UsageError, match=r"pip install 'recsys-cli\[cmaes\]'"):
        plan_search("svd", space={"lr_all": Distribution("uniform", (0.001, 0.01))}, n_trials=2, sampler="cmaes")


# ------------------------------------------------------------------------ the search
def test_tuning_portions_are_disjoint_and_cover_the_ratings(data_dir):
    ds = load_dataset("syn", data_dir)
    tune, test, desc = T.tuning_portions(ds, split=None, holdout=True, seed=3)
    assert len(test) == round(0.2 * N_RATINGS) and len(tune) + len(test) == N_RATINGS
    pairs = lambda d: set(zip(d.users.tolist(), d.items.tolist(), strict=True))  # noqa: E731
    assert not pairs(tune) & pairs(test)
    assert desc["n_tune"] == len(tune) and desc["n_test"] == len(test)
    full, none, _ = T.tuning_portions(ds, split=None, holdout=False, seed=3)
    assert len(full) == N_RATINGS and none is None


def test_cv_folds_follow_a_per_user_split(tmp_path):
    from recsys_cli.data.splits import create_split, kfold, user_kfold

    data_dir = tmp_path / "data"
    write_dataset(data_dir)
    create_split(data_dir / "processed" / "syn", "user", name="peruser", test=0.25, seed=2)
    create_split(data_dir / "processed" / "syn", "random", name="rand", test=0.25, seed=2)
    ds = load_dataset("syn", data_dir)
    tune_part, _, desc = T.tuning_portions(ds, split="peruser", holdout=True, seed=1)
    assert desc["split_kind"] == "user"
    codes, kind = T.cv_fold_codes(tune_part, cv=4, seed=1, cv_folds="auto", split_kind=desc["split_kind"])
    assert kind == "user"
    for u in range(N_USERS):  # every user has a quarter of their tuning ratings in each fold (+-1)
        per_fold = np.bincount(codes[tune_part.users == u], minlength=4)
        assert per_fold.max() - per_fold.min() <= 1
    codes, kind = T.cv_fold_codes(tune_part, cv=4, seed=1, cv_folds="ratings", split_kind="user")
    assert kind == "ratings" and np.array_equal(codes, kfold(len(tune_part), k=4, seed=1))
    assert T.cv_fold_codes(tune_part, cv=4, seed=1, cv_folds="auto", split_kind="random")[1] == "ratings"
    assert T.cv_fold_codes(tune_part, cv=4, seed=1, cv_folds="auto", split_kind=None)[1] == "ratings"
    with pytest.raises(UsageError, match="--cv-folds"):
        T.cv_fold_codes(tune_part, cv=4, seed=1, cv_folds="items", split_kind="user")
    plan = plan_search("popularity", grid={"min_ratings": ["1", "5"]})
    out = T.tune("popularity", "syn", plan, metric="ndcg@5", relevance="any", cv=3, split="peruser", seed=1,
                 data_dir=data_dir, artifacts_dir=tmp_path / "art")
    assert out["cv_folds"] == "user"
    (final,) = ledger.query(root=tmp_path / "art", kind="tune")
    assert final["protocol"]["cv_folds"] == "user"
    # each fold's score is the model fitted and scored on exactly the per-user folds
    from recsys_cli.evaluation.protocols import score_model
    from recsys_cli.models.registry import create_model

    tune_part, _, _ = T.tuning_portions(load_dataset("syn", data_dir), split="peruser", holdout=True, seed=1)
    codes = user_kfold(tune_part.users, k=3, seed=1)
    settings = T.metric_settings("ndcg@5", "any")
    first = out["trials"][0]
    for f, got in enumerate(first["fold_scores"]):
        train, test = tune_part.subset(codes != f), tune_part.subset(codes == f)
        model = create_model("popularity", first["params"]).fit(train, seed=1)
        assert got == pytest.approx(score_model(model, train, test, settings)["ndcg@5"], rel=1e-6)
    rand = T.tune("popularity", "syn", plan, metric="ndcg@5", relevance="any", cv=3, split="rand", seed=1,
                  data_dir=data_dir, artifacts_dir=tmp_path / "art")
    assert rand["cv_folds"] == "ratings"


def test_tune_finds_the_learning_rate_that_can_learn(data_dir, tmp_path):
    trials = plan_search("svd", grid={"lr_all": ["0.00001", "0.01"]}, fixed={"factors": "2", "epochs": "6"})
    seen = []
    out = T.tune("svd", "syn", trials, metric="rmse", cv=2, seed=5, data_dir=data_dir,
                 artifacts_dir=tmp_path, on_trial=seen.append)
    assert out["best_params"] == {"factors": 2, "epochs": 6, "lr_all": 0.01}
    assert out["direction"] == "minimize" and [r["trial"] for r in seen] == [0, 1]  # grid: in the order given
    assert [t["state"] for t in out["trials"]] == ["complete", "complete"] and out["sampler"] == "grid"
    slow, fast = out["trials"]
    assert fast["score"] < slow["score"] - 0.05 and out["best_score"] == fast["score"]
    assert len(fast["fold_scores"]) == 2 and out["best_std"] == pytest.approx(np.std(fast["fold_scores"]))
    # the holdout number is the best config refitted on the tuning portion, scored on the held-out part only
    h = out["holdout"]
    assert h["n_test"] == round(0.2 * N_RATINGS) and h["n_tune"] == out["n_tune_ratings"] == N_RATINGS - h["n_test"]
    from recsys_cli.evaluation.protocols import EvalSettings, score_model
    from recsys_cli.models.registry import create_model

    tune_part, test_part, _ = T.tuning_portions(load_dataset("syn", data_dir), split=None, holdout=True, seed=5)
    model = create_model("svd", out["best_params"]).fit(tune_part, seed=5)
    expect = score_model(model, tune_part, test_part, EvalSettings(rating_metrics=True, ranking_metrics=False))
    assert h["score"] == pytest.approx(expect["rmse"], rel=1e-6) and h["metrics"]["rmse"] == h["score"]
    assert "ndcg@10" in h["metrics"]
    rows = ledger.query(root=tmp_path, kind="tune-trial")
    assert len(rows) == 2 and {r["params"]["lr_all"] for r in rows} == {1e-5, 0.01}
    assert sorted(r["metrics"]["rmse"] for r in rows) == sorted(t["score"] for t in out["trials"])
    (final,) = ledger.query(root=tmp_path, kind="tune")
    assert final["params"]["lr_all"] == 0.01 and final["metrics"]["rmse"] == h["score"]


def test_random_search_is_reproducible_and_parallel_equals_serial(data_dir, tmp_path):
    space = parse_space(["reg_u=loguniform(0.1,50)", "reg_i=uniform(0,20)"])
    trials = plan_search("bias", space=space, n_trials=3, sampler="random")
    one = T.tune("bias", "syn", trials, metric="mae", cv=2, seed=11, data_dir=data_dir, artifacts_dir=tmp_path, jobs=1,
                 pruner="none")
    two = T.tune("bias", "syn", trials, metric="mae", cv=2, seed=11, data_dir=data_dir, artifacts_dir=tmp_path, jobs=2,
                 pruner="none")
    strip = lambda r: [{k: t[k] for k in ("params", "score", "std", "fold_scores")} for t in r["trials"]]  # noqa: E731
    assert strip(one) == strip(two)
    assert one["best_params"] == two["best_params"] and one["holdout"]["score"] == two["holdout"]["score"]
    assert len(ledger.query(root=tmp_path, kind="tune-trial")) == 6


def test_early_stopping_records_the_chosen_epochs(data_dir, tmp_path):
    trials = plan_search("svd", grid={"lr_all": ["0.01"]}, fixed={"factors": "2", "epochs": "8"})
    out = T.tune("svd", "syn", trials, metric="rmse", cv=2, seed=1, data_dir=data_dir, artifacts_dir=tmp_path,
                 early_stopping=True, holdout=False)
    (trial,) = out["trials"]
    info = trial["early_stopping"]
    tried = {int(e): s for e, s in info["epochs_tried"].items()}
    assert set(tried) <= {2, 4, 6, 8} and 2 in tried
    assert trial["params"]["epochs"] == info["chosen"] == min(tried, key=tried.get)
    assert trial["fold_scores"][0] == tried[info["chosen"]] and out["holdout"] is None
    with pytest.raises(UsageError, match="epoch-based"):
        T.tune("bias", "syn", plan_search("bias", grid={"reg_u": ["5"]}), metric="rmse", data_dir=data_dir,
               artifacts_dir=tmp_path, early_stopping=True)


# ------------------------------------------------------------------------ CLI
def _run(args, data_dir, artifacts):
    return CliRunner().invoke(app, ["tune", *args, "--data-dir", str(data_dir), "--artifacts-dir", str(artifacts)])


def test_cli_json_ledger_and_train_best(data_dir, tmp_path):
    art = tmp_path / "art"
    res = _run(["svd", "--dataset", "syn", *SVD_GRID, "--cv", "2", "--format", "json",
                "--train-best", "--name", "svd-best"], data_dir, art)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {"model", "dataset", "metric", "direction", "best_params", "best_score", "best_std", "trials",
            "holdout"} <= set(out)
    assert out["best_params"]["lr_all"] == 0.01 and len(out["trials"]) == 2
    assert set(out["trials"][0]) >= {"params", "score", "std", "fit_seconds"}
    assert "trial 2/2: " in res.stderr and "held-out rmse" in res.stderr
    assert len(ledger.query(root=art, kind="tune-trial")) == 2 and len(ledger.query(root=art, kind="tune")) == 1
    manifest = json.loads((art / "svd-best" / "manifest.json").read_text())
    assert manifest["config"]["lr_all"] == 0.01 and manifest["config"]["factors"] == 2
    assert out["run"]["train_ratings"] == N_RATINGS  # no --split: the best config is trained on every rating
    # an existing run without --force fails before any trial runs
    again = _run(["svd", "--dataset", "syn", *SVD_GRID, "--cv", "2", "--train-best", "--name", "svd-best"], data_dir, art)
    assert again.exit_code == 7 and "--force" in again.stderr
    assert len(ledger.query(root=art, kind="tune-trial")) == 2


def test_cli_split_table_and_ranking_metric(tmp_path):
    from recsys_cli.data.splits import create_split

    data = tmp_path / "data"
    path = write_dataset(data, seed=1)
    info = create_split(path, "random", name="r", test=0.25, seed=2)["r"]
    res = _run(["popularity", "-d", "syn", "--grid", "min_ratings=1,200", "--metric", "ndcg@5", "--relevance", "any",
                "--split", "r", "--cv", "2", "--format", "json"], data, tmp_path / "art")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["direction"] == "maximize" and out["metric"] == "ndcg@5"
    assert out["holdout"]["n_test"] == info["counts"]["test"] == round(0.25 * N_RATINGS)
    assert out["n_tune_ratings"] == info["counts"]["train"] == N_RATINGS - round(0.25 * N_RATINGS)
    # min_ratings=200 makes no item eligible, which keeps the same count order: a tie goes to the earliest trial
    assert out["trials"][0]["score"] == out["trials"][1]["score"] and out["best_params"] == {"min_ratings": 1}
    table = _run(["bias", "-d", "syn", "--grid", "reg_u=1,10", "--split", "r", "--cv", "2", "--format", "table"],
                 data, tmp_path / "art")
    assert table.exit_code == 0, table.output
    assert "reg_u" in table.stdout and "best params" in table.stdout and "holdout rmse" in table.stdout


@pytest.mark.parametrize("args, message", [
    (["svd", *SVD_GRID, "--grid", "factorz=1,2"], "valid parameters: factors"),
    (["svd", "--grid", "factors=2,x"], "not a valid int"),
    (["svd", *SVD_GRID, "--metric", "ndgc@10"], "known metrics"),
    (["svd", "--random", "3", "--space", "lr_all=normal(0,1)"], "--space lr_all=normal(0,1)"),
    (["svd", "--random", "3"], "--space"),
    (["svd", "--trials", "3"], "--space"),
    (["svd", "--space", "lr_all=uniform(0.001,0.01)"], "--trials"),
    (["svd", "--trials", "2", "--random", "2", "--space", "lr_all=uniform(0.001,0.01)"], "not both"),
    (["svd", "--random", "2", "--sampler", "tpe", "--space", "lr_all=uniform(0.001,0.01)"], "--trials N"),
    (["svd", "--trials", "2", "--sampler", "bayes", "--space", "lr_all=uniform(0.001,0.01)"], "unknown --sampler"),
    (["svd", *SVD_GRID, "--pruner", "hyperband"], "unknown --pruner"),
    (["svd", *SVD_GRID, "--sampler", "random"], "--grid runs every combination"),
    (["svd", "--grid", "factors=2", "--random", "2", "--space", "lr_all=uniform(0.001,0.01)"], "not both"),
    (["svd", *SVD_GRID, "--name", "x"], "--train-best"),
    (["svd", *SVD_GRID, "--cv", "1"], "--cv"),
    (["svd", *SVD_GRID, "--cv-folds", "items"], "unknown --cv-folds"),
    (["svd", *SVD_GRID, "--jobs", "0"], "--jobs"),
    (["svd", *SVD_GRID, "--relevance", "some"], "--relevance"),
    (["bias", "--grid", "reg_u=1,2", "--early-stopping"], "epoch-based"),
    (["svdd", "--grid", "factors=2"], "unknown model"),
    (["svd", *SVD_GRID, "--split", "nope"], "unknown split"),
])
def test_cli_bad_inputs_exit_2_without_running(args, message, data_dir, tmp_path):
    res = _run([args[0], "--dataset", "syn", *args[1:]], data_dir, tmp_path)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and res.stderr.startswith("error: ")
    assert ledger.query(root=tmp_path, kind="tune-trial") == []


# ------------------------------------------------------------------------ pruning and resuming (Optuna)
BAD_LAST = {"reg_u": ["1", "2", "3", "4", "5", "1e9"]}  # the last trial's user biases are squashed to zero


@pytest.mark.parametrize("pruner", ["median", "halving"])
def test_pruner_stops_a_bad_trial_after_its_first_fold(pruner, data_dir, tmp_path):
    plan = plan_search("bias", grid=BAD_LAST, fixed={"reg_i": "5"})
    out = T.tune("bias", "syn", plan, metric="mae", cv=3, seed=2, data_dir=data_dir, artifacts_dir=tmp_path,
                 pruner=pruner, holdout=False)
    last = out["trials"][-1]
    assert last["params"]["reg_u"] == 1e9 and last["state"] == "pruned" and len(last["fold_scores"]) == 1
    assert last["score"] == last["fold_scores"][0] and out["pruned_trials"] >= 1
    assert all(len(t["fold_scores"]) == 3 for t in out["trials"] if t["state"] == "complete")
    assert out["best_params"]["reg_u"] != 1e9
    rows = ledger.query(root=tmp_path, kind="tune-trial")
    states = {r["params"]["reg_u"]: r["protocol"]["state"] for r in rows}
    assert states[1e9] == "pruned" and rows[-1]["protocol"]["folds_done"] in (1, 3)
    if pruner != "median":
        return
    # with no pruner the same trial runs every fold, and is worse on each
    full = T.tune("bias", "syn", plan, metric="mae", cv=3, seed=2, data_dir=data_dir, artifacts_dir=tmp_path,
                  pruner="none", holdout=False)
    assert full["pruned_trials"] == 0 and len(full["trials"][-1]["fold_scores"]) == 3
    assert full["trials"][-1]["fold_scores"][0] == pytest.approx(last["fold_scores"][0])
    assert min(t["score"] for t in full["trials"][:-1]) < full["trials"][-1]["score"]


SPACE = parse_space(["reg_u=loguniform(0.1,50)", "reg_i=uniform(0,20)"])


def _tune_stored(plan, data_dir, tmp_path, seen=None, **kw):
    return T.tune("bias", "syn", plan, metric="mae", cv=2, seed=4, data_dir=data_dir, artifacts_dir=tmp_path,
                  storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s", holdout=False,
                  on_trial=(seen.append if seen is not None else None), **kw)


def test_resume_continues_a_stored_study_without_repeating_trials(data_dir, tmp_path):
    seen: list = []
    first = _tune_stored(plan_search("bias", space=SPACE, n_trials=3), data_dir, tmp_path, seen)
    assert first["resumed_trials"] == 0 and len(seen) == 3
    seen.clear()
    more = _tune_stored(plan_search("bias", space=SPACE, n_trials=5), data_dir, tmp_path, seen)
    assert more["resumed_trials"] == 3 and [r["trial"] for r in seen] == [3, 4]  # only the two missing ones ran
    assert [t["trial"] for t in more["trials"]] == [0, 1, 2, 3, 4]
    assert more["trials"][:3] == first["trials"]  # the stored results come back as they were
    params = [tuple(sorted(t["params"].items())) for t in more["trials"]]
    assert len(set(params)) == 5  # the resumed sampler drew new points
    again = _tune_stored(plan_search("bias", space=SPACE, n_trials=5), data_dir, tmp_path, seen)
    assert len(seen) == 2 and again["best_params"] == more["best_params"]  # nothing left to run
    assert len(ledger.query(root=tmp_path, kind="tune-trial")) == 5
    with pytest.raises(UsageError, match="different search"):
        _tune_stored(plan_search("bias", space=parse_space(["reg_u=uniform(1,2)"]), n_trials=5), data_dir, tmp_path)


def test_interrupted_grid_resumes_the_missing_points_once(data_dir, tmp_path, monkeypatch):
    plan = plan_search("bias", grid={"reg_u": ["1", "5", "25"]}, fixed={"reg_i": "5"})
    calls = {"n": 0}
    real = T.TrialContext.fit_score

    def flaky(self, *args):
        calls["n"] += 1
        if calls["n"] == 4:  # trial 2's first fold: the run is killed mid-trial
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(T.TrialContext, "fit_score", flaky)
    with pytest.raises(KeyboardInterrupt):
        _tune_stored(plan, data_dir, tmp_path)
    monkeypatch.setattr(T.TrialContext, "fit_score", real)
    seen: list = []
    out = _tune_stored(plan, data_dir, tmp_path, seen)
    assert out["resumed_trials"] == 1 and len(seen) == 2
    assert [r["done"] for r in seen] == [2, 3] and [r["trial"] for r in seen] == [2, 3]  # trial 1 was cut off
    assert sorted(t["params"]["reg_u"] for t in out["trials"]) == [1.0, 5.0, 25.0]
    assert all(t["state"] == "complete" for t in out["trials"])


def test_cli_storage_resume_and_sampler(data_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["bias", "--dataset", "syn", "--trials", "2", "--space", "reg_u=loguniform(0.1,50)", "--cv", "2",
            "--storage", db, "--study", "b", "--format", "json", "--no-holdout"]
    res = _run(args, data_dir, tmp_path / "art")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["sampler"] == "tpe" and out["pruner"] == "median" and out["study"] == "b" and len(out["trials"]) == 2
    again = _run([*args[:4], "3", *args[5:]], data_dir, tmp_path / "art")
    assert again.exit_code == 0, again.output
    assert "resumed study 'b': 2 trial(s) already done" in again.stderr and "trial 3/3" in again.stderr
    assert len(json.loads(again.stdout)["trials"]) == 3
    bad = _run(["bias", "--dataset", "syn", "--grid", "reg_u=1,2", "--storage", "nosuchdb://x"], data_dir, tmp_path)
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --storage nosuchdb://x")


def test_cmaes_sampler_runs_a_search(data_dir, tmp_path):
    pytest.importorskip("cmaes")
    plan = plan_search("bias", space=parse_space(["reg_u=loguniform(0.1,50)", "reg_i=uniform(0,20)"]), n_trials=4,
                       sampler="cmaes")
    out = T.tune("bias", "syn", plan, metric="mae", cv=2, seed=3, data_dir=data_dir, artifacts_dir=tmp_path,
                 holdout=False, pruner="none")
    assert out["sampler"] == "cmaes" and len(out["trials"]) == 4
    assert all(0.1 <= t["params"]["reg_u"] <= 50 and 0 <= t["params"]["reg_i"] <= 20 for t in out["trials"])
    assert len({t["params"]["reg_u"] for t in out["trials"]}) == 4
