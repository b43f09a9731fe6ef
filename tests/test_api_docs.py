"""docs/api.md runs: every python block, in order, on a synthetic frame and on the real MovieLens 100K."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirror"


def blocks(tag: str | None = None) -> list[str]:
    """The doc's ```python blocks; with a tag, only ```python TAG blocks; without, only untagged ones."""
    found = re.findall(r"```python([^\n]*)\n(.*?)```", DOC.read_text(), flags=re.S)
    return [code for info, code in found if (info.strip() or None) == tag]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RECSYS_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    return tmp_path


def run_blocks(namespace: dict, codes: list[str]) -> dict:
    assert codes
    for code in codes:
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the documentation's own examples
    return namespace


def test_notebook_line_count():
    """The headline promise: from a DataFrame to evaluated top-10 lists in at most 6 lines."""
    first = blocks()[0]
    assert len([line for line in first.splitlines() if line.strip()]) <= 6


def test_walkthrough_on_a_synthetic_frame(workdir):
    import recsys_cli as rs

    rs.generate("synth-doc", ratings=6000, users=150, items=120, seed=3)
    frame = rs.preprocess("synth-doc").ratings.rename({"user_id": "userId", "item_id": "movieId"})
    ns = run_blocks({"df": frame.to_pandas()}, blocks())
    assert 0.0 < ns["result"].metrics["rmse"] < 2.0
    assert ns["top10"].columns == ["user_id", "rank", "item_id", "title", "score", "fallback"]
    assert ns["top10"].height == 10 * ns["model"].user_ids.size
    assert (workdir / "artifacts" / "svd-notebook" / "manifest.json").exists()


@pytest.mark.slow
def test_walkthrough_on_movielens_100k(workdir, monkeypatch):
    if not (MIRROR / "ml-100k.zip").exists():
        pytest.skip(f"MovieLens 100K mirror not found at {MIRROR} (../shared is absent)")
    monkeypatch.setenv("RECSYS_MIRROR", str(MIRROR))
    import polars as pl

    import recsys_cli as rs

    rs.download("ml-100k")
    ratings = rs.preprocess("ml-100k").ratings.rename({"user_id": "userId", "item_id": "movieId"})
    ns = run_blocks({"df": ratings.to_pandas(), "pl": pl}, blocks() + blocks("ml-100k"))
    assert ns["data"].n_users == 943 and len(ns["data"]) == 100_000
    assert 0.90 < rs.evaluate(ns["model"], ns["test"], metrics="rating").metrics["rmse"] < 0.97  # svd@surprise on u1
    assert ns["model"].recommend(1, n=5)["title"].null_count() == 0
