"""Fault injection on every write path: kill -9 at each step, a full disk, a read-only folder,
a broken ledger, damaged archives, and a low address-space limit.

Kills are real SIGKILLs of a `recsys` child process, sent at the N-th call of os.replace or
shutil.rmtree (N = 1, 2, ... until the command finishes untouched), so every step of every
folder swap is cut once. Full and read-only disks are small tmpfs mounts (root only; skipped
with the reason otherwise).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import recsys_cli as rs
from recsys_cli.cli.app import app

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "RECSYS_NO_PROGRESS": "1"}

# Runs a recsys command in a child that SIGKILLs itself at the N-th call of os.replace, shutil.rmtree
# or os.unlink (which Path.unlink and rmtree call too).
KILLER = r"""
import os, shutil, signal, sys
fn, n = sys.argv[1], int(sys.argv[2])
calls = {"replace": 0, "rmtree": 0, "unlink": 0}
real = {"replace": os.replace, "rmtree": shutil.rmtree, "unlink": os.unlink}
def wrap(name):
    def call(*args, **kwargs):
        calls[name] += 1
        if name == fn and calls[name] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return real[name](*args, **kwargs)
    return call
os.replace, shutil.rmtree, os.unlink = wrap("replace"), wrap("rmtree"), wrap("unlink")
if fn == "insert":  # killed inside the ledger's transaction, after its INSERT and before COMMIT
    import recsys_cli.ledger as ledger
    connect = ledger._connect
    class Conn:
        def __init__(self, conn):
            self.conn = conn
        def __getattr__(self, name):
            return getattr(self.conn, name)
        def execute(self, sql, *args):
            out = self.conn.execute(sql, *args)
            if sql.startswith("INSERT"):
                os.kill(os.getpid(), signal.SIGKILL)
            return out
    ledger._connect = lambda path: Conn(connect(path))
sys.argv = ["recsys", *sys.argv[3:]]
from recsys_cli.cli.app import main
main()
"""


def cli(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def killed_run(fn: str, n: int, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILLER, fn, str(n), *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=300)


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    data, arts = root / "data", root / "artifacts"
    rs.generate("synth", users=60, items=40, ratings=1500, seed=3, data_dir=data)
    rs.preprocess("synth", data_dir=data)
    res = cli("train", "bias", "--dataset", "synth", "--split", "random", "--data-dir", data, "--artifacts-dir", arts,
              "--seed", "1", "--format", "json")
    assert res.exit_code == 0, res.output
    return {"data": data, "arts": arts}


def seed_of(arts: Path, run: str) -> int:
    return rs.load_run(run, artifacts_dir=arts).manifest.seed


# ---------------------------------------------------------------------------- kill -9 at every step


@pytest.mark.parametrize("fn", ["replace", "rmtree"])
@pytest.mark.slow
def test_kill_at_every_step_of_train_force_never_loses_the_run(env, fn):
    """train --force over an existing run, killed at each os.replace / rmtree: afterwards the run loads
    (old or new, never neither), and the next listing leaves no hidden .tmp/.old folders."""
    arts = env["arts"]
    base = ["train", "bias", "--dataset", "synth", "--split", "random", "--data-dir", env["data"],
            "--artifacts-dir", arts, "--name", f"swap-{fn}", "--format", "json"]
    assert cli(*base, "--seed", "1").exit_code == 0
    outcomes = []
    for n in range(1, 20):
        proc = killed_run(fn, n, *base, "--seed", str(100 + n), "--force")
        if proc.returncode == 0:
            assert seed_of(arts, f"swap-{fn}") == 100 + n
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        seed = seed_of(arts, f"swap-{fn}")  # loading recovers an interrupted swap
        assert seed in (1, *range(101, 100 + n + 1)), seed
        outcomes.append(seed)
        rs.list_runs(artifacts_dir=arts)
        assert hidden(arts) == [], f"leftovers after a kill at {fn} #{n}: {hidden(arts)}"
    else:
        pytest.fail("the command never finished")
    assert outcomes, "no kill point was reached"
    if fn == "replace":  # killed between the two renames: the old run was put back
        assert outcomes[0] == 1


def test_metrics_merged_at_once_are_all_kept_and_a_killed_writers_file_is_cleaned(env, tmp_path):
    """Evaluations of one run merge their metrics into its manifest under a lock on the run's folder: merges
    from several processes at once are all kept, and a temporary file a killed evaluation left is deleted."""
    arts = tmp_path / "artifacts"
    shutil.copytree(env["arts"], arts)
    run = next(p.name for p in arts.iterdir() if (p / "manifest.json").is_file())
    leftover = arts / run / ".manifest.json.999999999.dead.tmp"  # a writer killed before its os.replace
    leftover.write_text("{")
    code = ("import sys; from recsys_cli.artifacts import ArtifactStore; "
            "ArtifactStore(sys.argv[1]).update_metrics(sys.argv[2], {sys.argv[3]: float(sys.argv[4])})")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(arts), run, f"m{k}", str(k)], env=ENV,
                              stderr=subprocess.PIPE, text=True) for k in range(6)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    metrics = json.loads((arts / run / "manifest.json").read_text())["metrics"]
    assert {f"m{k}": float(k) for k in range(6)}.items() <= metrics.items()
    assert hidden(arts / run) == []


def test_kill_between_renames_is_restored_by_runs_listing(env):
    arts = env["arts"]
    base = ["train", "bias", "--dataset", "synth", "--split", "random", "--data-dir", env["data"],
            "--artifacts-dir", arts, "--name", "swap-list", "--format", "json"]
    assert cli(*base, "--seed", "1").exit_code == 0
    proc = killed_run("replace", 2, *base, "--seed", "7", "--force")  # after old -> .old, before new -> NAME
    assert proc.returncode == -signal.SIGKILL
    assert not (arts / "swap-list").exists() and any(n.endswith(".old") for n in hidden(arts))
    res = cli("runs", "--artifacts-dir", arts, "--format", "json")
    assert res.exit_code == 0
    assert "swap-list" in [r["run"] for r in json.loads(res.stdout)]
    assert hidden(arts) == []


def test_a_live_writers_scratch_folder_is_left_alone(env, tmp_path):
    from recsys_cli.swap import recover

    live = tmp_path / f".x.{os.getppid()}.abc123.tmp"  # our parent process is alive
    dead = tmp_path / ".x.999999999.abc123.tmp"
    live.mkdir()
    dead.mkdir()
    assert recover(tmp_path) == []
    assert live.exists() and not dead.exists()


@pytest.mark.slow
def test_kill_at_every_step_of_preprocess_keeps_the_dataset(env):
    data = env["data"]
    before = rs.load_dataset("synth", data_dir=data).fingerprint
    for n in range(1, 40):
        proc = killed_run("replace", n, "preprocess", "synth", "--data-dir", data, "--format", "json")
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert rs.load_dataset("synth", data_dir=data).fingerprint == before  # recovered if needed
        res = cli("info", "--data-dir", data, "--format", "json")
        assert res.exit_code == 0
        assert hidden(data / "processed") == [], f"kill at replace #{n}: {hidden(data / 'processed')}"
    else:
        pytest.fail("preprocess never finished")
    assert n > 2  # the splits' and the folder's renames were all cut once


@pytest.mark.slow
def test_kill_at_every_step_of_download_keeps_the_release(tmp_path, mirror_dir):
    data = tmp_path / "data"
    assert cli("download", "ml-100k", "--mirror", mirror_dir, "--data-dir", data).exit_code == 0
    raw = data / "raw"
    u_data = (raw / "ml-100k" / "u.data").read_bytes()
    for n in range(1, 10):
        proc = killed_run("replace", n, "download", "ml-100k", "--mirror", mirror_dir, "--data-dir", data, "--force")
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        res = cli("download", "ml-100k", "--mirror", mirror_dir, "--data-dir", data)  # recovers, then "present"
        assert res.exit_code == 0, res.output
        assert (raw / "ml-100k" / "u.data").read_bytes() == u_data
        assert [h for h in hidden(raw) if not h.endswith(".part")] == []
    else:
        pytest.fail("download never finished")


@pytest.fixture
def data_copy(env, tmp_path):
    """A copy of the module's data folder (raw and processed synth), for tests that rewrite it."""
    data = tmp_path / "data"
    shutil.copytree(env["data"], data)
    return data


def splits_of(processed: Path) -> dict[str, tuple[bytes, dict]]:
    """Every split of a processed dataset as (its part column's bytes, its record less the file name);
    raises if one does not load."""
    from recsys_cli.data.splits import load_split

    out = {}
    for name in json.loads((processed / "dataset.json").read_text())["splits"]:
        part, info = load_split(processed, name)
        out[name] = (part.tobytes(), {k: v for k, v in info.items() if k != "file"})
    return out


def stray_split_files(processed: Path) -> list[str]:
    """Files in splits/ that no split of dataset.json points at (hidden temp files included)."""
    files = {info["file"] for info in json.loads((processed / "dataset.json").read_text())["splits"].values()}
    return sorted(p.name for p in (processed / "splits").iterdir() if f"splits/{p.name}" not in files)


def test_splits_written_at_once_by_several_processes_are_all_kept(data_copy):
    """dataset.json is read, changed and replaced by each `recsys split`: processes running side by side take
    turns on the folder's lock, so no record replaces another (without the lock, one run in three lost one)."""
    data = data_copy
    processed = data / "processed" / "synth"
    before = splits_of(processed)
    names = [f"side{k}" for k in range(6)]
    procs = [subprocess.Popen([sys.executable, "-m", "recsys_cli", "split", "synth", "--kind", "random", "--name",
                               name, "--seed", str(k + 1), "--data-dir", str(data), "--format", "json"], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, name in enumerate(names)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    after = splits_of(processed)
    assert set(after) == set(before) | set(names)
    assert {k: after[k] for k in before} == before
    for k, name in enumerate(names):  # each is the split its own command made
        part, info = after[name]
        assert info["seed"] == k + 1
    assert stray_split_files(processed) == [] and hidden(processed) == []


@pytest.mark.slow
@pytest.mark.parametrize("fn", ["replace", "unlink"])
@pytest.mark.parametrize("replacing", [False, True], ids=["new", "force"])
def test_kill_at_every_step_of_split_keeps_the_dataset_and_its_splits(data_copy, fn, replacing):
    """`recsys split` (a new split, or --force over one) killed at each os.replace / unlink: the dataset and
    every split load afterwards, the split being written is its old or its new version whole (its part
    column and its record in dataset.json agree), and the next `split` leaves no leftovers."""
    data = data_copy
    processed = data / "processed" / "synth"
    fingerprint = rs.load_dataset("synth", data_dir=data).fingerprint
    for n in range(1, 40):
        name = "random" if replacing else f"extra{n}"
        args = ["split", "synth", "--kind", "random", "--test", "0.3", "--name", name, "--seed", str(100 + n),
                "--data-dir", data, "--format", "json"]
        before = splits_of(processed)
        proc = killed_run(fn, n, *args, *(["--force"] if replacing else []))
        if proc.returncode == 0:
            assert stray_split_files(processed) == [] and hidden(processed) == []
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        after = splits_of(processed)  # every split loads
        assert rs.load_dataset("synth", data_dir=data).fingerprint == fingerprint
        res = cli(*args, "--force")  # the next command: the same split again
        assert res.exit_code == 0, res.output
        done = splits_of(processed)
        assert {k: v for k, v in after.items() if k != name} == {k: v for k, v in before.items() if k != name}
        assert after.get(name) in (before.get(name), done[name]), f"split {name} half-written at {fn} #{n}"
        assert stray_split_files(processed) == [], f"leftovers after a kill at {fn} #{n}"
        assert hidden(processed) == [], f"leftovers after a kill at {fn} #{n}: {hidden(processed)}"
    else:
        pytest.fail("split never finished")
    assert n > 2


@pytest.mark.slow
@pytest.mark.parametrize("fn", ["replace", "rmtree"])
def test_kill_at_every_step_of_generate_keeps_the_raw_data(data_copy, fn):
    """`generate --force` over an existing synthetic dataset, killed at each os.replace / rmtree: the raw
    folder is its old or its new version whole, and the next command (`preprocess`, the step generate
    names) works on it and leaves no hidden leftovers."""
    data = data_copy
    raw = data / "raw"

    def whole() -> int:
        record = json.loads((raw / "synth" / "generate.json").read_text())
        digest = hashlib.sha256((raw / "synth" / "ratings.csv").read_bytes()).hexdigest()
        assert digest == record["files"]["ratings.csv"]["sha256"]
        return record["params"]["seed"]

    base = ["generate", "synth", "--users", "60", "--items", "40", "--ratings", "1500", "--data-dir", data,
            "--force", "--format", "json"]
    for n in range(1, 20):
        before = whole()
        proc = killed_run(fn, n, *base, "--seed", str(100 + n))
        if proc.returncode == 0:
            assert whole() == 100 + n and hidden(raw) == []
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        res = cli("info", "--data-dir", data, "--format", "json")  # puts back a version moved aside, if any
        assert res.exit_code == 0, res.output
        assert [r["downloaded"] for r in json.loads(res.stdout) if r["name"] == "synth"] == [True]
        res = cli("preprocess", "synth", "--data-dir", data, "--format", "json")
        assert res.exit_code == 0, res.output
        assert whole() in (before, 100 + n)
        assert hidden(raw) == [], f"leftovers after a kill at {fn} #{n}: {hidden(raw)}"
        assert hidden(data / "processed") == []
    else:
        pytest.fail("generate never finished")
    assert n > 1


def test_kill_during_a_ledger_write_keeps_the_ledger(env):
    arts = env["arts"]
    before = len(rs.list_runs(artifacts_dir=arts))
    conn = sqlite3.connect(arts / "ledger.sqlite")
    n_entries = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    conn.close()
    proc = killed_run("insert", 1, "train", "bias", "--dataset", "synth", "--data-dir", env["data"],
                      "--artifacts-dir", arts, "--name", "ledger-kill", "--format", "json")
    assert proc.returncode == -signal.SIGKILL
    res = cli("runs", "--ledger", "--artifacts-dir", arts, "--format", "json")
    assert res.exit_code == 0
    assert len(json.loads(res.stdout)) == n_entries  # the open transaction was rolled back, nothing else lost
    assert len(rs.list_runs(artifacts_dir=arts)) == before + 1  # the run itself was saved before the ledger
    res = cli("train", "bias", "--dataset", "synth", "--data-dir", env["data"], "--artifacts-dir", arts,
              "--name", "ledger-after", "--format", "json")
    assert res.exit_code == 0 and "warning" not in res.stderr  # the ledger still takes writes


# ---------------------------------------------------------------------------- the ledger


def _break_ledger(path: Path, how: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "garbage":
        path.write_bytes(b"this is not a database\n" * 200)
    elif how == "truncated":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, created TEXT)")
        conn.executemany("INSERT INTO entries (created) VALUES (?)", [("x" * 500,)] * 200)
        conn.commit()
        conn.close()
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    elif how == "schema":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE entries (something_else TEXT NOT NULL)")
        conn.commit()
        conn.close()
    elif how == "directory":
        path.mkdir()
        (path / "file").write_text("x")


@pytest.mark.parametrize("how", ["garbage", "truncated", "schema", "directory"])
def test_a_broken_ledger_never_costs_train_or_evaluate_their_results(env, tmp_path, how):
    arts = tmp_path / "arts"
    _break_ledger(arts / "ledger.sqlite", how)
    res = cli("train", "bias", "--dataset", "synth", "--split", "random", "--data-dir", env["data"],
              "--artifacts-dir", arts, "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["run"] == "bias-synth-random"
    warn = [line for line in res.stderr.splitlines() if line.startswith("warning: run ledger")]
    assert len(warn) == 1 and "not updated" in warn[0]
    assert "Traceback" not in res.stderr
    assert rs.load_run("bias-synth-random", artifacts_dir=arts).manifest.model == "bias"
    res = cli("evaluate", "bias-synth-random", "--data-dir", env["data"], "--artifacts-dir", arts, "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["metrics"]["rmse"] > 0
    assert sum(line.startswith("warning: run ledger") for line in res.stderr.splitlines()) == 1
    res = cli("runs", "--ledger", "--artifacts-dir", arts)
    if how == "schema":  # readable, but its rows are not ours
        assert res.exit_code in (0, 7)
    else:
        assert res.exit_code == 7
        assert res.stderr.startswith("error: cannot read the run ledger") and res.stderr.count("\n") == 1


def test_a_ledger_locked_past_the_timeout_costs_one_warning(env, tmp_path):
    arts = tmp_path / "arts"
    arts.mkdir()
    holder = sqlite3.connect(arts / "ledger.sqlite", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # another writer that never lets go
    try:
        res = cli("train", "bias", "--dataset", "synth", "--data-dir", env["data"], "--artifacts-dir", arts,
                  "--format", "json", env={"RECSYS_LEDGER_TIMEOUT": "0.2"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert res.exit_code == 0, res.output
    assert "locked" in res.stderr and res.stderr.count("warning:") == 1
    assert (arts / "bias-synth" / "manifest.json").is_file()


# ---------------------------------------------------------------------------- archives


def _damaged_zip(path: Path) -> None:
    """A zip whose central directory is fine but whose deflate stream is garbage."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-100k/u.data", "1\t2\t3\t881250949\n" * 20000)
    data = bytearray(path.read_bytes())
    for i in range(60, 100):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_archive_that_passes_the_checksum_but_does_not_decompress(tmp_path, monkeypatch):
    from recsys_cli.data import download as dl

    bad = tmp_path / "ml-100k.zip"
    _damaged_zip(bad)
    md5 = hashlib.md5(bad.read_bytes()).hexdigest()
    monkeypatch.setattr(dl, "_expected_md5", lambda *a, **k: (md5, "test"))
    data = tmp_path / "data"
    previous = data / "raw" / "ml-100k"
    previous.mkdir(parents=True)
    (previous / "download.json").write_text('{"md5": "old"}')
    before = tree_hash(data)
    res = cli("download", "ml-100k", "--from-zip", bad, "--data-dir", data, "--force")
    assert res.exit_code == 4, res.output
    assert res.stderr.startswith("error: ml-100k.zip does not decompress") and res.stderr.count("\n") == 1
    assert tree_hash(data) == before  # previous data intact, nothing left behind


def test_a_read_error_mid_extraction_is_exit_4(tmp_path, monkeypatch, mirror_dir):
    import errno

    data = tmp_path / "data"
    real_read = zipfile.ZipExtFile.read
    calls = {"n": 0}

    def failing_read(self, n=-1):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.EIO, "Input/output error")
        return real_read(self, n)

    monkeypatch.setattr(zipfile.ZipExtFile, "read", failing_read)
    res = cli("download", "ml-100k", "--mirror", mirror_dir, "--data-dir", data)
    assert res.exit_code == 4, res.output
    assert "Input/output error" in res.stderr and res.stderr.count("\n") == 1
    assert not (data / "raw" / "ml-100k").exists() and hidden(data / "raw") == []


# ---------------------------------------------------------------------------- full and read-only disks


def fill_up(path: Path, leave: int) -> None:
    """Write `path` until the disk is full, then give back `leave` bytes."""
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    with open(path, "r+b") as fh:
        fh.truncate(max(0, path.stat().st_size - leave))


@contextmanager
def tmpfs(path: Path, size: str, *, readonly: bool = False, fill=None):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small tmpfs needs root (mount)")
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        if fill is not None:
            fill(path)
        if readonly:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_during_preprocess_is_exit_8_and_leaves_nothing(env, tmp_path):
    def fill(root):
        shutil.copytree(env["data"] / "raw" / "synth", root / "raw" / "synth")
        fill_up(root / "ballast", leave=8192)

    with tmpfs(tmp_path / "mnt", "600k", fill=fill) as root:
        res = cli("preprocess", "synth", "--data-dir", root, "--format", "json")
        assert res.exit_code == 8, res.output
        assert res.stderr.splitlines()[-1].startswith("error: disk full")
        assert "Traceback" not in res.stderr and res.stdout == ""
        assert not (root / "processed" / "synth").exists() and hidden(root / "processed") == []


def test_disk_full_while_saving_a_run_is_exit_8_and_leaves_nothing(env, tmp_path):
    with tmpfs(tmp_path / "mnt", "1m", fill=lambda root: fill_up(root / "ballast", leave=8192)) as root:
        res = cli("train", "item-knn", "--dataset", "synth", "--data-dir", env["data"], "--artifacts-dir", root,
                  "--format", "json")
        assert res.exit_code == 8, res.output
        assert res.stderr.splitlines()[-1].startswith("error: disk full")
        assert sorted(p.name for p in root.iterdir()) in (["ballast"], ["ballast", "ledger.sqlite"])


@pytest.mark.parametrize("leave", [0, 4096], ids=["at-the-parquet", "at-dataset.json"])
def test_disk_full_during_split_is_exit_8_and_leaves_the_dataset_as_it_was(env, tmp_path, leave):
    """No room for the split's parquet (leave 0), or room for it and none for dataset.json (one page):
    exit 8 in one line, for a new split and for one replaced with --force, and the data folder unchanged."""
    def fill(root):
        shutil.copytree(env["data"] / "processed" / "synth", root / "data" / "processed" / "synth")
        fill_up(root / "ballast", leave=leave)

    with tmpfs(tmp_path / "mnt", "1m", fill=fill) as root:
        data = root / "data"
        before = tree_hash(data)
        for args in (("--name", "extra"), ("--name", "random", "--force")):
            res = cli("split", "synth", "--kind", "random", "--test", "0.3", "--seed", "9", *args, "--data-dir", data,
                      "--format", "json")
            assert res.exit_code == 8, (args, res.output)
            assert res.stderr.startswith("error: disk full") and res.stderr.count("\n") == 1, res.stderr
            assert res.stdout == ""
            assert tree_hash(data) == before, args
        (root / "ballast").unlink()
        res = cli("split", "synth", "--kind", "random", "--test", "0.3", "--seed", "9", "--name", "extra",
                  "--data-dir", data, "--format", "json")
        assert res.exit_code == 0, res.output
        assert (data / "processed" / "synth" / "splits" / "extra.parquet").stat().st_size <= 4096  # it fit in the page


def ledger_entries(arts: Path) -> list[dict]:
    res = cli("runs", "--ledger", "--artifacts-dir", arts, "--format", "json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.mark.parametrize("ledger", ["existing", "new"])
def test_disk_full_at_the_ledger_never_costs_train_or_evaluate_their_results(env, tmp_path, monkeypatch, ledger):
    """The disk fills up after the run is saved and before the ledger is written: train prints and keeps
    its run, evaluate its metrics, each with the ledger's one warning line and exit 0; once there is room
    again the ledger is whole and takes writes."""
    from recsys_cli import ledger as ledger_mod

    train = ["train", "bias", "--dataset", "synth", "--split", "random", "--data-dir", env["data"], "--format", "json"]
    with tmpfs(tmp_path / "mnt", "2m") as root:
        arts = root / "arts"
        if ledger == "existing":
            assert cli(*train, "--artifacts-dir", arts, "--name", "first").exit_code == 0
        entries = len(ledger_entries(arts)) if ledger == "existing" else 0
        connect = ledger_mod._connect

        def fill_then_connect(path):
            if not (root / "ballast").exists():
                fill_up(root / "ballast", leave=0)
            return connect(path)

        monkeypatch.setattr(ledger_mod, "_connect", fill_then_connect)
        res = cli(*train, "--artifacts-dir", arts)
        assert (root / "ballast").exists()  # the disk was full when the ledger was written
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["run"] == "bias-synth-random"
        assert "Traceback" not in res.stderr
        warn = [line for line in res.stderr.splitlines() if line.startswith("warning: run ledger")]
        assert len(warn) == 1 and "not updated" in warn[0], res.stderr
        assert rs.load_run("bias-synth-random", artifacts_dir=arts).manifest.model == "bias"

        res = cli("evaluate", "bias-synth-random", "--data-dir", env["data"], "--artifacts-dir", arts, "--format", "json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)[0]["metrics"]["rmse"] > 0
        assert "Traceback" not in res.stderr
        lines = res.stderr.splitlines()
        assert sum(line.startswith("warning: run ledger") for line in lines) == 1, res.stderr
        assert sum(line.startswith("warning: metrics not saved") for line in lines) == 1, res.stderr
        assert rs.load_run("bias-synth-random", artifacts_dir=arts).manifest.model == "bias"

        monkeypatch.undo()
        (root / "ballast").unlink()
        assert len(ledger_entries(arts)) == entries  # nothing half-written, nothing lost
        res = cli(*train, "--artifacts-dir", arts, "--name", "after")
        assert res.exit_code == 0 and "warning" not in res.stderr, res.stderr
        assert len(ledger_entries(arts)) == entries + 1


def test_read_only_folders_are_refused_before_the_work(env, tmp_path, mirror_dir):
    def fill(root):
        shutil.copytree(env["arts"] / "bias-synth-random", root / "arts" / "bias-synth-random")
        (root / "data").mkdir()

    with tmpfs(tmp_path / "mnt", "4m", readonly=True, fill=fill) as root:
        checks = [
            (("train", "bias", "--dataset", "synth", "--data-dir", env["data"], "--artifacts-dir", root / "arts"),
             "artifacts folder"),
            (("preprocess", "synth", "--data-dir", root / "data"), None),  # nothing to read there: exit 3 first
            (("generate", "g", "--data-dir", root / "data"), "data folder"),
            (("download", "ml-100k", "--mirror", mirror_dir, "--data-dir", root / "data"), "data folder"),
        ]
        for args, words in checks:
            res = cli(*args)
            lines = res.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (args, res.stderr)
            if words:
                assert res.exit_code == 7 and words in lines[0] and "not writable" in lines[0], (args, lines)
            else:
                assert res.exit_code == 3
        # scoring a run on a read-only store still prints its metrics
        res = cli("evaluate", "bias-synth-random", "--data-dir", env["data"], "--artifacts-dir", root / "arts",
                  "--format", "json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)[0]["metrics"]["rmse"] > 0
        assert sum(line.startswith("warning:") for line in res.stderr.splitlines()) == 2


def test_read_only_processed_folder_refuses_preprocess(env, tmp_path):
    def fill(root):
        shutil.copytree(env["data"] / "raw" / "synth", root / "raw" / "synth")
        (root / "processed").mkdir()

    with tmpfs(tmp_path / "mnt", "1m", readonly=True, fill=fill) as root:
        res = cli("preprocess", "synth", "--data-dir", root)
        assert res.exit_code == 7
        assert res.stderr.startswith("error: data folder") and "not writable" in res.stderr


def test_read_only_data_folder_refuses_split_before_the_work(env, tmp_path, monkeypatch):
    from recsys_cli.data import splits

    read = []
    real = splits._read_ratings
    monkeypatch.setattr(splits, "_read_ratings", lambda *a, **k: read.append(a) or real(*a, **k))

    def fill(root):
        shutil.copytree(env["data"] / "processed" / "synth", root / "processed" / "synth")

    with tmpfs(tmp_path / "mnt", "1m", readonly=True, fill=fill) as root:
        before = tree_hash(root)
        for args in (("--name", "extra"), ("--name", "random", "--force")):
            res = cli("split", "synth", "--kind", "random", "--test", "0.3", *args, "--data-dir", root)
            assert res.exit_code == 7, (args, res.output)
            lines = res.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: data folder") and "not writable" in lines[0], lines
            assert read == [], "the ratings were read before the folder was checked"
        assert tree_hash(root) == before


# ---------------------------------------------------------------------------- memory


RLIMIT = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
sys.argv = ["recsys", *sys.argv[1:]]
from recsys_cli.cli.app import main
main()
"""


def limited(*args):
    return subprocess.run([sys.executable, "-c", RLIMIT, *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=300)


def test_a_fit_that_exceeds_the_address_space_limit_is_refused_with_its_estimate(env):
    # 3,000,000 factors x 100 rows x 4 bytes x 3 = 3.6 GB: less than the machine, more than the 6 GiB limit leaves
    proc = limited("train", "svd", "--dataset", "synth", "--data-dir", env["data"], "--artifacts-dir", env["arts"],
                   "-p", "factors=30000000", "--name", "too-big")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: fitting svd on 60 users x 40 items needs about 33.5 GiB of memory")
    assert proc.stderr.count("\n") == 1
    assert not (env["arts"] / "too-big").exists()


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (("abtest", "bandit", "A", "B", "--rounds", "99999999999"), "a bandit of 99,999,999,999 rounds"),
    (("generate", "huge", "--users", "100000000", "--items", "1000000", "--ratings", "2000000000"),
     "generating 2,000,000,000 ratings needs about"),
    (("recommend", "bias-synth-random", "--all-users", "-n", "1000000", "--format", "csv"), None),
])
def test_commands_scaling_with_a_number_estimate_or_cap_under_a_low_limit(env, args, words):
    if args[0] == "abtest":
        args = ("abtest", "bandit", "bias-synth-random", "bias-synth-random", *args[4:])
    where = {"generate": ("--data-dir", env["data"]), "recommend": ("--artifacts-dir", env["arts"])}
    proc = limited(*args, *where.get(args[0], ("--data-dir", env["data"], "--artifacts-dir", env["arts"])))
    assert "Traceback" not in proc.stderr
    if words is None:  # capped by the catalogue: 40 items a user at most
        assert proc.returncode == 0
        assert len(proc.stdout.splitlines()) <= 1 + 60 * 40
    else:
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr


def test_memory_estimate_is_the_documented_sum():
    from recsys_cli.models.registry import create_model

    svd = create_model("svd", {"factors": 10})
    assert svd.estimate_bytes(100, 50, 1000) == 48 * 1000 + 64 * 150 + 3 * 4 * 10 * 150
    bias = create_model("bias", {})
    assert bias.estimate_bytes(100, 50, 1000) == 48 * 1000 + 64 * 150


def test_check_memory_names_the_estimate(monkeypatch):
    from recsys_cli import runtime
    from recsys_cli.errors import UsageError

    monkeypatch.setattr(runtime, "available_memory", lambda: 1 << 30)
    runtime.check_memory(1 << 29, "x")  # fits
    with pytest.raises(UsageError, match=r"x needs about 2\.0 GiB of memory, more than the 1\.0 GiB available"):
        runtime.check_memory(2 << 30, "x")


def test_saved_arrays_with_a_damaged_row_count_are_refused(env, tmp_path):
    run = tmp_path / "arts" / "r"
    shutil.copytree(env["arts"] / "bias-synth-random", run)
    with np.load(run / "arrays.npz") as npz:
        state = {k: npz[k] for k in npz.files}
    state["model.bu"] = state["model.bu"][:5]
    np.savez(run / "arrays.npz", **state)
    res = cli("recommend", "r", "--user", "1", "--artifacts-dir", tmp_path / "arts")
    assert res.exit_code == 7
    assert res.stderr == ("error: run 'r': arrays.npz: 'model.bu' has shape (5,), expected 60 rows (one per user); "
                          "retrain the run\n")


def test_top_n_lists_never_allocate_past_the_catalogue(env):
    """-n 1,000,000 for every user of a 40-item catalogue: 40 columns, not a million (15 GB on ml-100k)."""
    model = rs.load_run("bias-synth-random", artifacts_dir=env["arts"]).model
    recs = model.top_n(None, 1_000_000)
    n_items = len(model.item_ids)
    assert recs.items.shape == (len(model.user_ids), n_items)
    assert recs.items.shape[1] == n_items < 1_000_000
    small = model.top_n(None, 5)
    assert np.array_equal(recs.items[:, :5], small.items)  # the same ranking, only not padded
