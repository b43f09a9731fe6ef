"""`recsys preprocess` / `recsys info`: every MovieLens layout to one processed schema."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import polars as pl
import pytest
from fixtures_layouts import (
    EXPECTED_ITEMS,
    ML1M_OCCUPATIONS,
    ML1M_USERS,
    ML100K_USERS,
    N_ITEMS,
    N_RATED_ITEMS,
    N_RATINGS,
    N_USERS,
    TAGS,
    append_line,
    expected_ratings,
    file_ratings,
    write_layout,
)
from typer.testing import CliRunner

from recsys_cli.cli.app import app
from recsys_cli.data import readers
from recsys_cli.data.preprocess import preprocess, ratings_fingerprint
from recsys_cli.errors import DataError, UsageError

LAYOUTS = ("ml-100k", "ml-1m", "ml-10m", "csv")
MIRROR_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirror" / "ml-100k.zip"
SCHEMAS = {
    "ratings": {"user_id": pl.Int32, "item_id": pl.Int32, "rating": pl.Float32, "timestamp": pl.Int64},
    "items": {"item_id": pl.Int32, "title": pl.String, "year": pl.Int16, "genres": pl.List(pl.String)},
    "users": {"user_id": pl.Int32, "gender": pl.String, "age": pl.Int16, "occupation": pl.String, "zip": pl.String},
    "tags": {"user_id": pl.Int32, "item_id": pl.Int32, "tag": pl.String, "timestamp": pl.Int64},
}
runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def _processed(data: Path, name: str) -> Path:
    return data / "processed" / name


@pytest.mark.parametrize("kind", LAYOUTS)
def test_every_layout_gives_the_contract_schema_and_content(tmp_path, kind):
    folder = write_layout(kind, tmp_path / "src")
    data = tmp_path / "data"
    meta = preprocess(str(folder), name="fx", data_dir=data)
    out = _processed(data, "fx")

    ratings = pl.read_parquet(out / "ratings.parquet")
    assert dict(ratings.schema) == SCHEMAS["ratings"]
    assert ratings.rows() == expected_ratings(kind)
    items = pl.read_parquet(out / "items.parquet")
    assert dict(items.schema) == SCHEMAS["items"]
    assert items.rows() == [tuple(r) for r in EXPECTED_ITEMS]

    has_users, has_tags = kind in ("ml-100k", "ml-1m"), kind in ("ml-10m", "csv")
    assert (out / "users.parquet").exists() is has_users
    assert (out / "tags.parquet").exists() is has_tags
    if has_tags:
        tags = pl.read_parquet(out / "tags.parquet")
        assert dict(tags.schema) == SCHEMAS["tags"]
        assert tags.rows() == list(TAGS)

    half = kind in ("ml-10m", "csv")
    assert meta == json.loads((out / "dataset.json").read_text())
    assert meta["schema_version"] == 1 and meta["name"] == "fx" and meta["layout"] == kind
    assert meta["source"] == str(folder)
    assert (meta["n_ratings"], meta["n_users"], meta["n_items"], meta["n_rated_items"]) == (
        N_RATINGS, N_USERS, N_ITEMS, N_RATED_ITEMS)
    assert meta["rating_scale"] == ([0.5, 5.0] if half else [1.0, 5.0])
    assert meta["rating_step"] == (0.5 if half else 1.0)
    assert meta["density"] == pytest.approx(N_RATINGS / (N_USERS * N_RATED_ITEMS))
    hist = meta["rating_histogram"]
    assert list(hist) == ([f"{k / 2:.1f}" for k in range(1, 11)] if half else ["1.0", "2.0", "3.0", "4.0", "5.0"])
    assert sum(hist.values()) == N_RATINGS
    assert hist["5.0"] == sum(1 for r in expected_ratings(kind) if r[2] == 5.0)
    assert meta["duplicates_resolved"] == 0
    assert meta["fingerprint"] == ratings_fingerprint(ratings) and meta["fingerprint"].startswith("sha256:")
    assert meta["has_users"] is has_users and meta["has_tags"] is has_tags
    genres = meta["genres"]
    assert genres["Drama"] == 3 and genres["Comedy"] == 3 and genres["Adventure"] == 2
    assert ("unknown" in genres) is (kind == "ml-100k")  # only ml-100k declares it (u.genre)
    assert "(no genres listed)" not in genres
    assert isinstance(meta["splits"], dict) and meta["created"].endswith("+00:00")


def test_users_tables_of_ml100k_and_ml1m(tmp_path):
    data = tmp_path / "data"
    preprocess(str(write_layout("ml-100k", tmp_path / "a")), name="a", data_dir=data)
    preprocess(str(write_layout("ml-1m", tmp_path / "b")), name="b", data_dir=data)
    u100k = pl.read_parquet(_processed(data, "a") / "users.parquet")
    u1m = pl.read_parquet(_processed(data, "b") / "users.parquet")
    assert dict(u100k.schema) == dict(u1m.schema) == SCHEMAS["users"]
    assert u100k.rows() == [(u, g, a, o, z) for u, a, g, o, z in ML100K_USERS]
    assert u1m.rows() == [(u, g, a, ML1M_OCCUPATIONS[u], z) for u, g, a, _, z in ML1M_USERS]


@pytest.mark.parametrize("kind", LAYOUTS)
def test_duplicates_resolved_by_latest_timestamp(tmp_path, kind):
    folder = write_layout(kind, tmp_path / "src", duplicates=True)
    assert len(file_ratings(kind, duplicates=True)) == N_RATINGS + 2
    meta = preprocess(str(folder), name="dup", data_dir=tmp_path / "data")
    ratings = pl.read_parquet(_processed(tmp_path / "data", "dup") / "ratings.parquet")
    assert meta["duplicates_resolved"] == 2 and meta["n_ratings"] == N_RATINGS == ratings.height
    assert ratings.rows() == expected_ratings(kind, duplicates=True)
    pair = dict(((u, i), (r, t)) for u, i, r, t in ratings.rows())
    assert pair[(3, 5)] == (1.0, 882999999)  # the newer duplicate wins though written first
    assert pair[(1, 2)][1] == 880000100  # the older duplicate loses though written last


@pytest.mark.parametrize(
    ("kind", "line", "message"),
    [
        ("ml-100k", "5\t1\t3", "u.data:{n}: expected 4 fields, got 3"),
        ("ml-100k", "5\t1\tx\t880000000", "u.data:{n}: rating 'x' is not a number"),
        ("ml-1m", "5::1::4::88000x", "ratings.dat:{n}: timestamp '88000x' is not an integer"),
        ("ml-1m", "5::1::3.5::880000000::9", "ratings.dat:{n}: expected 4 fields, got 5"),
        ("ml-10m", "5::1::7::880000000", "ratings.dat:{n}: rating '7' is outside the scale 0.5..5"),
        ("csv", "5,1,3.3,880000000", "ratings.csv:{n}: rating '3.3' is not a multiple of 0.5"),
        ("csv", "5,abc,3,880000000", "ratings.csv:{n}: item id 'abc' is not an integer"),
        ("csv", "5,1,3", "ratings.csv:{n}: expected 4 fields, got 3"),
        ("csv", "5,1,NaN,880000000", "ratings.csv:{n}: rating 'NaN' is not a finite number"),  # was "outside"
        ("csv", "5,1,inf,880000000", "ratings.csv:{n}: rating 'inf' is not a finite number"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, kind, line, message):
    folder = write_layout(kind, tmp_path / "src")
    lineno = append_line(folder, kind, line)
    with pytest.raises(DataError) as err:
        preprocess(str(folder), name="bad", data_dir=tmp_path / "data")
    assert str(err.value) == message.format(n=lineno)
    processed = tmp_path / "data" / "processed"
    assert list(processed.iterdir()) == []  # nothing half-written, no temp folder left


def test_malformed_line_in_the_middle_through_the_cli(tmp_path):
    folder = write_layout("ml-100k", tmp_path / "src")
    lines = (folder / "u.data").read_text().splitlines()
    lines[4] = "3\t3\tfive\t882000300"
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    result = _run("preprocess", str(folder), "--name", "bad", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 3
    assert "error: u.data:5: rating 'five' is not a number" in result.stderr


def test_malformed_items_file_names_its_line(tmp_path):
    folder = write_layout("csv", tmp_path / "src")
    text = (folder / "movies.csv").read_text().replace("\n3,", "\nthree,", 1)
    (folder / "movies.csv").write_text(text)
    with pytest.raises(DataError, match=r"^movies.csv:4: movieId 'three' is not an integer$"):
        preprocess(str(folder), name="bad", data_dir=tmp_path / "data")


def test_named_dataset_through_the_cli_and_reprocess_starts_fresh(tmp_path):
    data = tmp_path / "data"
    folder = write_layout("ml-1m", data / "raw")  # data/raw/ml-1m, as `recsys download ml-1m` leaves it
    assert folder == data / "raw" / "ml-1m"
    result = _run("preprocess", "ml-1m", "--data-dir", str(data), "--format", "json")
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)
    out = _processed(data, "ml-1m")
    assert meta == json.loads((out / "dataset.json").read_text())
    assert meta["source"] == str(folder) and meta["n_ratings"] == N_RATINGS

    (out / "splits").mkdir(exist_ok=True)
    (out / "splits" / "stale.parquet").write_bytes(b"old")
    result = _run("preprocess", "ml-1m", "--data-dir", str(data), "--format", "table")
    assert result.exit_code == 0, result.output
    assert "ratings" in result.stdout and "14" in result.stdout and "█" in result.stdout
    assert not (out / "splits" / "stale.parquet").exists()
    assert sorted(p.name for p in (data / "processed").iterdir()) == ["ml-1m"]


def test_generic_ratings_file_with_columns(tmp_path):
    path = tmp_path / "mine.csv"
    rows = "7,a,100,4,30\n7,\"b, c\",101,2.5,10\n8,d,100,5,20\n9,e,100,1,5\n9,f,102,2,6\n9,g,101,3,7\n"
    path.write_text("uid,note,iid,stars,when\n" + rows)
    data = tmp_path / "data"
    result = _run("preprocess", str(path), "--name", "mine", "--data-dir", str(data), "--json",
                  "--columns", "user=uid,item=iid,rating=stars,timestamp=when")
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)
    assert meta["layout"] == "generic" and meta["n_ratings"] == 6 and meta["n_items"] == 3
    assert meta["rating_scale"] == [0.5, 5.0] and meta["genres"] == {} and meta["has_users"] is False
    out = _processed(data, "mine")
    assert pl.read_parquet(out / "ratings.parquet").rows() == [
        (7, 101, 2.5, 10), (7, 100, 4.0, 30), (8, 100, 5.0, 20), (9, 100, 1.0, 5), (9, 102, 2.0, 6), (9, 101, 3.0, 7)]
    items = pl.read_parquet(out / "items.parquet")
    assert dict(items.schema) == SCHEMAS["items"]
    assert items.rows() == [(i, f"Item {i}", None, []) for i in (100, 101, 102)]


def test_generic_parquet_without_timestamps(tmp_path):
    path = tmp_path / "r.parquet"
    pl.DataFrame({"u": [2, 1, 1, 3, 3], "i": [5, 5, 6, 6, 7], "score": [3.0, 4.0, 1.0, 2.0, 5.0]}).write_parquet(path)
    meta = preprocess(str(path), name="pq", data_dir=tmp_path / "data", columns={"user": "u", "item": "i", "rating": "score"})
    ratings = pl.read_parquet(_processed(tmp_path / "data", "pq") / "ratings.parquet")
    assert ratings.rows() == [(1, 5, 4.0, 0), (1, 6, 1.0, 0), (2, 5, 3.0, 0), (3, 6, 2.0, 0), (3, 7, 5.0, 0)]
    assert meta["rating_scale"] == [1.0, 5.0] and meta["rating_step"] == 1.0


def test_generic_file_errors(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(UsageError, match="--columns"):
        preprocess(str(path), name="x", data_dir=tmp_path / "data")
    with pytest.raises(DataError, match="has no column 'zz'"):
        preprocess(str(path), name="x", data_dir=tmp_path / "data", columns={"user": "a", "item": "b", "rating": "zz"})
    result = _run("preprocess", str(path), "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 2 and "--name is required" in result.stderr
    result = _run("preprocess", str(path), "--name", "x", "--columns", "user=a,item=b", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and result.stderr == ("error: --columns is missing rating=COL (user, item and rating "
                                                       "are required)\n")
    result = _run("preprocess", str(path), "--name", "x", "--columns", "user=a;item=b;rating=c", "--data-dir",
                  str(tmp_path))  # it said "missing item, rating=" (all of it was read as user's column)
    assert result.exit_code == 2 and "(separated by commas), got 'user=a;item=b;rating=c'" in result.stderr


def test_missing_dataset_or_file_says_what_to_run(tmp_path):
    data = tmp_path / "data"
    result = _run("preprocess", "ml-1m", "--data-dir", str(data))
    assert result.exit_code == 3
    assert "not downloaded" in result.stderr and "recsys download ml-1m" in result.stderr
    folder = write_layout("ml-1m", data / "raw")
    (folder / "movies.dat").unlink()
    result = _run("preprocess", "ml-1m", "--data-dir", str(data))
    assert result.exit_code == 3
    assert "movies.dat" in result.stderr and "recsys download ml-1m" in result.stderr


def test_info_lists_and_describes(tmp_path):
    data = tmp_path / "data"
    folder = write_layout("ml-100k", data / "raw")
    (folder / "download.json").write_text(json.dumps({"md5": "abc", "downloaded_at": "2024-01-01T00:00:00+00:00"}))
    write_layout("csv", data / "raw")  # downloaded, not processed
    preprocess("ml-100k", data_dir=data)
    result = _run("info", "--data-dir", str(data), "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"ml-100k", "ml-latest-small"}
    assert rows["ml-100k"]["processed"] is True and rows["ml-100k"]["n_ratings"] == N_RATINGS
    assert rows["ml-100k"]["md5"] == "abc" and rows["ml-latest-small"]["processed"] is False
    result = _run("info", "ml-100k", "--data-dir", str(data), "--format", "json")
    assert json.loads(result.stdout) == json.loads((_processed(data, "ml-100k") / "dataset.json").read_text())
    result = _run("info", "ml-100k", "--data-dir", str(data), "--format", "table")
    assert result.exit_code == 0 and "ml-100k" in result.stdout and "top genres" in result.stdout
    meta = json.loads((_processed(data, "ml-100k") / "dataset.json").read_text())
    real = [g for g in meta["genres"] if g != "unknown"]  # the "unknown" flag is no genre (it was counted)
    assert "unknown" in meta["genres"] and f"top genres (of {len(real)})" in result.stdout
    result = _run("info", "ml-latest-small", "--data-dir", str(data))
    assert result.exit_code == 3 and "recsys preprocess ml-latest-small" in result.stderr


def test_help_has_examples():
    for command in ("preprocess", "info"):
        result = _run(command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.stdout and f"recsys {command}" in result.stdout


def test_real_ml100k(tmp_path):
    if not MIRROR_ZIP.exists():
        pytest.skip(f"MovieLens 100K mirror not found at {MIRROR_ZIP}")
    with zipfile.ZipFile(MIRROR_ZIP) as zf:
        zf.extractall(tmp_path / "raw")
    data = tmp_path / "data"
    meta = preprocess(str(tmp_path / "raw" / "ml-100k"), name="ml-100k", data_dir=data)
    assert (meta["n_ratings"], meta["n_users"], meta["n_items"]) == (100_000, 943, 1682)
    assert meta["rating_scale"] == [1.0, 5.0] and meta["rating_step"] == 1.0
    assert len(meta["genres"]) == 19 and "unknown" in meta["genres"]
    assert meta["genres"]["Drama"] == 725 and meta["duplicates_resolved"] == 0
    assert meta["has_users"] is True and meta["has_tags"] is False
    users = pl.read_parquet(_processed(data, "ml-100k") / "users.parquet")
    assert users.height == 943 and dict(users.schema) == SCHEMAS["users"]
    items = pl.read_parquet(_processed(data, "ml-100k") / "items.parquet")
    toy = items.filter(pl.col("item_id") == 1).row(0)
    assert toy == (1, "Toy Story", 1995, ["Animation", "Children's", "Comedy"])


def test_generic_parquet_bad_value_names_the_row(tmp_path):
    path = tmp_path / "r.parquet"
    pl.DataFrame({"u": [1, 2, 3], "i": [5, 5, 6], "score": [3.0, 7.0, 1.0]}).write_parquet(path)
    with pytest.raises(DataError, match=r"^r.parquet: row 2: rating '7.0' is outside the scale 0.5..5$"):
        preprocess(str(path), name="pq", data_dir=tmp_path / "data", columns={"user": "u", "item": "i", "rating": "score"})


def test_generic_parquet_float_ids_must_be_whole_and_datetimes_become_seconds(tmp_path):
    """A cast would truncate 1.9 to 1 (merging users) and 3.5 s to 3; whole floats are fine; a datetime column
    is stored as Unix seconds (as from_frame does), not microseconds."""
    import datetime as dt

    opts = {"data_dir": tmp_path / "data", "columns": {"user": "u", "item": "i", "rating": "r", "timestamp": "t"}}
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"u": [1.0, 1.9], "i": [5, 6], "r": [3.0, 4.0], "t": [1, 2]}).write_parquet(bad)
    with pytest.raises(DataError, match=r"^bad.parquet: row 2: user id '1.9' is not an integer$"):
        preprocess(str(bad), name="pq1", **opts)
    pl.DataFrame({"u": [1.0, 2.0], "i": [5, 6], "r": [3.0, 4.0], "t": [1.0, 3.5]}).write_parquet(bad)
    with pytest.raises(DataError, match=r"^bad.parquet: row 2: timestamp '3.5' is not an integer$"):
        preprocess(str(bad), name="pq2", **opts)
    assert not (tmp_path / "data" / "processed" / "pq1").exists()
    good = tmp_path / "good.parquet"
    when = dt.datetime(2020, 1, 1, 0, 0, 7)
    pl.DataFrame({"u": [1.0, 2.0], "i": [5, 6], "r": [3.0, 4.0], "t": [when, when]}).write_parquet(good)
    preprocess(str(good), name="pq3", **opts)
    ratings = pl.read_parquet(_processed(tmp_path / "data", "pq3") / "ratings.parquet")
    assert ratings["user_id"].to_list() == [1, 2] and ratings["timestamp"].to_list() == [1577836807, 1577836807]


def test_a_csv_named_parquet_and_an_empty_u_genre_are_data_errors(tmp_path):
    fake = tmp_path / "r.parquet"
    fake.write_text("userId,movieId,rating\n1,2,3\n")
    with pytest.raises(DataError, match=r"^r.parquet: not a readable Parquet file \(Parquet magic bytes"):
        preprocess(str(fake), name="pq", data_dir=tmp_path / "data")
    folder = write_layout("ml-100k", tmp_path / "src")
    (folder / "u.genre").write_text("")
    with pytest.raises(DataError, match=r"^u.genre: no genres listed"):
        preprocess(str(folder), name="x", data_dir=tmp_path / "data")
    assert not (tmp_path / "data" / "processed" / "x").exists()


def test_u_genre_listing_fewer_genres_than_the_flags_and_an_empty_users_file(tmp_path):
    """The extra flags were read as URL and dates (genres silently lost); an empty users.dat gave has_users true
    over zero rows."""
    folder = write_layout("ml-100k", tmp_path / "src")
    first = (folder / "u.genre").read_text(encoding="latin-1").splitlines()[0]
    (folder / "u.genre").write_text(first + "\n")
    with pytest.raises(DataError, match=r"^u.item: its lines end in more 0/1 genre flags than the 1 genre\(s\) "
                                         r"u.genre lists$"):
        preprocess(str(folder), name="x", data_dir=tmp_path / "data")
    folder = write_layout("ml-1m", tmp_path / "src1m")
    (folder / "users.dat").write_text("")
    meta = preprocess(str(folder), name="y", data_dir=tmp_path / "data")
    assert meta["has_users"] is False and not (_processed(tmp_path / "data", "y") / "users.parquet").exists()


def test_rated_items_missing_from_movies_get_a_placeholder(tmp_path):
    folder = write_layout("csv", tmp_path / "src")
    append_line(folder, "csv", "4,99,4.0,883000500")
    meta = preprocess(str(folder), name="x", data_dir=tmp_path / "data")
    items = pl.read_parquet(_processed(tmp_path / "data", "x") / "items.parquet")
    assert items.row(-1) == (99, "Item 99", None, [])
    assert meta["n_items"] == N_ITEMS + 1 and meta["n_rated_items"] == N_RATED_ITEMS + 1


def test_ml100k_genre_flags_are_read_from_the_end_of_the_line(tmp_path):
    """A stray '|' before the flags (as in some copies of u.item) must not shift the genres."""
    folder = write_layout("ml-100k", tmp_path / "src")
    lines = (folder / "u.item").read_bytes().decode("latin-1").splitlines()
    lines[0] = lines[0].replace("|01-Jan-1995|", "|01-Jan-1995|extra|", 1)
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    preprocess(str(folder), name="x", data_dir=tmp_path / "data")
    items = pl.read_parquet(_processed(tmp_path / "data", "x") / "items.parquet")
    assert items.rows() == [tuple(r) for r in EXPECTED_ITEMS]


def test_bad_users_file_names_its_line(tmp_path):
    folder = write_layout("ml-1m", tmp_path / "src")
    with open(folder / "users.dat", "a", encoding="latin-1") as fh:
        fh.write("5::M::25::42::55455\n")
    with pytest.raises(DataError, match=r"^users.dat:5: occupation code 42 is not one of 0..20$"):
        preprocess(str(folder), name="x", data_dir=tmp_path / "data")


def test_a_title_that_is_only_a_year_keeps_its_text():
    """"(2001)" became an empty title (the year was cut off and nothing was left)."""
    from recsys_cli.data.readers import _title_year

    df = pl.DataFrame({"t": ["Toy Story (1995)", "(2001)", "Heat"]})
    assert df.select(_title_year(pl.col("t"))).rows() == [("Toy Story", 1995), ("(2001)", 2001), ("Heat", None)]


def test_a_ratings_file_without_its_header_says_so(tmp_path):
    """It said "the header repeats a column name (1, 1, 4.0, ...)" when two values of the first row matched."""
    path = tmp_path / "nohdr.csv"
    path.write_text("1,1,4.0,964982703\n1,3,4.0,964981247\n")
    with pytest.raises(DataError, match=r"^nohdr.csv:1: expected a header line naming the columns, found data "
                                        r"\(1,1,4.0,964982703\); add one, e.g. userId,movieId,rating,timestamp$"):
        preprocess(str(path), name="nohdr", data_dir=tmp_path / "data")


# ----- movies.csv, tags.csv and their siblings: short rows, long rows and bytes that are not UTF-8 -----
def _append(path: Path, line: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(line + b"\n")


def _latin1_title(path: Path) -> None:  # movie 7 sits on line 8 of movies.csv (line 1 is the header)
    path.write_bytes(path.read_bytes().replace(b"Unrated Movie", b"Caf\xe9"))


SMALL_FILE_ERRORS = [
    # (layout, file, how to damage it, exact message); line numbers count the header as line 1
    ("csv", "movies.csv", lambda p: _append(p, b"9,Father of the Bride Part II (1995)"),
     "movies.csv:10: expected 3 fields, got 2"),  # was accepted: genres read as empty
    ("csv", "movies.csv", lambda p: _append(p, b"9,Heat (1995),Action,Crime"),
     "movies.csv:10: expected 3 fields, got 4"),  # was "movies.csv: found more fields than defined in 'Schema'"
    ("csv", "movies.csv", _latin1_title,
     "movies.csv:8: byte 0xe9 is not UTF-8 text; save the file as UTF-8"),  # was "movies.csv: invalid utf-8 sequence"
    ("csv", "tags.csv", lambda p: _append(p, b"4,5,short"),
     "tags.csv:5: expected 4 fields, got 3"),  # was "tags.csv:5: timestamp None is not an integer"
    ("csv", "tags.csv", lambda p: _append(p, b"4,5,long,881000020,extra"), "tags.csv:5: expected 4 fields, got 5"),
    ("csv", "tags.csv", lambda p: _append(p, b"4,5,caf\xe9,881000020"),
     "tags.csv:5: byte 0xe9 is not UTF-8 text; save the file as UTF-8"),
    ("csv", "tags.csv", lambda p: _append(p, b"4,5,empty time,"),
     "tags.csv:5: timestamp '' is not an integer"),  # an empty field is '', not None
    ("csv", "ratings.csv", lambda p: _append(p, b"4,6,3.5,88300\xe90"),
     "ratings.csv:16: byte 0xe9 is not UTF-8 text; save the file as UTF-8"),  # was "timestamp '88300\ufffd0' ..."
    ("csv", "ratings.csv", lambda p: p.write_bytes(p.read_bytes().replace(b"userId", b"us\xe9rId", 1)),
     "ratings.csv:1: byte 0xe9 is not UTF-8 text; save the file as UTF-8"),  # was "has no column 'userId'"
    # the '::' siblings already named the line; pinned here
    ("ml-10m", "movies.dat", lambda p: _append(p, b"9::Father of the Bride Part II (1995)"),
     "movies.dat:9: expected at least 3 fields, got 2"),
    ("ml-1m", "movies.dat", lambda p: _append(p, b"9::Father of the Bride Part II (1995)"),
     "movies.dat:9: expected at least 3 fields, got 2"),
    ("ml-10m", "tags.dat", lambda p: _append(p, b"4::5::short"), "tags.dat:4: expected at least 4 fields, got 3"),
]


def _read_all(layout: readers.Layout) -> None:
    readers.read_ratings(layout.ratings)
    readers.read_items(layout)
    readers.read_tags(layout)


@pytest.mark.parametrize(("kind", "fname", "damage", "message"), SMALL_FILE_ERRORS,
                         ids=[f"{k}-{m}" for k, _, _, m in SMALL_FILE_ERRORS])
def test_bad_rows_and_bytes_of_every_file_name_the_line_at_the_reader(tmp_path, kind, fname, damage, message):
    folder = write_layout(kind, tmp_path / "src")
    damage(folder / fname)
    with pytest.raises(DataError) as err:
        _read_all(readers.detect_layout(folder))
    assert str(err.value) == message


@pytest.mark.parametrize(("kind", "fname", "damage", "message"), SMALL_FILE_ERRORS,
                         ids=[f"{k}-{m}" for k, _, _, m in SMALL_FILE_ERRORS])
def test_bad_rows_and_bytes_of_every_file_through_the_cli(tmp_path, kind, fname, damage, message):
    folder = write_layout(kind, tmp_path / "src")
    damage(folder / fname)
    data = tmp_path / "data"
    result = _run("preprocess", str(folder), "--name", "bad", "--data-dir", str(data))
    assert result.exit_code == 3  # data error, README's exit code table
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if not line.startswith(("reading ", "read ", "writing "))]
    assert errors == [f"error: {message}"]  # after any progress lines: one line, no traceback
    assert not (data / "processed").exists() or list((data / "processed").iterdir()) == []  # nothing half-written


def test_blank_lines_and_empty_fields_of_movies_and_tags_csv_are_read(tmp_path):
    """A blank line in movies.csv said "movieId None is not an integer"; it is skipped, as in every other file."""
    folder = write_layout("csv", tmp_path / "src")
    movies = folder / "movies.csv"
    lines = movies.read_bytes().split(b"\n")
    movies.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join([*lines[:3], b"", *lines[3:-1], b'9,"Title, A (1995)",', b"", b""]))
    _append(folder / "tags.csv", b"")
    _append(folder / "tags.csv", b"4,5,,883000010")  # an empty tag is dropped, as before
    layout = readers.detect_layout(folder)
    items, _ = readers.read_items(layout)
    assert items.rows() == [*(tuple(r) for r in EXPECTED_ITEMS), (9, "Title, A", 1995, [])]
    assert readers.read_tags(layout).rows() == list(TAGS)
    bad = movies.read_bytes().replace(b'9,"Title, A (1995)",', b"9")  # 1 field on line 11 (CRLF, BOM)
    movies.write_bytes(bad)
    with pytest.raises(DataError) as err:
        readers.read_items(layout)
    assert str(err.value) == "movies.csv:11: expected 3 fields, got 1"


def test_a_generic_ratings_file_with_latin1_text_names_the_line(tmp_path):
    """It said "g.csv: invalid utf-8 sequence": Polars failed on the unused text column, with no line."""
    path = tmp_path / "g.csv"
    path.write_bytes(b"u,note,i,r\n1,ok,2,3\n1,caf\xe9,3,4\n")
    result = _run("preprocess", str(path), "--name", "g", "--columns", "user=u,item=i,rating=r",
                  "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1] == "error: g.csv:3: byte 0xe9 is not UTF-8 text; save the file as UTF-8"


def test_info_on_a_damaged_dataset_json(tmp_path):
    """dataset.json that is not an object, or with a count of the wrong type: `info` lists the dataset as not
    processed, `info NAME`, `insights NAME` and loading it are exit 3 naming the file (they were exit 1:
    ''list' object has no attribute 'get'', KeyError 'name', and `info list --format json` printed [1, 2])."""
    for name, content in (("list", [1, 2]), ("typed", {"schema_version": 1, "name": "typed", "n_ratings": "lots",
                                                       "n_users": 3, "n_items": 2, "splits": {}})):
        (tmp_path / "processed" / name).mkdir(parents=True)
        (tmp_path / "processed" / name / "dataset.json").write_text(json.dumps(content))

    def invoke(*args):
        return CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)])

    for fmt in ("table", "json", "csv"):
        res = invoke("info", "--format", fmt)
        assert (res.exit_code, res.stderr) == (0, ""), res.output
    rows = json.loads(invoke("info", "--format", "json").stdout)
    assert [(r["name"], r["processed"], r["n_ratings"]) for r in rows] == [("list", False, None), ("typed", False, None)]
    meta = tmp_path / "processed" / "list" / "dataset.json"
    for args in (["info", "list", "--format", "json"], ["insights", "list", "--format", "json"]):
        res = invoke(*args)
        assert (res.exit_code, res.stdout) == (3, "")
        assert res.stderr == f"error: {meta} should hold a JSON object, got list; re-run `recsys preprocess list`\n"
    meta = tmp_path / "processed" / "typed" / "dataset.json"
    for fmt in ("table", "json"):
        res = invoke("info", "typed", "--format", fmt)
        assert (res.exit_code, res.stdout) == (3, "")
        assert res.stderr == (f"error: {meta}: 'n_ratings' is 'lots', expected an integer; "
                              "re-run `recsys preprocess typed`\n")


def test_info_csv_of_an_empty_data_folder_is_the_header(tmp_path):
    """CSV columns are stable: with nothing downloaded `info --format csv` prints the listing's header (it
    printed a blank line), as `runs` does; JSON is []."""
    res = CliRunner().invoke(app, ["info", "--data-dir", str(tmp_path / "none"), "--format", "csv"])
    assert res.exit_code == 0
    assert res.stdout == "name,downloaded,downloaded_at,md5,processed,layout,n_ratings,n_users,n_items,splits,created\n"
    res = CliRunner().invoke(app, ["info", "--data-dir", str(tmp_path / "none"), "--format", "json"])
    assert (res.exit_code, res.stdout) == (0, "[]\n")
