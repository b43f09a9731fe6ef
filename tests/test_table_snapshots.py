"""Golden files of every table-producing command's `--format table` output on an 80-column terminal.

Each command runs on the same small synthetic dataset (fixed seeds, relative paths) in a fresh
copy of one prepared data + artifacts folder, with COLUMNS=80; its stdout, after `normalise`,
must equal tests/snapshots/NAME.txt, and no line may be wider than 80 columns.

A table that changes on purpose: rerun with RECSYS_UPDATE_SNAPSHOTS=1 to rewrite the golden
files, then read `git diff tests/snapshots` before committing them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys_cli.cli.app import app

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("RECSYS_UPDATE_SNAPSHOTS", "") not in ("", "0")
WIDTH = 80
# Relative roots (the test runs in the copy): paths print the same wherever pytest puts its temporary folders.
ENV = {"RECSYS_DATA_DIR": "data", "RECSYS_ARTIFACTS_DIR": "arts", "COLUMNS": str(WIDTH), "RECSYS_NO_PROGRESS": "1",
       "NO_COLOR": "1", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}

# What legitimately varies from run to run, masked without changing the line's width (a placeholder padded to
# the matched text's length), so the layout around it is still compared:
#   - ISO timestamps (dataset `created`): 2026-12-06T16:21:40+00:00
#   - short times of runs tables: 12-06 16:21
#   - durations: train_seconds, the `fit seconds` row of evaluate, the `fit s` cells of runs and tune,
#     `trained in 1.35 s` of a model report
# Nothing else is masked: versions and absolute paths do not appear (relative roots), and every number
# comes from seeded computations on seeded data.
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")
SHORT_TIME = re.compile(r"(?<![\d-])\d\d-\d\d \d\d:\d\d(?![\d:])")
DURATIONS = [
    re.compile(r"(train_seconds\s+│ )(\d+\.\d+ *)"),  # train: field/value table
    re.compile(r"(MM-DD hh:mm │ )( *\d+\.\d *)"),  # runs: the fit s cell after the (masked) time
    re.compile(r"(± \d\.\d{4} │ )( *\d+\.\d\d *)(?=│ [* ] )"),  # tune trials: fit s after the score
    re.compile(r"(trained in )(\d+\.\d+ s)"),  # insights RUN (model report)
]
FIT_SECONDS_ROW = re.compile(r"^(│ fit seconds +)((?:│[^│\n]*)+│)$", re.M)  # evaluate: one cell per model


def _pad(text: str) -> str:
    """A placeholder exactly as wide as `text`: the masked line keeps its width and layout."""
    return "<t>".ljust(len(text)) if len(text) >= 3 else "~" * len(text)


def normalise(text: str) -> str:
    """Mask what varies between runs (see the list above), keeping every line's width."""
    text = TIMESTAMP.sub(lambda m: "YYYY-MM-DDThh:mm:ss+00:00"[: len(m.group(0))].ljust(len(m.group(0))), text)
    text = SHORT_TIME.sub("MM-DD hh:mm", text)
    for pattern in DURATIONS:
        text = pattern.sub(lambda m: m.group(1) + _pad(m.group(2)), text)
    text = FIT_SECONDS_ROW.sub(lambda m: m.group(1) + re.sub(r"[^│]+", lambda c: " " + _pad(c.group(0)[1:]), m.group(2)),
                               text)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def _invoke(*args) -> str:
    res = CliRunner(env=ENV).invoke(app, [str(a) for a in args], terminal_width=WIDTH)
    assert res.exit_code == 0, f"recsys {' '.join(map(str, args))}: exit {res.exit_code}\n{res.output}"
    return res.stdout


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """data/ and arts/ with a processed dataset 'tiny', three runs and one evaluation in the ledger."""
    root = tmp_path_factory.mktemp("table-snapshots")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        _invoke("generate", "tiny", "--users", "60", "--items", "40", "--ratings", "1500", "--format", "json")
        _invoke("preprocess", "tiny", "--format", "json")
        _invoke("train", "svd", "--dataset", "tiny", "--split", "random", "-p", "factors=4", "-p", "epochs=3",
                "--format", "json")
        _invoke("train", "item-knn", "--dataset", "tiny", "--split", "random", "--format", "json")
        _invoke("train", "popularity", "--dataset", "tiny", "--split", "random", "--format", "json")
        _invoke("evaluate", "svd-tiny-random", "--format", "json")
    # `runs` lists newest first: one minute apart, the order does not hang on which trainings shared a second
    for minute, run in enumerate(("svd-tiny-random", "item-knn-tiny-random", "popularity-tiny-random")):
        path = root / "arts" / run / "manifest.json"
        manifest = json.loads(path.read_text())
        path.write_text(json.dumps({**manifest, "created": f"2026-01-02T10:0{minute}:00+00:00"}))
    return root


@pytest.fixture
def workdir(prepared, tmp_path, monkeypatch):
    """A fresh copy of the prepared folders as the working directory: commands that write (evaluate adds to the
    ledger, preprocess replaces the dataset) see the same state whatever ran before."""
    work = tmp_path / "work"
    shutil.copytree(prepared, work)
    monkeypatch.chdir(work)
    return work


TABLES = {
    "recommend": ("recommend", "svd-tiny-random", "--user", "1,2,99999", "-n", "3"),
    "recommend-explain": ("recommend", "item-knn-tiny-random", "--user", "1", "-n", "2", "--explain"),
    "predict": ("predict", "svd-tiny-random", "--user", "1", "--item", "2"),
    "similar": ("similar", "item-knn-tiny-random", "--item", "1", "-n", "3"),
    "evaluate": ("evaluate", "svd-tiny-random"),
    "evaluate-cv": ("evaluate", "--model", "bias,svd", "--dataset", "tiny", "--cv", "2", "-p", "svd.epochs=2",
                    "-p", "svd.factors=4"),
    "runs": ("runs",),
    "runs-ledger": ("runs", "--ledger"),
    "models-svd": ("models", "svd"),
    "models-blend": ("models", "blend"),
    "info": ("info",),
    "info-dataset": ("info", "tiny"),
    "split": ("split", "tiny", "--kind", "kfold", "--k", "3", "--force"),
    "generate": ("generate", "tiny2", "--users", "50", "--items", "30", "--ratings", "900"),
    "preprocess": ("preprocess", "tiny"),
    "train": ("train", "bias", "--dataset", "tiny", "--split", "random"),
    "tune": ("tune", "svd", "--dataset", "tiny", "--grid", "factors=2,4", "-p", "epochs=2", "--cv", "2"),
    "abtest": ("abtest", "svd-tiny-random", "popularity-tiny-random", "--bootstrap", "200"),
    "abtest-plan": ("abtest", "plan", "--baseline-ctr", "0.1", "--mde", "0.01"),
    "abtest-bandit": ("abtest", "bandit", "svd-tiny-random", "popularity-tiny-random", "--rounds", "5",
                      "--batch", "20"),
    "insights-dataset": ("insights", "tiny"),
    "insights-run": ("insights", "svd-tiny-random"),
}


def _too_wide(text: str) -> list[str]:
    from rich.cells import cell_len

    return [line for line in text.splitlines() if cell_len(line) > WIDTH]


NUMBER = re.compile(r"-?\d+(?:\.(\d+))?")


def same_but_last_digits(want: str, text: str) -> bool:
    """The same table except decimals that differ by at most one unit in their last printed place.

    Scores come from seeded Numba/BLAS training: another CPU (other SIMD widths, another BLAS kernel) may
    round a float differently, which can move the 4th decimal of a table cell by one. Layout, words and
    integers (ids, counts, ranks) must still be identical.
    """
    if NUMBER.sub("#", want) != NUMBER.sub("#", text):
        return False
    for a, b in zip(NUMBER.finditer(want), NUMBER.finditer(text), strict=True):
        if a.group(0) == b.group(0):
            continue
        if a.group(1) is None or b.group(1) is None or len(a.group(1)) != len(b.group(1)):
            return False
        if abs(float(a.group(0)) - float(b.group(0))) > 1.01 * 10.0 ** -len(a.group(1)):
            return False
    return True


def check_snapshot(name: str, text: str) -> None:
    """`text` equals tests/snapshots/NAME.txt; with RECSYS_UPDATE_SNAPSHOTS=1 it becomes the golden file."""
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path.relative_to(Path(__file__).parent.parent)}; run "
                    f"RECSYS_UPDATE_SNAPSHOTS=1 pytest {Path(__file__).name} -k {name} to write it", pytrace=False)
    want = path.read_text(encoding="utf-8")
    if want != text and not same_but_last_digits(want, text):
        diff = "".join(difflib.unified_diff(want.splitlines(keepends=True), text.splitlines(keepends=True),
                                            fromfile=f"snapshots/{name}.txt (golden)", tofile=f"{name} (now)"))
        pytest.fail(f"the {name} table changed:\n{diff}\nIf the change is intended, rerun with "
                    f"RECSYS_UPDATE_SNAPSHOTS=1 and commit tests/snapshots/{name}.txt", pytrace=False)


@pytest.mark.parametrize("name", list(TABLES))
def test_table_snapshot_at_80_columns(workdir, name):
    out = _invoke(*TABLES[name], "--format", "table")
    wide = _too_wide(out)
    assert not wide, f"{name}: lines wider than {WIDTH} columns:\n" + "\n".join(wide)
    check_snapshot(name, normalise(out))


def test_models_tables_fit_80_columns_without_splitting_words(workdir):
    """Every model's table: within 80 columns, and a cell's word is split only where the widest words cannot fit."""
    out = _invoke("models", "--format", "table")
    assert not _too_wide(out)
    assert "surprise=100" in out and "surprise=0.005" in out  # svd's presets, each on one line
    for word in ("regularisation", "deterministic)"):
        assert word in out


def test_normalise_masks_what_varies_and_keeps_widths():
    text = ("│ created  2026-12-06T16:21:40+00:00 │\n"
            "│ svd-tiny-random │ 12-06 16:21 │ 12.3  │ 0.9058 │\n"
            "│ train_seconds │ 1.3490                 │\n"
            "│ fit seconds  │ 1.35            │ 10.02           │\n"
            "│ 1     │ 2      │ 0.9733 ± 0.0065 │ 1.01  │ *    │\n"
            "svd: trained in 12.40 s (seed 42)\n")
    out = normalise(text)
    assert [len(line) for line in out.splitlines()] == [len(line.rstrip()) for line in text.splitlines()]
    for varying in ("16:21:40", "12-06 16:21", "12.3 ", "1.3490", "1.35", "10.02", "1.01", "12.40"):
        assert varying not in out, varying
    assert "0.9058" in out and "0.9733 ± 0.0065" in out and "(seed 42)" in out


def test_break_words_prefers_natural_break_points():
    from recsys_cli.output import break_words, fit_widths

    assert break_words("svd,svdpp,item-knn,user-knn", 14) == "svd,svdpp,\nitem-knn,\nuser-knn"
    assert break_words("surprise=0.005 x", 10) == "surprise=\n0.005 x"
    assert break_words("regularisation", 8) == "regulari\nsation"  # no break point: folded
    assert break_words("short words stay", 5) == "short words stay"  # rich wraps them at spaces
    # the narrow columns stay whole; the long text column takes what is left
    widths = fit_widths(["name", "doc"], [["factors", "latent factors of every user and item"]], 30)
    assert widths == [7, 23]
    assert fit_widths(["a"], [["fits"]], 30) is None  # fits: rich's own layout


def test_fitted_widths_and_broken_words_stay_within_their_columns():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from recsys_cli.output import break_words, fit_widths

    word = st.text(alphabet="abcxyz0123,/=_-.", min_size=1, max_size=30)
    cell = st.lists(word, min_size=0, max_size=6).map(" ".join)

    @settings(max_examples=200, deadline=None)
    @given(rows=st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=5),
           room=st.integers(min_value=12, max_value=120))
    def check(rows, room):
        header = ["a", "bb", "ccc"]
        widths = fit_widths(header, rows, room)
        natural = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
        if widths is None:
            assert sum(natural) <= room
            return
        assert sum(widths) <= room and all(1 <= w <= n for w, n in zip(widths, natural, strict=True))
        for row in rows:
            for text, width in zip(row, widths, strict=True):
                broken = break_words(text, width)
                assert broken.split() and all(len(piece) <= width for piece in broken.split()) or not text.split()
                assert "".join(broken.split()) == "".join(text.split())  # only line breaks were added

    check()


def test_snapshots_tolerate_only_a_last_digit_of_a_decimal():
    assert same_but_last_digits("│ 4.7123 │ 50 │", "│ 4.7124 │ 50 │")
    assert not same_but_last_digits("│ 4.7123 │ 50 │", "│ 4.7125 │ 50 │")  # two units
    assert not same_but_last_digits("│ 4.7123 │ 50 │", "│ 4.7123 │ 51 │")  # an id or a count
    assert not same_but_last_digits("│ 4.7123 │ Star Wars │", "│ 4.7123 │ Star Trek │")
    assert not same_but_last_digits("│ 4.71 │", "│ 4.712 │")
