"""Bad inputs across every command, through the real CLI (CliRunner): hand-written cases with
their exact exit code, and hypothesis-generated numbers and strings at the edges.

Every failing command must: exit with a documented code (never 1, the internal-error code),
print no traceback, print exactly one `error: ...` line on stderr (plus at most one `hint: ...`;
a command that had started its work may have narrated it in up to three progress lines before),
print nothing on stdout, and leave the data and artifacts folders byte for byte as they were.
Commands that succeed must print valid output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import recsys_cli as rs
from recsys_cli.cli.app import app, only

DOCUMENTED = {0, 2, 3, 4, 5, 6, 7, 8, 130}
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def tree_hash(*folders: Path) -> str:
    """Every path with its size and modification time (ns): any write, creation or deletion shows."""
    h = hashlib.sha256()
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            st_ = p.lstat()
            stamp = "dir" if p.is_dir() else f"{st_.st_size}\0{st_.st_mtime_ns}\0{st_.st_mode}"
            h.update(f"{p}\0{stamp}\n".encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    data, arts = root / "data", root / "artifacts"
    rs.generate("synth", users=50, items=30, ratings=1000, seed=4, data_dir=data)
    rs.preprocess("synth", data_dir=data)
    for model in ("bias", "item-knn"):
        res = CliRunner().invoke(app, ["train", model, "--dataset", "synth", "--split", "random", "--data-dir",
                                       str(data), "--artifacts-dir", str(arts), "--format", "json"])
        assert res.exit_code == 0, res.output
    _damaged_runs(arts)
    files = root / "files"
    files.mkdir()
    (files / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (files / "latin1.csv").write_bytes("user_id\n1\n\xe9\xe8\n".encode("latin-1"))
    (files / "noheader.csv").write_text("1\n2\n")
    (files / "badrow.csv").write_text("user_id\n1\nx\n")
    (files / "huge-id.csv").write_text("user_id\n99999999999999999999999\n")
    (files / "pairs-short.csv").write_text("user_id,item_id\n1\n")
    (files / "empty.csv").write_text("")
    (files / "bad.toml").write_text("factors = [1, \n")
    (files / "params-list.toml").write_text("params = 3\n")
    (files / "params-beside.toml").write_text("reg_u = 2\n[params]\nreg_i = 4\n")  # reg_u was dropped silently
    (files / "ratings-neg.csv").write_text("userId,movieId,rating\n1,-5,4\n2,3,5\n")
    (files / "ratings-nan.csv").write_text("userId,movieId,rating\n1,5,nan\n2,3,5\n")
    (files / "ratings-inf.csv").write_text("userId,movieId,rating\n1,5,inf\n2,3,5\n")
    (files / "ratings-huge.csv").write_text("userId,movieId,rating\n1,99999999999999999999,4\n")
    (files / "ratings-scale.csv").write_text("userId,movieId,rating\n1,5,7\n")
    (files / "ratings-binary.csv").write_bytes(b"\x00\x01\x02" * 100)
    (files / "ratings-empty.csv").write_text("userId,movieId,rating\n")
    (files / "not.zip").write_text("not a zip")
    return {"data": data, "arts": arts, "files": files}


def _damaged_runs(arts: Path) -> None:
    good = arts / "bias-synth-random"

    def copy(name: str) -> Path:
        shutil.copytree(good, arts / name)
        return arts / name

    def manifest(name: str, change) -> None:
        path = copy(name) / "manifest.json"
        m = json.loads(path.read_text())
        change(m)
        path.write_text(json.dumps(m))

    manifest("dmg-missing-key", lambda m: m.pop("dataset"))
    manifest("dmg-string-int", lambda m: m.update(seed="42"))
    manifest("dmg-format", lambda m: m.update(format_version=99))
    manifest("dmg-model", lambda m: m.update(model="no-such-model"))
    manifest("dmg-config", lambda m: m.update(config={"reg_u": "lots"}))
    manifest("dmg-count", lambda m: m.update(n_users=7))
    (copy("dmg-list") / "manifest.json").write_text("[1, 2]")
    (copy("dmg-json") / "manifest.json").write_text("{not json")
    (copy("dmg-binary-manifest") / "manifest.json").write_bytes(b"\xff\xfe\x00")
    (copy("dmg-items") / "items.parquet").unlink()
    (copy("dmg-users") / "users.parquet").write_text("not parquet")
    (copy("dmg-npz-missing") / "arrays.npz").unlink()
    (copy("dmg-npz-garbage") / "arrays.npz").write_bytes(b"PK\x03\x04garbage")

    def arrays(name: str, change) -> None:
        path = copy(name) / "arrays.npz"
        with np.load(path) as npz:
            state = {k: npz[k] for k in npz.files}
        change(state)
        np.savez(path, **state)

    arrays("dmg-nan", lambda s: s["model.bi"].__setitem__(0, np.nan))
    arrays("dmg-shape", lambda s: s.update({"model.bu": s["model.bu"][:3]}))
    arrays("dmg-seen", lambda s: s["core.seen_indices"].__setitem__(0, 10_000))
    arrays("dmg-lacks", lambda s: s.pop("core.item_ids"))
    arrays("dmg-pickled", lambda s: s.update({"model.bu": np.array([{"a": 1}], dtype=object)}))
    arrays("dmg-string", lambda s: s.update({"core.fb_rank": np.array(["x"] * len(s["core.fb_rank"]))}))


def invoke(env, args, stdin=None):
    subs = {"{DATA}": str(env["data"]), "{ARTS}": str(env["arts"]), "{FILES}": str(env["files"])}
    argv = [str(a) for a in args]
    for key, value in subs.items():
        argv = [a.replace(key, value) for a in argv]
    if argv and argv[0] not in ("abtest-plan",) and "--data-dir" not in argv and _takes(argv, "--data-dir"):
        argv += ["--data-dir", subs["{DATA}"]]
    if "--artifacts-dir" not in argv and _takes(argv, "--artifacts-dir"):
        argv += ["--artifacts-dir", subs["{ARTS}"]]
    saved = dict(os.environ)  # a command may set variables for its own process (serve: NUMBA_NUM_THREADS)
    try:
        return CliRunner().invoke(only(argv[0]) if argv else app, argv, input=stdin)  # one command's tree, as main()
    finally:
        os.environ.clear()
        os.environ.update(saved)


_DATA = {"download", "preprocess", "info", "split", "generate", "train", "evaluate", "tune", "abtest", "benchmark",
         "insights"}
_ARTS = {"train", "predict", "recommend", "similar", "runs", "evaluate", "tune", "abtest"}


def _takes(argv: list[str], option: str) -> bool:
    if not argv or argv[0] in ("--help", "--version"):
        return False
    cmd = argv[0]
    if cmd == "abtest" and len(argv) > 1 and argv[1] == "plan":
        return False
    return cmd in (_DATA if option == "--data-dir" else _ARTS)


def assert_clean_failure(res, before: str, after: str, code=None) -> None:
    err = res.stderr
    assert "Traceback" not in err and "Traceback" not in res.stdout, err
    assert res.exit_code in DOCUMENTED - {0}, (res.exit_code, err)
    if code is not None:
        assert res.exit_code in ({code} if isinstance(code, int) else code), (res.exit_code, err)
    lines = err.splitlines()
    # A command that had started its work may have narrated it (progress log lines) before failing.
    at = next((k for k, line in enumerate(lines) if line.startswith("error: ")), None)
    assert at is not None, err
    narration, lines = lines[:at], lines[at:]
    assert len(narration) <= 3 and not any(w in " ".join(narration) for w in ("rror", "arning", "Trace")), err
    assert len(lines) in (1, 2), err
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), err
    assert len(lines[0]) < 600, "one readable line"
    assert res.stdout == "", res.stdout
    assert before == after, "a failing command changed the data or artifacts folders"


def assert_valid_success(res, fmt: str = "json") -> None:
    assert "Traceback" not in res.stderr
    if fmt == "json" and res.stdout.strip():
        json.loads(res.stdout)
    elif fmt == "jsonl":
        for line in res.stdout.splitlines():
            json.loads(line)


def check(env, args, code=None, stdin=None):
    before = tree_hash(env["data"], env["arts"])
    res = invoke(env, args, stdin)
    after = tree_hash(env["data"], env["arts"])
    if res.exit_code == 0 and code in (None, 0):
        assert_valid_success(res, "json" if "json" in args else ("jsonl" if "jsonl" in args else "table"))
    else:
        assert_clean_failure(res, before, after, code)
    return res


R, K = "bias-synth-random", "item-knn-synth-random"

# (arguments, exit code). Each runs once; data/artifacts must not change.
CASES = [
    # ---- numbers at the edges
    (["recommend", R, "--user", "1", "-n", "0"], 2),
    (["recommend", R, "--user", "1", "-n", "-1"], 2),
    (["recommend", R, "--user", "1", "-n", "1000000001"], 2),
    (["recommend", R, "--user", "1", "-n", "99999999999999999999999999"], 2),
    (["recommend", R, "--user", "1", "-n", "1e3"], 2),
    (["recommend", R, "--user", "1", "-n", "1_0"], 2),  # int() would read 10
    (["recommend", R, "--user", "1", "-n", "+3"], 2),
    (["abtest", "plan", "--baseline-ctr", "0.1", "--mde", "1_0e-3"], 2),  # float() would read 0.01
    (["recommend", R, "--user", "1", "-n", "nan"], 2),
    (["recommend", R, "--user", "99999999999999999999999"], 2),
    (["recommend", R, "--user", "-99999999999999999999999"], 2),
    (["recommend", R, "--user", "1.5"], 2),
    (["recommend", R, "--user", "0x10"], 2),
    (["recommend", R, "--user", "nan"], 2),
    (["predict", R, "--user", "1", "--item", "99999999999999999999"], 2),
    (["predict", R, "--user", "99999999999999999999", "--item", "1"], 2),
    (["predict", R, "--user", "1", "--item", "abc"], 2),
    (["similar", K, "--item", "99999999999999999999"], 2),
    (["similar", K, "--item", "1", "-n", "0"], 2),
    (["similar", K, "--item", "1", "-n", "99999999999999999999"], 2),
    (["train", "bias", "--dataset", "synth", "--seed", "-1", "--name", "x"], 2),
    (["train", "bias", "--dataset", "synth", "--seed", "99999999999999999999999", "--name", "x"], 2),
    (["train", "svd", "--dataset", "synth", "-p", "factors=0", "--name", "x"], 2),
    (["train", "svd", "--dataset", "synth", "-p", "factors=-5", "--name", "x"], 2),
    (["train", "svd", "--dataset", "synth", "-p", "factors=99999999999999999999", "--name", "x"], 2),
    (["train", "svd", "--dataset", "synth", "-p", "factors=100000000", "--name", "x"], 2),  # ~111 GiB
    (["train", "svd", "--dataset", "synth", "-p", "epochs=0", "--name", "x"], 2),
    (["train", "svd", "--dataset", "synth", "-p", "lr_all=nan", "--name", "x"], 2),
    (["train", "svd", "--dataset", "synth", "-p", "lr_all=inf", "--name", "x"], 2),
    (["train", "svd", "--dataset", "synth", "-p", "reg_all=-inf", "--name", "x"], 2),
    (["train", "svd", "--dataset", "synth", "-p", "reg_all=1e999", "--name", "x"], 2),
    (["train", "svd", "--dataset", "synth", "-p", "factors=2.5", "--name", "x"], 2),
    (["train", "item-knn", "--dataset", "synth", "-p", "k=0", "--name", "x"], 2),
    (["train", "als", "--dataset", "synth", "-p", "factors=3000000000", "--name", "x"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--cv", "0"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--cv", "1"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--cv", "-3"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--cv", "99999999999999999999"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--split", "random", "--k", "0"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--split", "random", "--k", "99999999999"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--split", "random", "--relevance-threshold", "nan"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--split", "random", "--relevance-threshold", "-inf"], 2),
    (["split", "synth", "--kind", "random", "--test", "0", "--name", "x"], 2),
    (["split", "synth", "--kind", "random", "--test", "1", "--name", "x"], 2),
    (["split", "synth", "--kind", "random", "--test", "-0.5", "--name", "x"], 2),
    (["split", "synth", "--kind", "random", "--test", "nan", "--name", "x"], 2),
    (["split", "synth", "--kind", "random", "--test", "inf", "--name", "x"], 2),
    (["split", "synth", "--kind", "random", "--val", "0.9", "--name", "x"], 2),
    (["split", "synth", "--kind", "kfold", "--k", "0", "--name", "x"], 2),
    (["split", "synth", "--kind", "kfold", "--k", "1", "--name", "x"], 2),
    (["split", "synth", "--kind", "kfold", "--k", "99999999999999999999", "--name", "x"], 2),
    (["split", "synth", "--kind", "leave-last", "--last", "0", "--name", "x"], 2),
    (["split", "synth", "--kind", "leave-last", "--last", "-1", "--name", "x"], 2),
    (["split", "synth", "--kind", "random", "--seed", "-1", "--name", "x"], 2),
    (["generate", "g", "--users", "0", "--items", "10", "--ratings", "10"], 2),
    (["generate", "g", "--users", "-1", "--items", "10", "--ratings", "10"], 2),
    (["generate", "g", "--users", "10", "--items", "10", "--ratings", "1000"], 2),
    (["generate", "g", "--users", "99999999999999999999", "--items", "10", "--ratings", "10"], 2),
    (["generate", "g", "--users", "100000000", "--items", "1000000", "--ratings", "100000000000"], 2),
    (["generate", "g", "--noise", "nan"], 2),
    (["generate", "g", "--noise", "-1"], 2),
    (["runs", "--limit", "0"], 2),
    (["runs", "--limit", "-5"], 2),
    (["abtest", "plan", "--baseline-ctr", "0", "--mde", "0.01"], 2),
    (["abtest", "plan", "--baseline-ctr", "1", "--mde", "0.01"], 2),
    (["abtest", "plan", "--baseline-ctr", "nan", "--mde", "0.01"], 2),
    (["abtest", "plan", "--baseline-ctr", "0.1", "--mde", "inf"], 2),
    (["abtest", "plan", "--baseline-ctr", "0.1", "--mde", "0"], 2),
    (["abtest", "plan", "--baseline-ctr", "0.1", "--mde", "0.01", "--alpha", "0"], 2),
    (["abtest", "plan", "--baseline-ctr", "0.1", "--mde", "0.01", "--alpha", "1.5"], 2),
    (["abtest", "plan", "--baseline-ctr", "0.1", "--mde", "0.01", "--power", "1"], 2),
    (["abtest", R, K, "--users", "0"], 2),
    (["abtest", R, K, "--users", "-1"], 2),
    (["abtest", R, K, "--traffic", "0"], 2),
    (["abtest", R, K, "--traffic", "1.5"], 2),
    (["abtest", R, K, "--traffic", "nan"], 2),
    (["abtest", R, K, "--k", "0"], 2),
    (["abtest", R, K, "--alpha", "nan"], 2),
    (["abtest", R, K, "--bootstrap", "-1"], 2),
    (["abtest", "bandit", R, K, "--rounds", "0"], 2),
    (["abtest", "bandit", R, K, "--rounds", "99999999999"], 2),
    (["abtest", "bandit", R, K, "--batch", "99999999999"], 2),
    (["abtest", "bandit", R, K, "--epsilon", "2"], 2),
    (["abtest", "bandit", R, K, "--epsilon", "nan"], 2),
    (["benchmark", "--scale", "0"], 2),
    (["benchmark", "--scale", "-5"], 2),
    (["benchmark", "--scale", "nan"], 2),
    (["benchmark", "--scale", "100000000000000"], 2),
    (["tune", "bias", "--dataset", "synth", "--random", "-1", "--space", "reg_u=uniform(1,2)"], 2),
    (["tune", "bias", "--dataset", "synth", "--grid", "reg_u=nan"], 2),
    (["tune", "bias", "--dataset", "synth", "--space", "reg_u=uniform(nan,2)", "--random", "2"], 2),
    (["tune", "bias", "--dataset", "synth", "--grid", "reg_u=1", "--cv", "0"], 2),
    (["abtest", R, K, "--bootstrap", "1000000000000"], 2),
    # ---- values outside the domain
    (["recommend", R, "--ratings", "1:99"], 2),
    (["recommend", R, "--ratings", "1:-1"], 2),
    (["recommend", R, "--ratings", "1:0"], 2),
    (["recommend", R, "--ratings", "1:nan"], 2),
    (["recommend", R, "--ratings", "1:inf"], 2),
    (["recommend", R, "--ratings", "1:4,1:5"], 2),
    (["recommend", R, "--ratings", ""], 2),
    (["recommend", R, "--ratings", "1"], 2),
    (["recommend", R, "--ratings", ":"], 2),
    (["recommend", R, "--ratings", "99999999999999999999:4"], 2),
    (["recommend", R, "--user", ""], 2),
    (["recommend", R, "--user", " , "], 2),
    (["recommend", R], 2),
    (["recommend", R, "--user", "1", "--all-users"], 2),
    (["recommend", R, "--user", "1", "--json", "--format", "csv"], 2),
    (["recommend", R, "--user", "1", "--format", "xml"], 2),
    (["predict", R, "--user", "1"], 2),
    (["predict", R, "--user", "1", "--item", "2", "--pairs-file", "{FILES}/pairs-short.csv"], 2),
    (["train", "bias", "--dataset", "synth", "--split", "kfold5:5", "--name", "x"], 3),
    (["train", "bias", "--dataset", "synth", "--split", "kfold5:-1", "--name", "x"], 3),
    (["train", "bias", "--dataset", "synth", "--split", "kfold5:x", "--name", "x"], 3),
    (["train", "bias", "--dataset", "synth", "--split", "random:0", "--name", "x"], 3),
    (["train", "bias", "--dataset", "synth", "--split", "nosuch", "--name", "x"], 3),
    (["train", "bias", "--dataset", "synth", "--name", "../x"], 2),
    (["train", "bias", "--dataset", "synth", "--name", ".hidden"], 2),
    (["train", "bias", "--dataset", "synth", "--name", "a" * 200], 2),
    (["train", "bias", "--dataset", "synth", "--name", R], 7),
    (["train", "bias", "--dataset", "synth", "-p", "nosuch=1", "--name", "x"], 2),
    (["train", "bias", "--dataset", "synth", "-p", "=1", "--name", "x"], 2),
    (["train", "bias", "--dataset", "synth", "-p", "reg_u", "--name", "x"], 2),
    (["train", "bias", "--dataset", "synth", "--preset", "nosuch", "--name", "x"], 2),
    (["train", "nosuch", "--dataset", "synth"], 2),
    (["train", "surprise:Nope", "--dataset", "synth"], 2),
    (["train", "bias", "--dataset", "nosuch"], 3),
    (["train", "bias", "--dataset", "../synth"], 2),
    (["evaluate"], 2),
    (["evaluate", R, "--model", "bias"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--split", "random", "--relevance", "x"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--split", "random", "--metrics", "x"], 2),
    (["evaluate", "--model", ",", "--dataset", "synth", "--split", "random"], 2),
    (["evaluate", "--model", "bias", "--dataset", "synth", "--split", "random", "-p", "svd.factors=2"], 2),
    (["split", "synth", "--kind", "nosuch", "--name", "x"], 2),
    (["split", "synth", "--kind", "random", "--name", "random"], 2),
    (["split", "synth", "--kind", "random", "--name", "../x"], 2),
    (["split", "nosuch", "--kind", "random"], 3),
    (["split", "synth", "--kind", "ml100k"], 3),
    (["generate", "ml-100k"], 2),
    (["generate", "../x"], 2),
    (["generate", "synth"], 2),
    (["generate", "g", "--preset", "nosuch"], 2),
    (["runs", "--ledger", "--kind", "x", "--limit", "0"], 2),
    (["abtest", R, R, "--click-model", "x"], 2),
    (["abtest", R, R, "--alternative", "x"], 2),
    (["abtest", "bandit", R, "--rounds", "3"], 2),
    (["abtest", "bandit", R, K, "--policy", "x"], 2),
    (["info", "nosuch"], 3),
    (["info", "../x"], 2),
    (["insights", "nosuch"], 3),
    (["download", "nosuch"], 2),
    (["download", "ml-100k", "--mirror", "{FILES}/nosuch"], 2),
    (["download", "ml-100k", "--from-zip", "{FILES}/nosuch.zip"], 2),
    (["download", "ml-100k", "--from-zip", "{FILES}/not.zip"], 4),
    (["download", "ml-100k", "--mirror", "ftp://example.invalid/x"], 2),
    (["download", "ml-100k", "--mirror", "{FILES}", "--from-zip", "{FILES}/not.zip"], 2),
    (["benchmark", "--scale", "x"], 2),
    (["benchmark", "--peers", "nosuch"], 2),
    (["tune", "bias", "--dataset", "synth"], 2),
    (["tune", "bias", "--dataset", "synth", "--space", "x"], 2),
    (["tune", "bias", "--dataset", "synth", "--space", "reg_u=uniform(2,1)", "--random", "2"], 2),
    (["tune", "bias", "--dataset", "synth", "--grid", "nosuch=1,2"], 2),
    # ---- click's own usage errors: one line plus a hint
    (["nosuch"], 2),
    (["recommend"], 2),
    (["recommend", R, "--user", "1", "--nosuch"], 2),
    (["train", "bias"], 2),
    (["abtest", "plan", "--mde", "x"], 2),
    (["--nosuch"], 2),
    # ---- damaged artifacts: exit 7 naming the problem
    (["recommend", "dmg-missing-key", "--user", "1"], 7),
    (["recommend", "dmg-string-int", "--user", "1"], 7),
    (["recommend", "dmg-format", "--user", "1"], 7),
    (["recommend", "dmg-model", "--user", "1"], 7),
    (["recommend", "dmg-config", "--user", "1"], 7),
    (["recommend", "dmg-count", "--user", "1"], 7),
    (["recommend", "dmg-list", "--user", "1"], 7),
    (["recommend", "dmg-json", "--user", "1"], 7),
    (["recommend", "dmg-binary-manifest", "--user", "1"], 7),
    (["recommend", "dmg-items", "--user", "1"], 7),
    (["recommend", "dmg-users", "--user", "1"], 7),
    (["recommend", "dmg-npz-missing", "--user", "1"], 7),
    (["recommend", "dmg-npz-garbage", "--user", "1"], 7),
    (["recommend", "dmg-nan", "--user", "1"], 7),
    (["recommend", "dmg-shape", "--user", "1"], 7),
    (["recommend", "dmg-seen", "--user", "1"], 7),
    (["recommend", "dmg-lacks", "--user", "1"], 7),
    (["recommend", "dmg-pickled", "--user", "1"], 7),
    (["recommend", "dmg-string", "--user", "1"], 7),
    (["predict", "dmg-nan", "--user", "1", "--item", "1"], 7),
    (["similar", "dmg-shape", "--item", "1"], 7),
    (["evaluate", "dmg-seen"], 7),
    (["abtest", R, "dmg-nan"], 7),
    (["recommend", "nosuch", "--user", "1"], 7),
    # ---- files
    (["recommend", R, "--users-file", "{FILES}"], 3),
    (["recommend", R, "--users-file", "{FILES}/nosuch.csv"], 3),
    (["recommend", R, "--users-file", "{FILES}/binary.csv"], 3),
    (["recommend", R, "--users-file", "{FILES}/latin1.csv"], 3),
    (["recommend", R, "--users-file", "{FILES}/noheader.csv"], 3),
    (["recommend", R, "--users-file", "{FILES}/badrow.csv"], 3),
    (["recommend", R, "--users-file", "{FILES}/huge-id.csv"], 3),
    (["recommend", R, "--users-file", "{FILES}/empty.csv"], 3),
    (["predict", R, "--pairs-file", "{FILES}/pairs-short.csv"], 3),
    (["predict", R, "--pairs-file", "{FILES}/binary.csv"], 3),
    (["predict", R, "--pairs-file", "{FILES}"], 3),
    (["train", "bias", "--dataset", "synth", "--config", "{FILES}", "--name", "x"], 3),
    (["train", "bias", "--dataset", "synth", "--config", "{FILES}/binary.csv", "--name", "x"], 2),
    (["train", "bias", "--dataset", "synth", "--config", "{FILES}/bad.toml", "--name", "x"], 2),
    (["train", "bias", "--dataset", "synth", "--config", "{FILES}/params-list.toml", "--name", "x"], 2),
    (["train", "bias", "--dataset", "synth", "--config", "{FILES}/params-beside.toml", "--name", "x"], 2),
    (["train", "bias", "--dataset", "synth", "--config", "{FILES}/nosuch.toml", "--name", "x"], 3),
    (["preprocess", "{FILES}/ratings-neg.csv", "--name", "neg"], 3),
    (["preprocess", "{FILES}/ratings-nan.csv", "--name", "x"], 3),
    (["preprocess", "{FILES}/ratings-inf.csv", "--name", "x"], 3),
    (["preprocess", "{FILES}/ratings-huge.csv", "--name", "x"], 3),
    (["preprocess", "{FILES}/ratings-scale.csv", "--name", "x"], 3),
    (["preprocess", "{FILES}/ratings-binary.csv", "--name", "x"], 3),
    (["preprocess", "{FILES}/ratings-empty.csv", "--name", "x"], 3),
    (["preprocess", "{FILES}/ratings-neg.csv"], 2),
    (["preprocess", "{FILES}/ratings-neg.csv", "--name", "x", "--columns", "user=userId,item=userId,rating=rating"], 2),
    (["preprocess", "{FILES}/ratings-neg.csv", "--name", "x", "--columns", "user=nope,item=movieId,rating=rating"], 3),
    (["preprocess", "{FILES}/not.zip", "--name", "x"], 2),
    (["preprocess", "{FILES}", "--name", "x"], 3),
    (["preprocess", "nosuch"], 3),
]


# Commands that other branches add; their cases run where the command exists (never a case that would
# start a server: every one of these fails before it binds).
LATER = [
    (["models", "nosuch"], 2),
    (["models", "svd", "--format", "xml"], 2),
    (["serve", "nosuch"], {2, 7}),
    (["serve", R, "--port", "70000"], 2),
    (["serve", R, "--port", "-1"], 2),
    (["serve", R, "--workers", "0"], 2),
    (["serve", R, "--cache-size", "-1"], 2),
    (["serve", R, "--max-batch", "0"], 2),
    (["serve", "../x"], 2),
]
_REGISTERED = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
CASES += [case for case in LATER if case[0][0] in _REGISTERED]


@pytest.mark.parametrize("args, code", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input(env, args, code):
    check(env, args, code)


def test_there_are_at_least_150_hand_written_cases_over_every_command():
    assert len(CASES) >= 150
    commands = {a[0] if a[0] != "abtest" or a[1] not in ("plan", "bandit") else f"abtest {a[1]}" for a, _ in CASES}
    from recsys_cli.cli.app import COMMAND_MODULES  # noqa: F401 - every module registered below

    every = _REGISTERED | {"abtest plan", "abtest bandit"}
    assert every - {"abtest"} <= commands | {"abtest"}, sorted(every - commands)


# ---------------------------------------------------------------------------- generated edges

EDGE_INTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30]),
)
EDGE_FLOAT_TEXT = st.one_of(
    st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e309", "-1e309", "0", "-0.0", "1e-320",
                     "0x1p3", "1_000", " 1", "", "1,5", "١"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
EDGE_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@FUZZ
@given(user=EDGE_INTS, n=EDGE_INTS)
def test_fuzz_recommend_numbers(env, user, n):
    res = check(env, ["recommend", R, "--user", str(user), "-n", str(n), "--format", "json"])
    if res.exit_code == 0:
        assert 1 <= n <= 1_000_000
        rows = json.loads(res.stdout)
        assert all(r["user_id"] == user for r in rows) and len(rows) <= min(n, 30)


@FUZZ
@given(user=EDGE_INTS, item=EDGE_INTS)
def test_fuzz_predict_ids(env, user, item):
    res = check(env, ["predict", R, "--user", str(user), "--item", str(item), "--format", "json"])
    if res.exit_code == 0:
        out = json.loads(res.stdout)
        assert out["user_id"] == user and out["item_id"] == item and np.isfinite(out["prediction"])


@FUZZ
@given(text=EDGE_TEXT)
def test_fuzz_user_text(env, text):
    check(env, ["recommend", R, "--user", text, "--format", "json"])


@FUZZ
@given(ctr=EDGE_FLOAT_TEXT, mde=EDGE_FLOAT_TEXT)
def test_fuzz_float_options(env, ctr, mde):
    res = check(env, ["abtest", "plan", "--baseline-ctr", ctr, "--mde", mde, "--format", "json"])
    if res.exit_code == 0:
        assert json.loads(res.stdout)


@FUZZ
@given(key=st.sampled_from(["reg_u", "reg_i", "reg", "lr", "method", "nosuch", "reg-u", ""]),
       value=st.one_of(EDGE_FLOAT_TEXT, EDGE_INTS.map(str), EDGE_TEXT))
def test_fuzz_hyperparameters(env, key, value):
    res = check(env, ["train", "bias", "--dataset", "synth", "-p", f"{key}={value}", "--name", "fuzz-bias", "--force",
                      "--format", "json"])
    if res.exit_code == 0:
        assert json.loads(res.stdout)["run"] == "fuzz-bias"


@FUZZ
@given(ratings=st.lists(st.tuples(EDGE_INTS, EDGE_FLOAT_TEXT), min_size=0, max_size=4))
def test_fuzz_fold_in_ratings(env, ratings):
    text = ",".join(f"{i}:{r}" for i, r in ratings)
    res = check(env, ["recommend", R, "--ratings", text, "--format", "json"])
    if res.exit_code == 0:
        values = [float(r) for _, r in ratings]
        assert all(np.isfinite(v) and 0.5 <= v <= 5 for v in values)


@FUZZ
@given(name=EDGE_TEXT)
def test_fuzz_names(env, name):
    check(env, ["recommend", name, "--user", "1", "--format", "json"])
    check(env, ["info", name, "--format", "json"])


@FUZZ
@given(content=st.binary(max_size=200))
def test_fuzz_users_file_bytes(env, content):
    path = env["files"] / "fuzz-users.csv"
    path.write_bytes(b"user_id\n" + content)
    check(env, ["recommend", R, "--users-file", str(path), "--format", "json"])


@FUZZ
@given(test=EDGE_FLOAT_TEXT, k=EDGE_INTS)
def test_fuzz_split_sizes(env, test, k):
    check(env, ["split", "synth", "--kind", "random", "--test", test, "--name", "fuzz-split", "--force",
                "--format", "json"])
    if not 2 <= k <= 50:  # a valid k would write 50 folds' worth of work per example: only the edges
        check(env, ["split", "synth", "--kind", "kfold", "--k", str(k), "--name", "fuzz-kfold", "--format", "json"], 2)


# ---------------------------------------------------------------------------- stdin, BOM, pipes


def test_users_file_dash_reads_stdin_and_strips_a_bom(env):
    res = check(env, ["recommend", R, "--users-file", "-", "-n", "2", "--format", "json"],
                stdin="\ufeffuser_id\n1\n2\n".encode())
    assert res.exit_code == 0
    assert [r["user_id"] for r in json.loads(res.stdout)] == [1, 1, 2, 2]
    res = check(env, ["predict", R, "--pairs-file", "-", "--format", "json"], stdin=b"user_id,item_id\n1,2\n")
    assert [(r["user_id"], r["item_id"]) for r in json.loads(res.stdout)] == [(1, 2)]
    check(env, ["recommend", R, "--users-file", "-"], 3, stdin=b"\x00\x01binary")


def test_ratings_csv_with_a_bom_preprocesses(env, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffuserId,movieId,rating\n1,5,4\n2,5,3\n2,6,5\n".encode())
    res = invoke(env, ["preprocess", str(path), "--name", "bom", "--data-dir", str(tmp_path / "d"), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_ratings"] == 3


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table"])
def test_a_closed_stdout_exits_0_quietly(env, fmt):
    """`recsys recommend ... | head -c 1`: the reader goes away; exit 0, nothing on stderr."""
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "recsys_cli", "recommend", R, "--all-users", "-n", "5", "--format", fmt,
           "--artifacts-dir", str(env["arts"])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PYTHONPATH": str(repo), "RECSYS_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"})
    proc.stdout.read(1)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert err == ""


@pytest.mark.parametrize("args, message", [
    (["recommend", R, "--user", "1", "-n", "1_0"],
     "error: Invalid value for '-n' / '--n': '1_0' is not an integer (ASCII digits with an optional minus)"),
    (["split", "synth", "--kind", "kfold", "--k", "+3"],
     "error: Invalid value for '--k': '+3' is not an integer (ASCII digits with an optional minus)"),
    (["abtest", "plan", "--baseline-ctr", "0.1", "--mde", "1_0e-3"],
     "error: Invalid value for '--mde': '1_0e-3' is not a number"),
])
def test_number_options_read_like_ids(env, args, message):
    """Every int option takes ASCII digits with an optional minus and no float option takes '_', as ids are read."""
    res = check(env, args, 2)
    assert res.stderr.splitlines()[0] == message


def test_number_options_still_take_plain_and_negative_numbers(env):
    res = check(env, ["recommend", R, "--user", "1", "-n", " 3", "--format", "json"], 0)
    assert len(json.loads(res.stdout)) == 3
    res = check(env, ["abtest", "plan", "--baseline-ctr", "+0.1", "--mde", "1e-2", "--format", "json"], 0)
    assert json.loads(res.stdout)["users_per_arm"] == 14751
