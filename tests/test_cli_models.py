"""CLI contract of train / predict / recommend / similar / runs / evaluate: exact JSON shapes and exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recsys_cli.cli.app import app


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data, arts = root / "data", root / "artifacts"
    res = run("generate", "synth", "--users", "120", "--items", "80", "--ratings", "4000", "--data-dir", data)
    assert res.exit_code == 0, res.output
    res = run("preprocess", "synth", "--data-dir", data, "--format", "json")
    assert res.exit_code == 0, res.output
    res = run("train", "svd", "--dataset", "synth", "--split", "random", "--data-dir", data, "--artifacts-dir", arts,
              "-p", "factors=8", "-p", "epochs=10", "--format", "json")
    assert res.exit_code == 0, res.output
    return {"data": data, "arts": arts, "train": json.loads(res.stdout)}


def A(env):
    return ("--artifacts-dir", env["arts"])


def test_train_summary_shape(env):
    summary = env["train"]
    assert summary["run"] == "svd-synth-random"
    assert {"run", "model", "dataset", "split", "seed", "train_ratings", "train_seconds", "path", "config"} <= set(summary)
    assert summary["config"]["factors"] == 8 and summary["train_ratings"] == 3200


def test_train_existing_run_needs_force(env):
    res = run("train", "svd", "--dataset", "synth", "--split", "random", "--data-dir", env["data"], *A(env))
    assert res.exit_code == 7
    assert res.stderr.startswith("error: run 'svd-synth-random' already exists")


@pytest.mark.parametrize("command", ["train", "tune"])
def test_force_does_not_replace_the_mlflow_store(env, command):
    store = env["arts"] / "mlruns" / "0"
    store.mkdir(parents=True, exist_ok=True)
    (store / "meta.yaml").write_text("name: Default\n")
    extra = ("--grid", "reg_u=15", "--train-best") if command == "tune" else ()
    res = run(command, "bias", "--dataset", "synth", "--split", "random", "--data-dir", env["data"], *A(env), *extra,
              "--name", "mlruns", "--force")
    assert res.exit_code == 7
    assert res.stderr == (f"error: {env['arts'] / 'mlruns'} exists and is not a recsys run; pick another run name "
                          "(--force only replaces runs)\n")
    assert (store / "meta.yaml").read_text() == "name: Default\n"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("train", "nosuch", "--dataset", "synth"), 2, "unknown model 'nosuch'"),
        (("train", "svd", "--dataset", "synth", "-p", "factorz=3"), 2, "did you mean 'factors'"),
        (("train", "svd", "--dataset", "synth", "-p", "factors=abc"), 2, "not a valid int"),
        (("train", "svd", "--dataset", "synth", "-p", "novalue"), 2, "expects key=value"),
        (("train", "svd", "--dataset", "missing"), 3, "dataset 'missing' is not preprocessed"),
        (("train", "svd", "--dataset", "synth", "--split", "nosplit"), 3, "nosplit"),
        (("predict", "nosuchrun", "--user", "1", "--item", "1"), 7, "unknown run 'nosuchrun'"),
        (("recommend", "svd-synth-random"), 2, "exactly one of"),
        (("recommend", "svd-synth-random", "--ratings", "1:x"), 2, "item:rating"),
        # int() reads these as other ids (10, 3): ids are ASCII digits with an optional minus
        (("recommend", "svd-synth-random", "--user", "1_0"), 2, "expected integer ids, got '1_0'"),
        (("recommend", "svd-synth-random", "--user", "+3"), 2, "expected integer ids, got '+3'"),
        (("recommend", "svd-synth-random", "--ratings", "1_0:3"), 2, "item:rating"),
        (("evaluate", "--model", "svd"), 2, "--dataset"),
    ],
)
def test_bad_input_exit_codes(env, args, code, message):
    res = run(*args, "--data-dir", env["data"], *A(env)) if args[0] in ("train", "evaluate") else run(*args, *A(env))
    assert res.exit_code == code, res.output
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")
    assert message in res.stderr


# click's int type reads ids through int(): `--user 1_0` was user 10, `--item +3` item 3. Every option that takes
# a raw id reads it as --users-file and the server do: ASCII digits with an optional minus.
ID_OPTIONS = [
    (("predict", "svd-synth-random", "--user", "{}", "--item", "1"), "--user", "an integer id"),
    (("predict", "svd-synth-random", "--user", "1", "--item", "{}"), "--item", "an integer id"),
    (("predict", "svd-synth-random", "-u", "{}", "-i", "1"), "--user", "an integer id"),
    (("similar", "svd-synth-random", "--item", "{}"), "--item", "an integer id"),
    (("similar", "svd-synth-random", "-i", "{}"), "--item", "an integer id"),
    (("recommend", "svd-synth-random", "--user", "{}"), "--user", "integer ids"),
]


@pytest.mark.parametrize("value", ["1_0", "+3", "0x10", "\u0663", "1.0"])
@pytest.mark.parametrize("args, option, expected", ID_OPTIONS, ids=[f"{a[0]}{a[2]}{a.index('{}')}" for a, *_ in ID_OPTIONS])
def test_ids_on_the_command_line_are_ascii_digits(env, args, option, expected, value):
    res = run(*(value if a == "{}" else a for a in args), *A(env))
    assert res.exit_code == 2, res.output
    assert res.stderr == f"error: {option}: expected {expected}, got {value!r}\n"
    assert res.stdout == ""


def test_an_empty_id_is_a_usage_error(env):
    res = run("predict", "svd-synth-random", "--user", "", "--item", "1", *A(env))
    assert (res.exit_code, res.stderr) == (2, "error: --user: expected an integer id, got ''\n")


def test_plain_and_negative_ids_still_work(env):
    res = run("predict", "svd-synth-random", "--user", "10", "--item", "3", "--format", "json", *A(env))
    assert res.exit_code == 0, res.output
    assert (json.loads(res.stdout)["user_id"], json.loads(res.stdout)["item_id"]) == (10, 3)
    res = run("predict", "svd-synth-random", "-u", "-1", "-i", "3", "--format", "json", *A(env))  # unknown: a fallback
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["user_id"] == -1 and json.loads(res.stdout)["fallback"] == "item_bias"
    res = run("similar", "svd-synth-random", "--item", "3", "-n", "2", "--format", "json", *A(env))
    assert res.exit_code == 0, res.output
    assert {r["item_id"] for r in json.loads(res.stdout)} == {3}


def test_id_options_still_say_int_in_the_help(env):
    for command in ("predict", "similar"):
        res = run(command, "--help")
        assert res.exit_code == 0
        assert "--item <int>" in res.stdout and (command == "similar" or "--user <int>" in res.stdout)


def test_predict_single_and_batch(env, tmp_path):
    res = run("predict", "svd-synth-random", "--user", "1", "--item", "1", "--format", "json", *A(env))
    assert res.exit_code == 0, res.output
    one = json.loads(res.stdout)
    assert set(one) == {"user_id", "item_id", "prediction", "fallback"}
    assert 0.5 <= one["prediction"] <= 5.0 and one["fallback"] is None
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,item_id\n1,1\n999999,1\n1,999999\n999999,999999\n")
    res = run("predict", "svd-synth-random", "--pairs-file", pairs, "--format", "jsonl", *A(env))
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["user_id"], r["item_id"]) for r in rows] == [(1, 1), (999999, 1), (1, 999999), (999999, 999999)]
    assert [r["fallback"] for r in rows] == [None, "item_bias", "user_bias", "global_mean"]
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\n1,1\n")
    res = run("predict", "svd-synth-random", "--pairs-file", bad, *A(env))
    assert res.exit_code == 3 and "header must contain user_id, item_id" in res.stderr


def test_predict_at_a_time_with_an_fm_time_run(env, tmp_path):
    """`--time` (and a pairs file's timestamp column) predict a rating in its own period; without one, in the
    user's latest period (where their last training rating falls); a run without a time part ignores it."""
    res = run("train", "fm", "--dataset", "synth", "--split", "random", "--data-dir", env["data"], *A(env),
              "--name", "fm-time", "-p", "groups=user,item,time", "-p", "iterations=30", "-p", "burn_in=5",
              "-p", "time_bins=4", "--format", "json")
    assert res.exit_code == 0, res.output
    from recsys_cli.data.dataset import load_dataset

    train = load_dataset("synth", data_dir=env["data"]).interactions("random", "train")
    early, late = int(train.timestamps.min()), int(train.timestamps.max())
    own_last = int(train.timestamps[train.user_ids[train.users] == 1].max())

    def one(*extra, run_name="fm-time"):
        out = run("predict", run_name, "--user", "1", "--item", "1", *extra, "--format", "json", *A(env))
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)["prediction"]

    assert one("--time", early) != one("--time", late) and one("--time", own_last) == one()
    pairs = tmp_path / "timed.csv"
    pairs.write_text(f"user_id,item_id,timestamp\n1,1,{early}\n1,1,{late}\n")
    res = run("predict", "fm-time", "--pairs-file", pairs, "--format", "json", *A(env))
    assert [r["prediction"] for r in json.loads(res.stdout)] == [one("--time", early), one("--time", late)]
    res = run("predict", "fm-time", "--pairs-file", pairs, "--time", late, *A(env))
    assert res.exit_code == 2 and res.stderr == "error: the pairs file has a timestamp column: leave out --time\n"
    assert one("--time", early, run_name="svd-synth-random") == one(run_name="svd-synth-random")
    res = run("predict", "svd-synth-random", "--user", "1", "--item", "1", "--time", early, "--format", "json", *A(env))
    assert res.exit_code == 0 and res.stderr == ("note: svd-synth-random has no time part (only fm with its time group "
                                                 "has one): the times are ignored\n")
    res = run("predict", "fm-time", "--user", "1", "--item", "1", "--time", early, "--format", "json", *A(env))
    assert res.exit_code == 0 and res.stderr == ""


def test_recommend_formats(env):
    res = run("recommend", "svd-synth-random", "--user", "1,2", "-n", "4", "--format", "json", *A(env))
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [(r["user_id"], r["rank"]) for r in rows] == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (2, 4)]
    assert set(rows[0]) == {"user_id", "rank", "item_id", "title", "score", "fallback"} and rows[0]["fallback"] is None
    res = run("recommend", "svd-synth-random", "--user", "1", "-n", "3", "--format", "csv", *A(env))
    lines = res.stdout.splitlines()
    assert lines[0] == "user_id,rank,item_id,title,score,fallback" and len(lines) == 4
    res = run("recommend", "svd-synth-random", "--all-users", "-n", "2", "--format", "jsonl", *A(env))
    assert len(res.stdout.splitlines()) == 2 * 120
    res = run("recommend", "svd-synth-random", "--user", "424242", "-n", "3", "--format", "json", *A(env))
    assert {r["fallback"] for r in json.loads(res.stdout)} == {"popularity"}
    assert "popularity" in res.stderr


def test_recommend_more_than_catalogue_says_so(env):
    res = run("recommend", "svd-synth-random", "--user", "1", "-n", "500", "--format", "json", *A(env))
    assert res.exit_code == 0
    assert len(json.loads(res.stdout)) < 80
    assert "fewer than 500 items" in res.stderr


def test_similar_and_runs_and_evaluate(env):
    res = run("similar", "svd-synth-random", "--item", "1", "-n", "3", "--format", "json", *A(env))
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"item_id", "rank", "similar_item_id", "title", "similarity"}
    res = run("evaluate", "svd-synth-random", "--data-dir", env["data"], "--format", "json", *A(env))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)[0]
    assert {"model", "dataset", "protocol", "params", "metrics", "metrics_std", "fit_seconds", "predict_seconds"} <= set(out)
    assert {"rmse", "mae", "ndcg@10", "precision@10", "recall@10", "map@10"} <= set(out["metrics"])
    assert set(out["metrics_std"]) == set(out["metrics"]) and set(out["metrics_std"].values()) == {None}  # one holdout
    res = run("runs", "--format", "json", *A(env))
    runs = {r["run"]: r for r in json.loads(res.stdout)}
    assert runs["svd-synth-random"]["metrics"]["rmse"] == pytest.approx(out["metrics"]["rmse"])


def test_evaluate_compares_models_on_identical_folds(env):
    res = run("evaluate", "--model", "bias,svd", "--dataset", "synth", "--cv", "3", "-p", "svd.epochs=5",
              "--data-dir", env["data"], "--format", "json", *A(env))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [r["model"] for r in out] == ["bias", "svd"]
    assert out[1]["params"]["epochs"] == 5 and out[0]["protocol"] == {"kind": "cv", "folds": 3, "seed": 42}
    assert len(out[0]["folds"]) == 3


def test_every_command_has_help():
    res = run("--help")
    for cmd in ("download", "preprocess", "split", "generate", "info", "train", "predict", "recommend", "similar",
                "runs", "evaluate", "tune", "abtest", "insights", "serve"):
        assert cmd in res.stdout
        sub = run(cmd, "--help")
        assert sub.exit_code == 0 and "Example" in sub.stdout, cmd


def test_one_command_app_matches_the_full_app():
    """`recsys CMD ...` builds only CMD (cli.app.only); its help and errors must be the full app's."""
    from recsys_cli.cli.app import only

    runner = CliRunner()
    names = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert set(names) == {"download", "preprocess", "info", "split", "generate", "train", "predict", "recommend",
                          "similar", "runs", "models", "evaluate", "tune", "abtest", "benchmark", "insights", "serve"}
    for name in names:
        one = only(name)
        assert one is not app and len(one.registered_commands) + len(one.registered_groups) == 1
        full, fast = runner.invoke(app, [name, "--help"]), runner.invoke(one, [name, "--help"])
        assert (fast.exit_code, fast.stdout) == (full.exit_code, full.stdout), name
    bad = ["recommend", "no-such-run", "--user", "1", "--artifacts-dir", "/nonexistent"]
    assert (runner.invoke(only("recommend"), bad).exit_code, runner.invoke(app, bad).exit_code) == (7, 7)
    assert only("no-such-command") is app


def test_a_run_is_not_evaluated_on_a_split_replaced_since(tmp_path):
    """A run records its split's contents; after `split --force` (or for a split made in Python under a stored
    split's name) evaluate and abtest refuse, instead of scoring on a test part that holds training ratings."""
    import recsys_cli as rs

    data, arts = tmp_path / "data", tmp_path / "artifacts"
    assert run("generate", "tiny", "--users", "60", "--items", "40", "--ratings", "1500", "--data-dir", data).exit_code == 0
    assert run("preprocess", "tiny", "--data-dir", data, "--format", "json").exit_code == 0
    for model in ("bias", "popularity"):
        res = run("train", model, "--dataset", "tiny", "--split", "random", "--data-dir", data, "--artifacts-dir", arts,
                  "--format", "json")
        assert res.exit_code == 0, res.output
    ev = ("--data-dir", data, "--artifacts-dir", arts, "--format", "json")
    assert run("evaluate", "bias-tiny-random", *ev).exit_code == 0
    res = run("split", "tiny", "--kind", "random", "--name", "random", "--seed", "7", "--test", "0.5", "--force",
              "--data-dir", data, "--format", "json")
    assert res.exit_code == 0, res.output
    message = ("error: run 'bias-tiny-random' was trained on a different split 'random' of 'tiny' than the one stored "
               "now (replaced by `recsys split --force`, or made in Python with ds.split()); its test part would hold "
               "training ratings: retrain it on this split\n")
    res = run("evaluate", "bias-tiny-random", *ev)
    assert res.exit_code == 7 and res.stderr == message
    res = run("abtest", "bias-tiny-random", "popularity-tiny-random", *ev)
    assert res.exit_code == 7 and res.stderr == message
    res = run("train", "bias", "--dataset", "tiny", "--split", "random", "--data-dir", data, "--artifacts-dir", arts,
              "--force", "--format", "json")
    assert res.exit_code == 0 and run("evaluate", "bias-tiny-random", *ev).exit_code == 0  # retrained: fine again

    ds = rs.load_dataset("tiny", data_dir=data)
    other, _ = ds.split("random", test=0.2, seed=1)  # the stored "random" is now seed 7, test 0.5
    rs.save(rs.train("bias", other, seed=1), "py-bias", artifacts_dir=arts)
    with pytest.raises(rs.RecsysError, match="'py-bias' was trained on a different split 'random'"):
        rs.evaluate("py-bias", data_dir=data, artifacts_dir=arts)
    same, _ = ds.split("random", test=0.5, seed=7)  # the same contents as the stored split: allowed
    rs.save(rs.train("bias", same, seed=1), "py-bias-same", artifacts_dir=arts)
    assert rs.evaluate("py-bias-same", data_dir=data, artifacts_dir=arts).metrics["rmse"] > 0


def test_a_header_only_pairs_file_and_an_empty_test_part_are_errors(env, tmp_path):
    header = tmp_path / "header.csv"
    header.write_text("user_id,item_id\n")
    res = run("predict", "svd-synth-random", "--pairs-file", header, *A(env))
    assert res.exit_code == 2 and res.stderr == f"error: {header}: give at least one user_id,item_id pair\n"
    # a split whose test part is empty: evaluate said "metrics": {} with exit 0
    res = run("split", "synth", "--kind", "leave-last", "--last", "1", "--name", "nothing-held", "--data-dir",
              env["data"], "--format", "json")
    assert res.exit_code == 0, res.output
    import numpy as np

    from recsys_cli.data.dataset import load_dataset

    ds = load_dataset("synth", data_dir=env["data"])
    part_file = ds.path / ds.meta["splits"]["nothing-held"]["file"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(part_file)
    pq.write_table(table.set_column(0, table.column_names[0], pa.array(np.zeros(table.num_rows, np.int8))), part_file)
    res = run("train", "bias", "--dataset", "synth", "--split", "nothing-held", "--data-dir", env["data"], *A(env),
              "--format", "json")
    assert res.exit_code == 0, res.output
    res = run("evaluate", "bias-synth-nothing-held", "--data-dir", env["data"], *A(env), "--format", "json")
    assert res.exit_code == 3 and res.stderr == ("error: split 'nothing-held' of 'synth' has no held-out (test) ratings "
                                                 "to score 'bias-synth-nothing-held' on\n")


@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_evaluate_run_checks_the_seed_before_the_work_and_the_ledger(env, seed):
    """`evaluate RUN --seed -1` was accepted, ignored and recorded in the ledger; every other --seed is checked."""
    from recsys_cli import ledger

    before = ledger.query(root=env["arts"], kind="evaluate")
    res = run("evaluate", "svd-synth-random", "--seed", seed, "--data-dir", env["data"], *A(env))
    assert (res.exit_code, res.stdout, res.stderr) == (2, "", f"error: seed must be between 0 and 2**63 - 1, got {seed}\n")
    assert ledger.query(root=env["arts"], kind="evaluate") == before


@pytest.mark.parametrize("name", ["caf\u00e9", "_x", "x" * 129])
def test_run_name_error_says_exactly_what_is_allowed(env, name):
    """The message said 'letters' (and only 'not starting with .') though the check is ASCII letters, a first
    letter or digit, at most 128 characters."""
    res = run("train", "bias", "--dataset", "synth", "--name", name, "--data-dir", env["data"], *A(env))
    assert (res.exit_code, res.stdout) == (2, "")
    assert res.stderr == (f"error: invalid run name {name!r}: use ASCII letters (a-z, A-Z), digits, '.', '_' or '-', "
                          "starting with a letter or digit, at most 128 characters\n")


@pytest.mark.parametrize(
    "name, raw, hint",
    [
        ("ml-1m", False, "`recsys download ml-1m && recsys preprocess ml-1m`"),
        ("ml-1m", True, "`recsys preprocess ml-1m`"),
        ("mine", False, "`recsys generate mine && recsys preprocess mine`, or `recsys preprocess PATH --name mine`"),
        ("ml-mine", False, "`recsys generate ml-mine && recsys preprocess ml-mine`, or "
                           "`recsys preprocess PATH --name ml-mine`"),
    ],
)
def test_info_and_insights_suggest_the_same_next_step(tmp_path, name, raw, hint):
    """`info NAME` suggested `recsys download NAME` for any name, `insights NAME` `recsys generate` for any name not
    starting with 'ml-'; both now give the library's one message."""
    if raw:
        (tmp_path / "raw" / name).mkdir(parents=True)
    expected = (f"error: dataset {name!r} is not preprocessed (no {tmp_path / 'processed' / name / 'dataset.json'}); "
                f"run {hint}\n")
    for command, *more in (("info",), ("insights", "--artifacts-dir", tmp_path / "arts")):
        res = run(command, name, "--data-dir", tmp_path, *more)
        assert (res.exit_code, res.stdout, res.stderr) == (3, "", expected), command
