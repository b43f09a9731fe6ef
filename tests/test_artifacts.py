"""ArtifactStore: pickle-free round trips, no replacement without force, failures and kills never cost the old run."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from contract import checkerboard

from recsys_cli.artifacts import FORMAT_VERSION, ArtifactStore
from recsys_cli.errors import ArtifactError
from recsys_cli.models.registry import create_model

SAVE = {"dataset": "checkerboard", "fingerprint": "sha256:test", "split": None, "seed": 1, "train_seconds": 0.1}
USERS = [101, 125, 139, 99999]


@pytest.fixture(scope="module")
def models():
    data, _ = checkerboard()
    first = create_model("svd", {"factors": 4, "epochs": 5}).fit(data, seed=1)
    second = create_model("svd", {"factors": 6, "epochs": 8}).fit(data, seed=2)
    return first, second


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def same_recommendations(a, b) -> None:
    ra, rb = a.recommend(USERS, 5), b.recommend(USERS, 5)
    np.testing.assert_array_equal(ra.items, rb.items)
    np.testing.assert_array_equal(ra.scores, rb.scores)


def test_round_trip_is_pickle_free_and_complete(models, tmp_path):
    import pyarrow.parquet as pq

    model = models[0]
    store = ArtifactStore(tmp_path)
    titles = {1001 + i: f"Film {i}" for i in range(30)}
    path = store.save("run", model, titles=titles, extra={"note": "x"}, **SAVE)
    assert path == tmp_path / "run"
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "items.parquet", "manifest.json", "users.parquet"]
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        state = model.state()
        assert set(npz.files) == set(state)
        for k in npz.files:
            assert npz[k].dtype != object
            np.testing.assert_array_equal(npz[k], np.asarray(state[k]), err_msg=k)
    loaded, manifest = store.load("run", expect_fingerprint="sha256:test")
    assert manifest["format_version"] == FORMAT_VERSION and manifest["model"] == "svd"
    assert manifest["config"]["factors"] == 4 and manifest["note"] == "x"
    assert (manifest["n_users"], manifest["n_items"]) == (40, 30)
    assert loaded.config == model.config
    same_recommendations(model, loaded)
    assert pq.read_table(path / "users.parquet").column("user_id").to_pylist() == list(range(101, 141))
    assert store.titles("run") == titles
    assert [m["run"] for m in store.list_runs()] == ["run"]


def test_object_arrays_are_refused_both_ways(models, tmp_path):
    store = ArtifactStore(tmp_path)
    store.save("run", models[0], **SAVE)
    # A pickled (object) array in arrays.npz is never unpickled.
    state = {k: np.asarray(v) for k, v in models[0].state().items()}
    state["model.bu"] = np.array([{"evil": 1}, None], dtype=object)
    np.savez(tmp_path / "run" / "arrays.npz", **state)
    with pytest.raises(ArtifactError, match=r"run 'run': corrupt arrays.npz \(it holds pickled objects, which recsys never loads\)"):
        store.load("run")
    # A model whose state holds an object array is not saved, and leaves nothing behind.
    model = create_model("svd", {"factors": 4, "epochs": 5}).fit(checkerboard()[0], seed=1)
    model.bi = np.array(["a", 1], dtype=object)
    with pytest.raises(ArtifactError, match="'model.bi' of 'svd' is not a plain array"):
        store.save("other", model, **SAVE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_existing_run_is_replaced_only_with_force(models, tmp_path):
    first, second = models
    store = ArtifactStore(tmp_path)
    store.save("run", first, **SAVE)
    before = snapshot(tmp_path / "run")
    with pytest.raises(ArtifactError, match=r"run 'run' already exists at .*; use --force to replace it"):
        store.save("run", second, **SAVE)
    assert snapshot(tmp_path / "run") == before
    store.save("run", second, force=True, **SAVE)
    loaded, manifest = store.load("run")
    assert manifest["config"]["factors"] == 6
    same_recommendations(second, loaded)
    assert hidden(tmp_path) == []


@pytest.mark.parametrize("name", ["mlruns", "ledger.sqlite", "notes"])
def test_force_never_replaces_what_is_not_a_run(models, tmp_path, name):
    # The MLflow store and the ledger live in the artifacts folder too; so may a user's files.
    if name == "ledger.sqlite":
        (tmp_path / name).write_bytes(b"SQLite format 3\x00")
    else:
        (tmp_path / name / "0").mkdir(parents=True)
        (tmp_path / name / "0" / "meta.yaml").write_text("name: Default\n")
    def tree():
        return {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}

    before = tree()
    store = ArtifactStore(tmp_path)
    for force in (False, True):
        with pytest.raises(ArtifactError, match=rf"{name} exists and is not a recsys run; pick another run name"):
            store.save(name, models[0], force=force, **SAVE)
    assert tree() == before


def _fail_write_npz(real):
    def write_npz(path, arrays, *args, **kwds):
        Path(path).write_bytes(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    return write_npz


def _fail_vocab(real):
    def write_vocab(folder, model, titles):
        real(folder, model, titles)  # users.parquet and items.parquet are written ...
        (folder / "manifest.json").write_text("{")  # ... and a manifest is half-written
        raise OSError(28, "No space left on device")

    return staticmethod(write_vocab)


@pytest.mark.parametrize("where", ["savez", "vocab"])
def test_failed_save_keeps_previous_run_and_leaves_no_temp(models, tmp_path, monkeypatch, where):
    first, second = models
    store = ArtifactStore(tmp_path)
    store.save("run", first, **SAVE)
    before = snapshot(tmp_path / "run")
    if where == "savez":
        import recsys_cli.artifacts as artifacts

        monkeypatch.setattr(artifacts, "write_npz", _fail_write_npz(artifacts.write_npz))
    else:
        monkeypatch.setattr(ArtifactStore, "_write_vocab", _fail_vocab(ArtifactStore._write_vocab))
    with pytest.raises(OSError, match="No space left"):
        store.save("run", second, force=True, **SAVE)
    with pytest.raises(OSError, match="No space left"):
        store.save("new", second, **SAVE)
    monkeypatch.undo()
    assert snapshot(tmp_path / "run") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    loaded, _ = store.load("run")
    same_recommendations(first, loaded)


def test_failure_while_swapping_keeps_previous_run(models, tmp_path, monkeypatch):
    first, second = models
    store = ArtifactStore(tmp_path)
    store.save("run", first, **SAVE)
    before = snapshot(tmp_path / "run")
    real = os.replace

    def replace(src, dst):
        if Path(dst) == tmp_path / "run" and str(src).endswith(".tmp"):
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        store.save("run", second, force=True, **SAVE)
    monkeypatch.undo()
    assert store.exists("run") and snapshot(tmp_path / "run") == before
    assert hidden(tmp_path) == []


def test_format_version_and_fingerprint_mismatch(models, tmp_path):
    store = ArtifactStore(tmp_path)
    store.save("run", models[0], **SAVE)
    with pytest.raises(ArtifactError, match=r"run 'run' was trained on a different version of dataset "
                                            r"'checkerboard' \(fingerprint mismatch\); retrain it"):
        store.load("run", expect_fingerprint="sha256:other")
    store.load("run", expect_fingerprint="sha256:test")
    with pytest.raises(ArtifactError, match=r"unknown run 'nope' in .*; known runs: run"):
        store.load("nope")
    mf = tmp_path / "run" / "manifest.json"
    manifest = json.loads(mf.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    mf.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=rf"run 'run' has artifact format {FORMAT_VERSION + 1}, "
                                            rf"this recsys reads {FORMAT_VERSION}; retrain it"):
        store.load("run")
    del manifest["format_version"]
    mf.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="has artifact format None"):
        store.load("run")
    mf.write_text("{not json")
    with pytest.raises(ArtifactError, match="run 'run': unreadable manifest"):
        store.load("run")


def test_config_this_version_cannot_use_is_an_artifact_error(models, tmp_path):
    store = ArtifactStore(tmp_path)
    store.save("run", models[0], **SAVE)
    mf = tmp_path / "run" / "manifest.json"
    manifest = json.loads(mf.read_text())
    manifest["config"]["shuffle_mode"] = "blocks"  # a parameter of another version
    mf.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"^run 'run' has a config this version of recsys cannot use "
                                            r"\(unknown parameter 'shuffle_mode'; valid parameters: .*\); retrain it$"):
        store.load("run")


def test_missing_arrays_is_an_artifact_error(models, tmp_path):
    store = ArtifactStore(tmp_path)
    store.save("run", models[0], **SAVE)
    (tmp_path / "run" / "arrays.npz").unlink()
    with pytest.raises(ArtifactError, match="run 'run': corrupt arrays.npz"):
        store.load("run")


def test_truncated_arrays_is_an_artifact_error(models, tmp_path):
    store = ArtifactStore(tmp_path)
    store.save("run", models[0], **SAVE)
    npz = tmp_path / "run" / "arrays.npz"
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="run 'run': corrupt arrays.npz"):
        store.load("run")


def _good_run(store: ArtifactStore, model, name: str, created: str) -> None:
    store.save(name, model, **SAVE)
    mf = store.path(name) / "manifest.json"
    manifest = json.loads(mf.read_text())
    manifest["created"] = created
    mf.write_text(json.dumps(manifest))


def test_list_runs_skips_unreadable_folders(models, tmp_path):
    store = ArtifactStore(tmp_path / "missing")
    assert store.list_runs() == []
    store = ArtifactStore(tmp_path)
    _good_run(store, models[0], "old", "2020-01-01T00:00:00+0000")
    _good_run(store, models[0], "new", "2024-01-01T00:00:00+0000")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text('{"run": ')
    (tmp_path / "dir-manifest" / "manifest.json").mkdir(parents=True)
    (tmp_path / ".new.abc123.tmp").mkdir()  # a half-written run from a killed save
    (tmp_path / ".new.abc123.tmp" / "manifest.json").write_text('{"model": "svd"}')
    (tmp_path / "ledger.jsonl").write_text("{}\n")
    assert [m["run"] for m in store.list_runs()] == ["new", "old"]
    assert not store.exists("empty")
    with pytest.raises(ArtifactError, match="run 'broken': unreadable manifest"):
        store.load("broken")


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"[1, 2]"], ids=["binary", "not-an-object"])
def test_list_runs_skips_manifests_that_are_not_json_objects(models, tmp_path, content):
    store = ArtifactStore(tmp_path)
    store.save("good", models[0], **SAVE)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_bytes(content)
    assert [m["run"] for m in store.list_runs()] == ["good"]


@pytest.mark.parametrize(("key", "value"), [
    ("train_seconds", "slow"), ("train_seconds", True), ("metrics", "oops"), ("metrics", {"rmse": "low"}),
    ("created", 20240101), ("model", ["svd"]), ("split", {"name": "random"}),
])
def test_runs_skips_manifests_with_wrong_types_in_listed_fields(models, tmp_path, key, value):
    """`recsys runs` on a run whose manifest has a listed field of the wrong JSON type: the run is skipped
    like an unreadable one, in every format and with --sort (the table was exit 1, 'Unknown format code
    'f' for object of type 'str'', and --sort 'str' object has no attribute 'get')."""
    from typer.testing import CliRunner

    from recsys_cli.cli.app import app

    store = ArtifactStore(tmp_path)
    store.save("good", models[0], **SAVE)
    store.save("bad", models[0], **SAVE)
    mf = tmp_path / "bad" / "manifest.json"
    mf.write_text(json.dumps({**json.loads(mf.read_text()), key: value}))
    assert [m["run"] for m in store.list_runs()] == ["good"]
    for args in (["--format", "table"], ["--format", "csv"], ["--format", "json", "--sort", "rmse"]):
        res = CliRunner().invoke(app, ["runs", "--artifacts-dir", str(tmp_path), *args])
        assert (res.exit_code, res.stderr) == (0, ""), res.output
        assert "bad" not in res.stdout
    res = CliRunner().invoke(app, ["runs", "--artifacts-dir", str(tmp_path), "--format", "json"])
    assert [r["run"] for r in json.loads(res.stdout)] == ["good"]


# ------------------------------------------------------------------ a killed `recsys train --force`


def _lines(stream, out: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        out.put(line)
    out.put(None)


def test_killed_force_train_leaves_previous_run(tmp_path):
    from recsys_cli.api.runs import train_run
    from recsys_cli.data.preprocess import preprocess
    from recsys_cli.data.synthetic import generate

    data, arts = tmp_path / "data", tmp_path / "artifacts"
    generate("synth-kill", n_users=300, n_items=200, n_ratings=20000, seed=3, data_dir=data)
    preprocess("synth-kill", data_dir=data)
    train_run("svd", "synth-kill", params={"factors": 8, "epochs": 5}, name="svd-kill", data_dir=data,
              artifacts_dir=arts)
    store = ArtifactStore(arts)
    before = snapshot(arts / "svd-kill")
    previous, _ = store.load("svd-kill")

    env = {**os.environ, "RECSYS_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "recsys_cli", "train", "svd", "--dataset", "synth-kill", "--name", "svd-kill",
           "-p", "epochs=200000", "--force", "--data-dir", str(data), "--artifacts-dir", str(arts)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True).start()
        deadline = time.monotonic() + 120
        while True:  # wait until the child has loaded the data and started training
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "recsys train exited before training started"
            if line.startswith("training svd on synth-kill"):
                break
        time.sleep(1.0)
        assert proc.poll() is None, "training finished before it could be killed; raise epochs"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert snapshot(arts / "svd-kill") == before
    loaded, manifest = store.load("svd-kill")
    assert manifest["config"]["epochs"] == 5
    users = previous.user_ids[:20]
    a, b = previous.recommend(users, 10), loaded.recommend(users, 10)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert [m["run"] for m in store.list_runs()] == ["svd-kill"]
    # The store still works: a later --force train replaces the run and cleans up after itself.
    train_run("svd", "synth-kill", params={"factors": 8, "epochs": 6}, name="svd-kill", data_dir=data,
              artifacts_dir=arts, force=True)
    assert store.load("svd-kill")[1]["config"]["epochs"] == 6
    assert not [p for p in hidden(arts) if p.startswith(".svd-kill.") and p.endswith(".old")]


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda s: s.update({"core.seen_indices": s["core.seen_indices"] + 10_000}), "outside"),
        (lambda s: s.update({"core.fb_item_bias": s["core.fb_item_bias"][:-1]}), "shape"),
        (lambda s: s["core.fb_user_bias"].__setitem__(0, np.nan), "NaN"),
        (lambda s: s.pop("core.user_ids"), "lacks 'user_ids'"),
        (lambda s: s.update({"core.seen_indptr": s["core.seen_indptr"][::-1].copy()}), "seen_indptr"),
    ],
)
def test_damaged_arrays_are_artifact_errors(tmp_path, damage, words):
    """Arrays that load but disagree with each other are refused with the array named (exit 7), not used."""
    from recsys_cli.api.data import from_frame
    from recsys_cli.api.model import train

    data = from_frame([(u, i, float(1 + (u * i) % 5)) for u in range(20) for i in range(15) if (u + i) % 3],
                      user="u", item="i", rating="r")
    store = ArtifactStore(tmp_path)
    store.save("run", train("bias", data).estimator, dataset="d", fingerprint="f", split=None, seed=1,
               train_seconds=0.1)
    path = tmp_path / "run" / "arrays.npz"
    with np.load(path) as npz:
        state = {k: npz[k].copy() for k in npz.files}
    damage(state)
    np.savez(path, **state)
    with pytest.raises(ArtifactError, match=words):
        store.load("run")
