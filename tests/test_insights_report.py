"""Every insights figure rendered and opened (PNG size, SVG parses, offline HTML), and `recsys insights` end to end."""

from __future__ import annotations

import base64
import json
import re
import struct
import sys
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path

import polars as pl
import pytest
from fixtures_layouts import TAGS, write_layout
from typer.testing import CliRunner

from recsys_cli.cli.app import app
from recsys_cli.data.dataset import load_dataset
from recsys_cli.data.preprocess import preprocess
from recsys_cli.insights.build import compute_insights, load_frames

# Figures need the plot extra (make test installs it); the JSON and error paths are tested without it.
needs_matplotlib = pytest.mark.skipif(find_spec("matplotlib") is None, reason="matplotlib (the plot extra) is not installed")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("insights-report")
    preprocess(str(write_layout("ml-100k", root / "raw")), name="fx", data_dir=root / "data")
    return root / "data"


@pytest.fixture(scope="module")
def full(data_dir):
    """Fixture insights with every table: ml-100k demographics and timestamps, plus the fixture's tags."""
    from recsys_cli.insights import segments

    frames = load_frames(load_dataset("fx", data_dir))
    tags = pl.DataFrame([(u, i, t, ts) for u, i, t, ts in TAGS], schema=["user_id", "item_id", "tag", "timestamp"], orient="row")
    ins = compute_insights(replace(frames, tags=tags))
    # 4 users are too few to test at the defaults; test every cell so the figure shows significance marks
    ins.tables["segment_lift"] = segments.segment_lift(frames.ratings, frames.items, frames.users, min_users=1, min_expected=0)
    return ins


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@needs_matplotlib
def test_every_figure_renders_to_png_svg_and_offline_html(full, tmp_path):
    from recsys_cli.insights.report import figure_specs, render

    specs = figure_specs(full)
    assert {s.name for s in specs} >= {"rating_distribution", "long_tail", "genre_cooccurrence", "weekday_hour",
                                       "segment_lift_occupation", "segment_lift_gender", "top_tags", "monthly"}
    written = render(full, tmp_path / "out", tmp_path / "report.html")
    for spec in specs:
        w, h = png_size(tmp_path / "out" / f"{spec.name}.png")
        assert 500 <= w <= 1000 and 250 <= h <= 1000, (spec.name, w, h)
        root = ET.parse(tmp_path / "out" / f"{spec.name}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert png_size(tmp_path / "out" / "rating_distribution.png") == (800, 450)  # 8 x 4.5 in at 100 dpi
    for name, table in full.tables.items():  # every figure's data is exported beside it
        assert pl.read_csv(tmp_path / "out" / f"{name}.csv").shape == table.shape
    assert json.loads((tmp_path / "out" / "insights.json").read_text())["summary"]["ratings"] == 14
    page = (tmp_path / "report.html").read_text()
    assert tmp_path / "report.html" in written
    assert "<script" not in page.lower() and not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page, re.I)
    assert "http://" not in page and "https://" not in page  # nothing to fetch: no CDN, no font, no link
    images = re.findall(r'<img alt="[^"]*" src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(specs)
    for data in images:
        assert ET.fromstring(base64.b64decode(data)).tag == "{http://www.w3.org/2000/svg}svg"
    for name in full.tables:
        assert f"<code>{name}</code>" in page
    assert "<h2>Segment findings</h2>" in page and "No segment difference survives the correction." in page


@needs_matplotlib
def test_figures_are_deterministic(full):
    from recsys_cli.figures import builders, render

    def draw(fmt):
        fig = builders.rating_distribution(full.tables["rating_distribution"])
        try:
            return render.to_bytes(fig, fmt)
        finally:
            render.close(fig)

    assert draw("svg") == draw("svg") and draw("png") == draw("png")
    assert b"<dc:date>" not in draw("svg")


@needs_matplotlib
def test_cooccurrence_figure_shows_its_table(full):
    """The heatmap's cells are the table's P(B|A): the image array is the table reshaped, in %."""
    from recsys_cli.figures import builders, render

    fig = builders.genre_cooccurrence(full.tables["genre_cooccurrence"])
    try:
        grid = fig.axes[0].images[0].get_array()
        genres = list(dict.fromkeys(full.tables["genre_cooccurrence"]["genre_a"].to_list()))
        a, b = genres.index("Drama"), genres.index("Adventure")
        assert grid[a, b] == pytest.approx(100 / 3)
        assert fig.axes[0].get_title().startswith("Genre co-occurrence")
    finally:
        render.close(fig)


@needs_matplotlib
def test_cli_json_table_and_files(data_dir, tmp_path, monkeypatch):
    from recsys_cli.insights import report

    monkeypatch.setattr(report, "SPECS", report.SPECS[:2])  # the wiring, not every figure again
    res = invoke("insights", "fx", "--data-dir", str(data_dir), "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["summary"]["ratings"] == 14 and out["summary"]["gini_items"] == pytest.approx(0.375)
    assert {"rating_distribution", "genre_cooccurrence", "monthly", "segment_lift"} <= set(out["tables"])
    assert [r["ratings"] for r in out["tables"]["rating_distribution"]] == [1, 2, 3, 4, 4]
    res = invoke("insights", "fx", "--data-dir", str(data_dir), "--format", "table")
    assert res.exit_code == 0 and "Gini items 0.375" in res.stdout and "sparsity 56.25%" in res.stdout
    assert "0 of 0 (segment, genre) tests significant" in res.stdout
    res = invoke("insights", "fx", "--data-dir", str(data_dir), "--format", "jsonl")
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert sum(1 for r in lines if r["table"] == "rating_distribution") == 5
    res = invoke("insights", "fx", "--data-dir", str(data_dir), "--out", str(tmp_path / "figs"),
                 "--html", str(tmp_path / "r.html"), "--format", "json")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "figs" / "activity.png").exists() and (tmp_path / "r.html").exists()
    assert (tmp_path / "figs" / "genre_cooccurrence.csv").exists()  # every table, with or without its figure
    assert str(tmp_path / "r.html") in json.loads(res.stdout)["written"]
    assert "wrote" in res.stderr


def test_cli_errors(data_dir, tmp_path, monkeypatch):
    res = invoke("insights", "nope", "--data-dir", str(data_dir))
    assert res.exit_code == 3 and "not preprocessed" in res.stderr
    res = invoke("insights", "fx", "--data-dir", str(data_dir), "--alpha", "0.9")
    assert res.exit_code == 2
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plot extra were not installed
    for option in ("--out", "--html"):
        res = invoke("insights", "fx", "--data-dir", str(data_dir), option, str(tmp_path / "x"))
        assert res.exit_code == 2 and res.stderr.count("\n") == 1
        assert f"{option} needs matplotlib" in res.stderr and "pip install 'recsys-cli[plot]'" in res.stderr
    assert not (tmp_path / "x").exists()
    res = invoke("insights", "fx", "--data-dir", str(data_dir), "--format", "json")  # no figures: no matplotlib needed
    assert res.exit_code == 0 and json.loads(res.stdout)["summary"]["users"] == 4


def test_help_has_examples():
    res = invoke("insights", "--help")
    assert res.exit_code == 0 and "Examples:" in res.stdout and "recsys insights ml-100k --out" in res.stdout


@needs_matplotlib
@pytest.mark.slow
def test_real_ml100k(mirror_dir, tmp_path):
    """ml-100k: numbers recomputed from u.data / u.user, sensible segment findings, the report renders."""
    import numpy as np

    with zipfile.ZipFile(mirror_dir / "ml-100k.zip") as zf:
        zf.extractall(tmp_path / "raw")
    meta = preprocess(str(tmp_path / "raw" / "ml-100k"), name="ml-100k", data_dir=tmp_path / "data")
    ins = compute_insights(load_frames(load_dataset("ml-100k", tmp_path / "data")))
    raw = np.loadtxt(tmp_path / "raw" / "ml-100k" / "u.data", dtype=np.int64)
    per_item = np.bincount(raw[:, 1])[1:]
    s = ins.summary
    assert s["ratings"] == 100_000 and s["sparsity"] == pytest.approx(1 - 100_000 / (943 * 1682))
    x = np.sort(per_item).astype(float)
    assert s["gini_items"] == pytest.approx((2 * np.arange(1, 1683) @ x) / (1682 * x.sum()) - 1683 / 1682)
    assert s["top_10pct_items_share"] == pytest.approx(np.sort(per_item)[::-1][:169].sum() / 100_000)
    assert s["users_under_20_share"] == 0.0  # every ml-100k user has at least 20 ratings
    dist = ins.tables["rating_distribution"]
    assert {f"{r:.1f}": n for r, n in dist.select("rating", "ratings").rows()} == meta["rating_histogram"]
    assert ins.tables["top_items_by_count"]["title"][0] == "Star Wars"
    assert ins.tables["monthly"]["ratings"].sum() == 100_000 and len(ins.tables["monthly"]) == 8
    found = ins.statements
    assert 10 <= len(found) <= 60  # Holm keeps most of the 467 cells quiet
    assert any(f.startswith("women rate Sci-Fi less often than men") for f in found)
    assert any(f.startswith("women rate Romance more often than men") for f in found)
    lift = ins.tables["segment_lift"]
    eng = lift.filter((pl.col("segment") == "engineer") & (pl.col("genre") == "Sci-Fi")).row(0, named=True)
    assert eng["lift"] > 1 and not eng["significant"]  # the famous "engineers prefer sci-fi": not supported here
    from recsys_cli.insights.report import render

    render(ins, None, tmp_path / "report.html")
    assert (tmp_path / "report.html").stat().st_size < 3_000_000


def _ab_result(samples):
    arms = [{"arm": "A", "run": "pop", "users": 40, "user_ctr_mean": 0.10, "user_ctr_sd": 0.05},
            {"arm": "B", "run": "svd", "users": 60, "user_ctr_mean": 0.13, "user_ctr_sd": 0.06}]
    return {"settings": {"alpha": 0.05}, "arms": arms, "_lift_samples": samples,
            "tests": {"user_welch_t": {"diff": 0.03, "ci_low": 0.008, "ci_high": 0.052},
                      "bootstrap": {"n_boot": 0 if samples is None else len(samples), "ci_low": 0.01, "ci_high": 0.05}},
            "winner": {"message": "B wins"}}


@needs_matplotlib
def test_abtest_plot_tables_and_png(tmp_path):
    """`abtest --plot` is built by the figure module from tidy tables: t intervals, histogram or normal curve."""
    import numpy as np
    from scipy import stats

    from recsys_cli.abtest.report import plot_abtest, plot_tables

    samples = np.random.default_rng(0).normal(0.03, 0.01, 500)
    tables = plot_tables(_ab_result(samples))
    b = tables["arms"].row(1, named=True)
    half = stats.t.ppf(0.975, 59) * 0.06 / np.sqrt(60)
    assert (b["ci_low"], b["ci_high"]) == pytest.approx((0.13 - half, 0.13 + half))
    assert tables["lift"]["resamples"].sum() == 500 and tables["lift"]["lift_low"][0] == pytest.approx(samples.min())
    assert tables["lift_ci"].row(0) == ("bootstrap (500 resamples)", 0.01, 0.05)
    normal = plot_tables(_ab_result(None))
    se = np.sqrt(0.05**2 / 40 + 0.06**2 / 60)
    peak = normal["lift"].row(100, named=True)
    assert peak["density"] == pytest.approx(stats.norm.pdf(peak["lift"], 0.03, se))
    assert normal["lift_ci"]["source"][0] == "normal approximation"
    assert png_size(plot_abtest(_ab_result(samples), tmp_path / "ab.png")) == (1000, 420)


@needs_matplotlib
def test_cli_output_paths_are_checked_before_the_work(data_dir, tmp_path):
    """--out naming a file, --html naming a folder: exit 2; a folder that cannot be written: exit 7 naming the
    option (it was exit 3 naming a hidden temporary file, after the whole report had been computed)."""
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    cases = [
        (["--out", str(tmp_path / "file.txt")], 2, f"error: --out {tmp_path / 'file.txt'} is a file, not a folder\n"),
        (["--html", str(tmp_path / "folder")], 2, f"error: --html {tmp_path / 'folder'} is a folder; give a file name\n"),
        (["--html", str(tmp_path / "file.txt" / "r.html")], 7,
         f"error: --html folder {tmp_path / 'file.txt'}: {tmp_path / 'file.txt'} is a file, not a folder\n"),
        (["--out", str(tmp_path / "file.txt" / "figs")], 7,
         f"error: --out folder {tmp_path / 'file.txt' / 'figs'}: {tmp_path / 'file.txt'} is a file, not a folder\n"),
    ]
    for args, code, stderr in cases:
        res = invoke("insights", "fx", "--data-dir", str(data_dir), "--format", "json", *args)
        assert (res.exit_code, res.stdout, res.stderr) == (code, "", stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder"]
    assert list((tmp_path / "folder").iterdir()) == []


@needs_matplotlib
def test_interrupted_or_failed_report_writes_nothing(full, tmp_path, monkeypatch):
    """Ctrl-C while the figures are drawn, or a disk that fills while the files are written, leaves no output
    file and no temporary file (the report used to write each figure as it was drawn: an interrupt left a
    half-filled folder)."""
    import errno

    from recsys_cli.figures import render as rd
    from recsys_cli.insights import report

    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "keep.txt").write_text("mine")
    to_bytes, calls = rd.to_bytes, []

    def interrupted(fig, fmt):
        calls.append(fmt)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return to_bytes(fig, fmt)

    monkeypatch.setattr(rd, "to_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.render(full, tmp_path / "figs", tmp_path / "r.html")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["figs", "keep.txt"]
    monkeypatch.setattr(rd, "to_bytes", to_bytes)

    real_fdopen, opened = rd.os.fdopen, []

    def full_disk(fd, mode):
        opened.append(fd)
        if len(opened) == 7:
            rd.os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fdopen(fd, mode)

    monkeypatch.setattr(rd.os, "fdopen", full_disk)
    with pytest.raises(OSError) as caught:
        report.render(full, tmp_path / "figs", tmp_path / "r.html")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename.startswith(str(tmp_path / "figs"))
    assert not caught.value.filename.endswith(".tmp")  # names the report's file, not the hidden one
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["figs", "keep.txt"]
    monkeypatch.setattr(rd.os, "fdopen", real_fdopen)
    written = report.render(full, tmp_path / "figs", tmp_path / "r.html")
    assert len(written) == len(list((tmp_path / "figs").iterdir())) - 1 + 1  # every file, keep.txt untouched, r.html
    assert (tmp_path / "figs" / "keep.txt").read_text() == "mine" and not list(tmp_path.rglob(".*.tmp"))
