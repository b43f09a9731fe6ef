"""`recsys abtest` end to end on a tiny processed dataset with trained runs."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recsys_cli.cli.app import app

N_USERS, N_ITEMS = 120, 50


def make_tiny_dataset(data_dir: Path, name: str = "tiny") -> Path:
    """Two taste groups (odd/even items) with demographics and two random splits, per LAYOUT.md."""
    rng = np.random.default_rng(0)
    path = data_dir / "processed" / name
    (path / "splits").mkdir(parents=True)
    rows = []
    for u in range(N_USERS):
        for i in np.sort(rng.choice(N_ITEMS, size=22, replace=False)):
            liked = i % 2 == u % 2
            rating = float(rng.choice([4, 5]) if liked else rng.choice([1, 2, 3]))
            rows.append((u + 1, int(i) + 1, rating, 1000 + len(rows)))
    arr = np.array(rows)
    pq.write_table(pa.table({
        "user_id": pa.array(arr[:, 0].astype(np.int32)), "item_id": pa.array(arr[:, 1].astype(np.int32)),
        "rating": pa.array(arr[:, 2].astype(np.float32)), "timestamp": pa.array(arr[:, 3].astype(np.int64)),
    }), path / "ratings.parquet")
    pq.write_table(pa.table({
        "item_id": pa.array(np.arange(1, N_ITEMS + 1, dtype=np.int32)),
        "title": [f"Item {i}" for i in range(1, N_ITEMS + 1)],
        "year": pa.array(np.full(N_ITEMS, 2000, np.int16)),
        "genres": [["Drama"] if i % 2 else ["Comedy"] for i in range(1, N_ITEMS + 1)],
    }), path / "items.parquet")
    occupations = ["student", "engineer", "artist"]
    pq.write_table(pa.table({
        "user_id": pa.array(np.arange(1, N_USERS + 1, dtype=np.int32)),
        "gender": ["F" if u % 3 == 0 else "M" for u in range(N_USERS)],
        "age": pa.array(np.array([15 + (u * 7) % 50 for u in range(N_USERS)], np.int16)),
        "occupation": [occupations[u % 3] for u in range(N_USERS)],
        "zip": ["00000"] * N_USERS,
    }), path / "users.parquet")
    splits = {}
    for split, seed in (("random", 1), ("other", 2)):
        part = np.zeros(len(rows), np.int8)
        part[np.random.default_rng(seed).permutation(len(rows))[: len(rows) // 5]] = 2
        pq.write_table(pa.table({"part": pa.array(part)}), path / "splits" / f"{split}.parquet")
        splits[split] = {"kind": "random", "params": {"test": 0.2}, "seed": seed, "file": f"splits/{split}.parquet"}
    meta = {"schema_version": 1, "name": name, "layout": "generic", "n_ratings": len(rows), "n_users": N_USERS,
            "n_items": N_ITEMS, "rating_scale": [1.0, 5.0], "rating_step": 1.0, "fingerprint": "sha256:tiny-test",
            "has_users": True, "has_tags": False, "splits": splits}
    (path / "dataset.json").write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from recsys_cli.api.runs import train_run

    root = tmp_path_factory.mktemp("abtest")
    data, art = root / "data", root / "art"
    make_tiny_dataset(data)
    svd = {"factors": "8", "epochs": "25"}
    for model, split, params, run in (("popularity", "random", {}, "pop"), ("svd", "random", svd, "svd"),
                                      ("svd", "other", svd, "svd-other"), ("bias", None, {}, "bias-all")):
        train_run(model, "tiny", split=split, params=params, name=run, data_dir=data, artifacts_dir=art)
    return ["--data-dir", str(data), "--artifacts-dir", str(art)]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_abtest_json_shape_and_determinism(env):
    args = ["abtest", "pop", "svd", "--dataset", "tiny", "--json", "--bootstrap", "300", *env]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert {"settings", "click_model", "arms", "tests", "winner", "segments", "srm", "primary_test"} <= out.keys()
    assert [a["arm"] for a in out["arms"]] == ["A", "B"]
    assert [a["model"] for a in out["arms"]] == ["popularity", "svd"]
    assert sum(a["users"] for a in out["arms"]) == out["settings"]["sampled_users"] == out["settings"]["eligible_users"]
    for arm in out["arms"]:
        assert arm["impressions"] == 10 * arm["users"]
        assert 0 <= arm["clicks"] <= arm["impressions"]
        assert arm["ctr"] == pytest.approx(arm["clicks"] / arm["impressions"])
    for name in ("user_welch_t", "impression_z"):
        test = out["tests"][name]
        assert {"statistic", "p_value", "ci_low", "ci_high", "diff", "rel_lift"} <= test.keys()
        assert test["ci_low"] <= test["diff"] <= test["ci_high"]
    assert out["tests"]["user_welch_t"]["primary"] is True
    assert out["tests"]["bootstrap"]["n_boot"] == 300
    assert out["winner"]["winner"] in ("A", "B", None)
    assert out["settings"]["traffic"] == 0.5 and out["settings"]["split"] == "random"
    assert out["click_model"] == {"name": "threshold", "threshold": 4.0}
    assert {s["segment"] for s in out["segments"]} == {"activity", "gender", "age", "occupation"}
    assert all(0 <= s["p_holm"] <= 1 for s in out["segments"] if s["p_holm"] is not None)
    assert "Holm" in out["segments_note"]
    second = invoke(*args)
    assert second.stdout == first.stdout


def test_short_form_equals_run_subcommand_and_seed_matters(env):
    common = ["--json", "--users", "60", "--click-model", "position", "--bootstrap", "0", "--no-segments", *env]
    short = invoke("abtest", "pop", "svd", *common)
    explicit = invoke("abtest", "run", "pop", "svd", *common)
    assert short.exit_code == 0, short.output
    assert short.stdout == explicit.stdout
    out = json.loads(short.stdout)
    assert out["settings"]["sampled_users"] == 60
    assert out["click_model"]["name"] == "position" and out["click_model"]["eta"] == 1.0
    assert "segments" not in out and "bootstrap" not in out["tests"]
    other = json.loads(invoke("abtest", "pop", "svd", *common, "--seed", "7").stdout)
    assert other["arms"] != out["arms"]
    assert "click model: position(" in short.stderr


def test_same_run_on_both_arms_is_an_aa_test(env):
    res = invoke("abtest", "svd", "svd", "--json", "--bootstrap", "0", "--no-segments", *env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["winner"]["winner"] is None


def test_table_report(env):
    res = invoke("abtest", "pop", "svd", "--format", "table", "--bootstrap", "100", *env)
    assert res.exit_code == 0, res.output
    for text in ("Welch t (primary)", "two-proportion z", "randomisation unit", "verdict:", "Holm", "Segments"):
        assert text in res.stdout
    # the click model is in the table's header; it was also a note on stderr, so a terminal showed it twice
    assert res.stdout.count("click model: threshold(threshold=4.0)") == 1 and res.stderr == ""
    res = invoke("abtest", "bandit", "pop", "svd", "--rounds", "2", "--format", "table", *env)
    assert res.exit_code == 0, res.output
    assert res.stdout.count("click model: threshold(threshold=4.0)") == 1 and res.stderr == ""


def test_plan_json():
    res = invoke("abtest", "plan", "--baseline-ctr", "0.10", "--mde", "0.01", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_per_arm"] == 14751 and out["n_total"] == 29502
    assert out["mde"] == pytest.approx(0.01) and out["alpha"] == 0.05 and out["power"] == 0.8
    assert out["baseline_ctr"] == 0.10 and out["ratio"] == 1.0
    mde = json.loads(invoke("abtest", "plan", "--baseline-ctr", "0.10", "--users", "14751", "--json").stdout)
    assert mde["mde"] == pytest.approx(0.01, abs=1e-5) and mde["n_per_arm"] == 14751
    rel = json.loads(invoke("abtest", "plan", "--baseline-ctr", "0.1", "--mde", "0.1", "--relative", "--ratio", "2",
                            "--json").stdout)
    assert rel["n_b"] == 2 * rel["n_a"] and rel["n_a"] < 14751


def test_bandit_json(env):
    res = invoke("abtest", "bandit", "pop", "svd", "--policy", "thompson", "--rounds", "12", "--batch", "30",
                 "--json", *env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {"arms", "best_arm", "policy", "equal_split", "allocation", "settings"} <= out.keys()
    assert [a["run"] for a in out["arms"]] == ["pop", "svd"]
    assert sum(a["users_served"] for a in out["arms"]) == 12 * 30
    assert len(out["allocation"]) == 12
    assert all(r["A"] + r["B"] == pytest.approx(1.0) for r in out["allocation"])
    assert out["policy"]["regret"] >= -1e-9 or out["best_arm"]
    best = max(out["arms"], key=lambda a: a["true_ctr"])
    assert out["best_arm"] == best["arm"]


def test_help_lists_forms():
    res = invoke("abtest", "--help")
    assert res.exit_code == 0
    for text in ("RUN_A RUN_B", "plan", "bandit", "--traffic", "--click-model"):
        assert text in res.stdout
    assert "Usage:" in invoke("abtest").output
    assert invoke("abtest", "plan", "--help").exit_code == 0


def test_cli_salt_default_matches_library():
    from recsys_cli.abtest.assignment import DEFAULT_SALT
    from recsys_cli.cli import abtest_cmds

    assert abtest_cmds.DEFAULT_SALT == DEFAULT_SALT


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["abtest", "nope", "svd"], 7, "unknown run 'nope'"),
        (["abtest", "pop", "svd-other"], 2, "different splits"),
        (["abtest", "pop", "svd", "--traffic", "1.5"], 2, "--traffic"),
        (["abtest", "pop", "bias-all"], 2, "held-out"),
        (["abtest", "pop", "svd", "--dataset", "ml-100k"], 2, "not 'ml-100k'"),
        (["abtest", "pop", "svd", "--format", "csv"], 2, "table, json"),
        (["abtest", "pop", "svd", "--click-model", "magic"], 2, "--click-model"),
        (["abtest", "pop", "svd", "--alpha", "2"], 2, "--alpha"),
        (["abtest", "bandit", "pop", "--policy", "thompson"], 2, "at least two"),
        (["abtest", "bandit", "pop", "svd", "--policy", "greedy"], 2, "--policy"),
        (["abtest", "pop", "svd", "--click-threshold", "99"], 2, "above the ratings' scale"),
        # below the scale every held-out rating clicked, silently (0.8 meant as a share of the top, say)
        (["abtest", "pop", "svd", "--click-threshold", "0.8"], 2, "error: --click-threshold 0.8 is below the ratings' "
         "scale (from 1): every held-out rating would click; give 1 if that is what you mean\n"),
        (["abtest", "bandit", "pop", "svd", "--click-threshold", "0"], 2, "error: --click-threshold 0 is below the "
         "ratings' scale (from 1): every held-out rating would click; give 1 if that is what you mean\n"),
        # more users than the pool silently used the whole pool (119 users of the tiny set have held-out ratings)
        (["abtest", "pop", "svd", "--users", "5000"], 2, "error: --users 5,000 is more than the 119 eligible users "
         "(those with held-out ratings); give at most 119, or leave --users out to use them all\n"),
        # seeds are 0 .. 2**63-1 (README); -1 was exit 1 (internal error), 2**63 was accepted
        (["abtest", "pop", "svd", "--seed", "-1"], 2, "error: seed must be between 0 and 2**63 - 1, got -1\n"),
        (["abtest", "pop", "svd", "--seed", str(2**63)], 2, f"error: seed must be between 0 and 2**63 - 1, got {2**63}\n"),
        (["abtest", "bandit", "pop", "svd", "--seed", "-1"], 2, "error: seed must be between 0 and 2**63 - 1, got -1\n"),
        (["insights", "svd", "--seed", "-1"], 2, "error: seed must be between 0 and 2**63 - 1, got -1\n"),
        (["insights", "svd", "--seed", str(2**63)], 2, f"error: seed must be between 0 and 2**63 - 1, got {2**63}\n"),
        # dataset-only options were silently ignored for a run's report
        (["insights", "svd", "--top", "3"], 2, "error: --top is for a dataset's insights; 'svd' is a saved run (its "
                                               "report has no segment findings or top tables)\n"),
        (["insights", "svd", "--alpha", "0.01", "--top", "3"], 2, "error: --alpha and --top are for a dataset's"),
    ],
)
def test_bad_input_exit_codes(env, args, code, message):
    res = invoke(*args, *env)
    assert res.exit_code == code, res.output
    assert message in res.stderr
    assert res.stderr.count("\n") == 1  # one clean line, no traceback


def test_plan_machine_formats_carry_the_full_float():
    """README: full precision in machine formats. The MDE (and target, relative MDE) were rounded to 12 decimals."""
    out = json.loads(invoke("abtest", "plan", "--baseline-ctr", "0.10", "--users", "14751", "--json").stdout)
    assert out["mde"] == 0.009999927458253795 and out["mde"] != round(out["mde"], 12)
    assert out["target_ctr"] == 0.1 + out["mde"] and out["mde_relative"] == out["mde"] / 0.1
    res = invoke("abtest", "plan", "--baseline-ctr", "0.10", "--users", "14751", "--format", "csv")
    row = dict(zip(*[line.split(",") for line in res.stdout.splitlines()[:2]], strict=False))
    assert (float(row["mde"]), float(row["target_ctr"])) == (out["mde"], out["target_ctr"])
    given = json.loads(invoke("abtest", "plan", "--baseline-ctr", "0.10", "--mde", "0.01", "--json").stdout)
    assert given["mde"] == 0.01 and given["mde_relative"] == 0.01 / 0.1  # the effect asked for, not 0.11 - 0.1
    rel = json.loads(invoke("abtest", "plan", "--baseline-ctr", "0.10", "--mde", "0.1", "--relative", "--json").stdout)
    assert rel["mde_relative"] == 0.1 and rel["mde"] == 0.1 * 0.1
    table = invoke("abtest", "plan", "--baseline-ctr", "0.10", "--users", "14751", "--format", "table").stdout
    assert "│ mde            │ 0.0100 " in table  # the table still rounds for display


def test_click_threshold_at_the_scale_minimum_is_every_held_out_rating(env):
    res = invoke("abtest", "pop", "svd", "--click-threshold", "1", "--json", "--bootstrap", "0", "--no-segments", *env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["click_model"] == {"name": "threshold", "threshold": 1.0}


def test_users_equal_to_the_pool_is_the_whole_pool(env):
    common = ["--json", "--bootstrap", "0", "--no-segments", *env]
    every = json.loads(invoke("abtest", "pop", "svd", "--users", "119", *common).stdout)
    assert every["settings"]["sampled_users"] == every["settings"]["eligible_users"] == 119
    assert every["arms"] == json.loads(invoke("abtest", "pop", "svd", *common).stdout)["arms"]


def test_plan_bad_input():
    res = invoke("abtest", "plan", "--baseline-ctr", "0.1", "--mde", "0.01", "--users", "100")
    assert res.exit_code == 2 and "exactly one" in res.stderr
    assert invoke("abtest", "plan", "--baseline-ctr", "1.5", "--mde", "0.01").exit_code == 2


def test_missing_dataset_is_a_data_error(env, tmp_path):
    res = invoke("abtest", "pop", "svd", "--data-dir", str(tmp_path), "--artifacts-dir", env[3])
    assert res.exit_code == 3 and "not preprocessed" in res.stderr


def test_plot_without_matplotlib(env, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plot extra were not installed
    res = invoke("abtest", "pop", "svd", "--plot", str(tmp_path / "ab.png"), *env)
    assert res.exit_code == 2
    assert "pip install 'recsys-cli[plot]'" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "ab.png").exists()


def test_plot_writes_the_figure(env, tmp_path):
    pytest.importorskip("matplotlib")
    res = invoke("abtest", "pop", "svd", "--bootstrap", "200", "--format", "json", "--plot", str(tmp_path / "ab.png"), *env)
    assert res.exit_code == 0, res.output
    data = (tmp_path / "ab.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1000, 420)


def test_sample_ratio_mismatch_warns_loudly(env, monkeypatch):
    from recsys_cli.abtest import experiment

    def skewed(user_ids, salt, traffic):  # a broken assignment: 80% of users land in B
        return (np.arange(len(user_ids)) % 5 != 0).astype(np.int8)

    monkeypatch.setattr(experiment, "assign_arms", skewed)
    res = invoke("abtest", "pop", "svd", "--json", "--bootstrap", "0", "--no-segments", *env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["srm"]["mismatch"] is True and out["srm"]["p_value"] < 1e-3
    assert "SAMPLE RATIO MISMATCH" in res.stderr
    assert out["warnings"] and "SAMPLE RATIO MISMATCH" in out["warnings"][0]


def test_rs_abtest_stays_callable_after_the_abtest_package_is_imported(env):
    """`rs.abtest` is the function even once `recsys_cli.abtest` (the subpackage) is imported; before, the import
    replaced the package attribute and the second `rs.abtest(...)` was "'module' object is not callable"."""
    import recsys_cli as rs
    import recsys_cli.api
    from recsys_cli.abtest import statistics  # noqa: F401 - imports the subpackage

    assert rs.abtest is recsys_cli.api.abtest
    kw = {"data_dir": env[1], "artifacts_dir": env[3], "segments": False, "bootstrap": 0}
    first, second = rs.abtest("pop", "svd", **kw), rs.abtest("pop", "svd", **kw)
    assert first.to_dict() == second.to_dict()
    assert rs.abtest is recsys_cli.api.abtest and "abtest" not in vars(rs)


@pytest.mark.parametrize("command", [["pop", "svd"], ["bandit", "pop", "svd", "--rounds", "2"]])
def test_plot_path_is_checked_before_the_work(env, tmp_path, command):
    """Bad --plot paths fail with one line before anything is simulated or printed (bandit used to simulate,
    print its note and only then refuse the suffix); an unwritable folder is exit 7 naming the option."""
    pytest.importorskip("matplotlib")
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder.png").mkdir()
    cases = [
        (tmp_path / "ab.txt", 2, f"error: --plot writes .png or .svg files, got '{tmp_path / 'ab.txt'}'\n"),
        (tmp_path / "folder.png", 2, f"error: --plot {tmp_path / 'folder.png'} is a folder; give a file name\n"),
        (tmp_path / "file.txt" / "ab.png", 7,
         f"error: --plot folder {tmp_path / 'file.txt'}: {tmp_path / 'file.txt'} is a file, not a folder\n"),
    ]
    for plot, code, stderr in cases:
        res = invoke("abtest", *command, "--format", "json", "--plot", str(plot), *env)
        assert (res.exit_code, res.stdout, res.stderr) == (code, "", stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder.png"]


def test_plot_svg_by_suffix_and_missing_folders_are_created(env, tmp_path):
    """`abtest --plot x.svg` writes an SVG (it wrote PNG bytes under any name, even ab.txt); like tune,
    benchmark and bandit, missing folders of the path are created."""
    pytest.importorskip("matplotlib")
    target = tmp_path / "new" / "deeper" / "ab.svg"
    res = invoke("abtest", "pop", "svd", "--bootstrap", "100", "--no-segments", "--format", "json", "--plot", str(target), *env)
    assert res.exit_code == 0, res.output
    assert target.read_bytes().startswith(b"<?xml") and b"<svg" in target.read_bytes()[:400]
    assert res.stderr.splitlines()[-1] == f"wrote {target}"
    assert [p.name for p in target.parent.iterdir()] == ["ab.svg"]  # no temporary file left
