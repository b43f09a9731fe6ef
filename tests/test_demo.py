"""`make demo` offline: scripts/demo.sh says in one line that ml-100k cannot be had and runs the whole chain
on synthetic data shaped like it, naming the data it used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "demo.sh"


@pytest.mark.slow
def test_demo_falls_back_to_synthetic_data_when_the_download_cannot_be_had(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    empty = tmp_path / "mirror"  # a mirror without ml-100k.zip: the download fails at once, without the network
    empty.mkdir()
    env = {
        **os.environ,
        # The Makefile passes its venv's recsys; here the same CLI from this checkout (no `make install`).
        "RECSYS": f"{sys.executable} -m recsys_cli",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "RECSYS_MIRROR": str(empty),
        "RECSYS_DATA_DIR": str(tmp_path / "data"),
        "RECSYS_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "RECSYS_NO_PROGRESS": "1",
        "COLUMNS": "80",
    }
    res = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    notes = [line for line in res.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1, notes  # the fallback is said once, in one line
    assert "ml-100k could not be downloaded" in notes[0] and "SYNTHETIC" in notes[0]
    assert "recsys generate synth-ml-100k --preset ml-100k" in notes[0]
    assert "demo dataset: synth-ml-100k" in res.stderr.splitlines()  # which data it used, plainly
    # the whole chain ran on the generated data: its runs exist and the closing `recsys runs` lists them
    for run in ("svd-synth-ml-100k-random", "ials-synth-ml-100k-user", "item-knn-synth-ml-100k",
                "ials-synth-ml-100k-random"):
        assert (tmp_path / "artifacts" / run / "manifest.json").exists(), run
        assert run in res.stdout
    assert (tmp_path / "data" / "processed" / "synth-ml-100k" / "dataset.json").exists()
    assert not (tmp_path / "data" / "raw" / "ml-100k").exists()
    assert "verdict:" in res.stdout  # the A/B test of svd against ials on the random split ran
    assert "Traceback" not in res.stderr
