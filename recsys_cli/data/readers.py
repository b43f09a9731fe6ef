"""Readers for every MovieLens layout (ml-100k, ml-1m, ml-10m, CSV releases) and generic ratings files.

`detect_layout(folder)` says which files a folder holds; `read_ratings` parses the ratings
lazily with Polars (fast path) and, only when something is wrong, walks the file line by
line to name the first bad line (`u.data:5: rating 'x' is not a number`). Items, users and
tags files are small and parsed whole, with line numbers in every error. Line numbers are
1-based and count every line, the header (line 1 of a CSV) and blank lines included. Text
ratings files, movies.csv and tags.csv must be UTF-8: a byte that is not is named by its line
(`movies.csv:8: byte 0xe9 is not UTF-8 text; save the file as UTF-8`), as is a row whose field
count differs from the header's (`tags.csv:5: expected 4 fields, got 3`).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recsys_cli.errors import DataError, UsageError

# The 21 occupation codes of ml-1m users.dat, as documented in its README.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
NO_GENRES = ("(no genres listed)", "unknown", "")  # genre labels that mean "no genre"
INT32 = (-(2**31), 2**31 - 1)
ID_RANGE = (0, 2**31 - 1)  # raw ids: negative ones would collide with the -1 "no item" marker of top-n lists
_YEAR = r"\s*\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$"  # trailing " (1995)" or " (1975-1979)"
COLUMN_ALIASES = {
    "user": ("userId", "user_id", "user", "UserID", "userID"),
    "item": ("movieId", "item_id", "item", "itemId", "movie_id", "MovieID"),
    "rating": ("rating", "Rating", "score"),
    "timestamp": ("timestamp", "Timestamp", "ts", "time"),
}


@dataclass(frozen=True)
class RatingsFile:
    """How to read one ratings file: separator, header, field positions and expected width."""

    path: Path
    sep: str  # "\t", "::", ",", ... ("" for Parquet)
    header: bool = False
    positions: dict[str, int] = field(default_factory=lambda: {"user": 0, "item": 1, "rating": 2, "timestamp": 3})
    n_fields: int = 4  # exact number of fields per line
    header_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """A recognised source: its kind (ml-100k|ml-1m|ml-10m|csv|generic) and the files to read."""

    kind: str
    folder: Path | None
    ratings: RatingsFile
    files: dict[str, Path] = field(default_factory=dict)  # items, users, tags, genres where present


def detect_layout(folder: Path, expected: str | None = None, hint: str = "") -> Layout:
    """Recognise a MovieLens folder from its files; DataError naming a missing file plus `hint`."""
    folder = Path(folder)
    suffix = f"; {hint}" if hint else ""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder{suffix}")
    kind = expected or _guess_kind(folder)
    if kind is None:
        subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if len(subdirs) == 1 and _guess_kind(subdirs[0]):  # the unzipped release inside a parent folder
            return detect_layout(subdirs[0], None, hint)
        raise DataError(f"{folder} holds no MovieLens ratings file (u.data, ratings.dat or ratings.csv){suffix}")
    required = {
        "ml-100k": {"ratings": "u.data", "items": "u.item", "users": "u.user", "genres": "u.genre"},
        "ml-1m": {"ratings": "ratings.dat", "items": "movies.dat", "users": "users.dat"},
        "ml-10m": {"ratings": "ratings.dat", "items": "movies.dat"},
        "csv": {"ratings": "ratings.csv", "items": "movies.csv"},
    }[kind]
    optional = {"ml-10m": {"tags": "tags.dat"}, "csv": {"tags": "tags.csv"}}.get(kind, {})
    files: dict[str, Path] = {}
    for role, name in required.items():
        if not (folder / name).is_file():
            raise DataError(f"{folder} has no {name} (needed for the {kind} layout){suffix}")
        files[role] = folder / name
    files.update({role: folder / name for role, name in optional.items() if (folder / name).is_file()})
    ratings_path = files.pop("ratings")
    if kind == "ml-100k":
        ratings = RatingsFile(ratings_path, "\t")
    elif kind in ("ml-1m", "ml-10m"):
        ratings = RatingsFile(ratings_path, "::")
    else:
        ratings = _csv_ratings(ratings_path, {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"})
    return Layout(kind, folder, ratings, files)


def _guess_kind(folder: Path) -> str | None:
    if (folder / "u.data").is_file():
        return "ml-100k"
    if (folder / "ratings.dat").is_file():
        return "ml-1m" if (folder / "users.dat").is_file() else "ml-10m"
    if (folder / "ratings.csv").is_file():
        return "csv"
    return None


def generic_layout(path: Path, columns: dict[str, str] | None) -> Layout:
    """A lone ratings CSV/TSV/Parquet file whose columns are named by `columns` (or guessed)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            names = tuple(pq.read_schema(path).names)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path.name}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        positions: dict[str, int] = {r: names.index(c) for r, c in _map_columns(path.name, names, columns).items()}
        return Layout("generic", None, RatingsFile(path, "", True, positions, len(names), names))
    return Layout("generic", None, _csv_ratings(path, columns))


def _map_columns(fname: str, names: tuple[str, ...], columns: dict[str, str] | None) -> dict[str, str]:
    unknown = set(columns or {}) - set(COLUMN_ALIASES)
    if unknown:
        raise UsageError(f"unknown --columns key(s) {', '.join(sorted(unknown))}; use user, item, rating, timestamp")
    mapping: dict[str, str] = {}
    for role, aliases in COLUMN_ALIASES.items():
        wanted = (columns or {}).get(role)
        if wanted is not None:
            if wanted not in names:
                raise DataError(f"{fname} has no column {wanted!r} (columns: {', '.join(names)})")
            mapping[role] = wanted
            continue
        found = next((a for a in aliases if a in names), None)  # a well-known column name
        if found is None:
            if role == "timestamp":
                continue  # optional: timestamps become 0
            raise UsageError(
                f"{fname}: cannot tell which column holds the {role}s (columns: {', '.join(names)}); "
                "pass --columns user=COL,item=COL,rating=COL[,timestamp=COL]"
            )
        mapping[role] = found
    return mapping


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_ratings(path: Path, columns: dict[str, str] | None) -> RatingsFile:
    with open(path, "rb") as fh:
        if b"\x00" in fh.read(1 << 16):
            raise DataError(f"{path.name} is not a text CSV/TSV file (it contains NUL bytes)")
    with open(path, "rb") as fh:
        first = _utf8_line(path.name, 1, fh.readline().removeprefix(codecs.BOM_UTF8))  # a BOM is no column name
    if not first.strip():
        raise DataError(f"{path.name}:1: expected a header line, found an empty line")
    sep = "\t" if "\t" in first else (";" if ";" in first and "," not in first else ",")
    names = tuple(next(csv.reader([first.rstrip("\r\n")], delimiter=sep)))
    if names and all(_is_number(n) for n in names):  # data where the header should be
        raise DataError(f"{path.name}:1: expected a header line naming the columns, found data "
                        f"({sep.join(names)}); add one, e.g. userId{sep}movieId{sep}rating{sep}timestamp")
    if len(set(names)) != len(names):
        raise DataError(f"{path.name}:1: the header repeats a column name ({', '.join(names)})")
    mapping = _map_columns(path.name, names, columns)
    positions = {role: names.index(col) for role, col in mapping.items()}
    return RatingsFile(path, sep, True, positions, len(names), names)


# ---------------------------------------------------------------- ratings


def scan_ratings(rf: RatingsFile) -> pl.LazyFrame:
    """Lazy ratings with `_row` (0-based data row), user_id i32, item_id i32, rating f32, timestamp i64, `_ok`."""
    pos = rf.positions
    if rf.sep == "":  # Parquet: columns by name
        lf = pl.scan_parquet(rf.path).with_row_index("_row")
        raw = {role: pl.col(rf.header_names[k]) for role, k in pos.items()}
        seps: list[pl.Expr] = []
    elif rf.sep == "::":  # Polars separators are one byte: split on ':' and every other field is empty
        width = 2 * rf.n_fields - 1
        schema = {f"f{k}": pl.String for k in range(width)}
        for role, k in pos.items():
            schema[f"f{2 * k}"] = pl.Float64 if role == "rating" else pl.Int64
        lf = pl.scan_csv(rf.path, separator=":", has_header=False, schema=schema, quote_char=None, row_index_name="_row")
        raw = {role: pl.col(f"f{2 * k}") for role, k in pos.items()}
        seps = [pl.col(f"f{k}") for k in range(1, width, 2)]
    else:
        names = rf.header_names or tuple(f"f{k}" for k in range(rf.n_fields))
        schema = {n: pl.String for n in names}
        for role, k in pos.items():
            schema[names[k]] = pl.Float64 if role == "rating" else pl.Int64
        lf = pl.scan_csv(
            rf.path, separator=rf.sep, has_header=rf.header, schema=schema,
            quote_char='"' if rf.header else None, row_index_name="_row",
        )
        raw = {role: pl.col(names[k]) for role, k in pos.items()}
        seps = []
    present = list(raw.values()) + seps
    lf = lf.filter(~pl.all_horizontal([e.is_null() for e in present]))  # blank lines
    as_int = {role: raw[role].cast(pl.Int64, strict=False) for role in ("user", "item", "timestamp") if role in raw}
    if rf.sep == "":  # Parquet keeps its types: a float must be a whole number (a cast would truncate 1.9 to 1)
        types = lf.collect_schema()
        for role in as_int:
            dtype = types[rf.header_names[pos[role]]]
            if dtype.is_temporal() and role == "timestamp":  # a datetime column: Unix seconds, as from_frame
                as_int[role] = raw[role].dt.epoch("s")
            elif dtype.is_float():
                as_int[role] = pl.when(raw[role] == raw[role].floor()).then(as_int[role])
    user, item = as_int["user"], as_int["item"]
    rating = raw["rating"].cast(pl.Float64, strict=False)
    ts = as_int["timestamp"] if "timestamp" in raw else pl.lit(0, pl.Int64)
    ok = user.is_between(*ID_RANGE) & item.is_between(*ID_RANGE) & rating.is_not_null() & ts.is_not_null()
    for sep in seps:
        ok = ok & sep.is_null()
    return lf.select(
        pl.col("_row"),
        user.cast(pl.Int32, strict=False).alias("user_id"),
        item.cast(pl.Int32, strict=False).alias("item_id"),
        rating.cast(pl.Float32).alias("rating"),
        ts.alias("timestamp"),
        ok.fill_null(False).alias("_ok"),
    )


def _bad_rating(col: str = "rating") -> pl.Expr:
    r = pl.col(col)
    return r.is_nan() | ~r.is_between(0.5, 5.0) | ((r * 2).round() != r * 2)


def read_ratings(rf: RatingsFile) -> pl.DataFrame:
    """All ratings as `_row`, user_id, item_id, rating, timestamp; DataError naming the first bad line."""
    try:
        df = scan_ratings(rf).collect(engine="streaming")
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        raise locate_error(rf, _first_bad_line(rf)) or DataError(f"{rf.path.name}: {str(exc).splitlines()[0]}") from None
    bad = df.lazy().filter(~pl.col("_ok") | _bad_rating()).select("_row").head(1).collect()
    if bad.height:
        row = int(bad["_row"][0])
        raise locate_error(rf, row + 1 + int(rf.header)) or DataError(f"{rf.path.name}: data row {row + 1} is malformed")
    return df.drop("_ok")


def _first_bad_line(rf: RatingsFile) -> int:
    """A vectorised guess at the first line with the wrong width or an unparsable number (1 if none)."""
    if rf.sep == "":
        return 1
    parts = pl.col("line").str.strip_chars_end("\r").str.split(rf.sep)
    checks = [parts.list.len() != rf.n_fields]
    for role, k in rf.positions.items():
        value = parts.list.get(k, null_on_oob=True).str.strip_chars()
        checks.append(value.cast(pl.Float64 if role == "rating" else pl.Int64, strict=False).is_null())
    bad = pl.any_horizontal(checks) & (pl.col("line").str.strip_chars() != "")
    if rf.header:  # the header is no data, and quoted fields defeat a plain split: the line walk checks those
        bad = bad & (pl.col("_row") > 0) & ~pl.col("line").str.contains('"', literal=True)
    try:
        out = (
            pl.scan_csv(rf.path, has_header=False, separator="\x1f", quote_char=None, schema={"line": pl.String},
                        row_index_name="_row", encoding="utf8-lossy", truncate_ragged_lines=True)
            .filter(bad).select("_row").head(1).collect(engine="streaming")
        )
    except pl.exceptions.PolarsError:
        return 1
    return int(out["_row"][0]) + 1 if out.height else 1


def locate_error(rf: RatingsFile, first_line: int) -> DataError | None:
    """Walk the file to the first bad line at or after `first_line` (then from the top)."""
    if rf.sep == "":
        return _parquet_error(rf, max(0, first_line - 1 - int(rf.header)))
    return _scan_lines(rf, first_line) or (_scan_lines(rf, 1) if first_line > 1 else None)


def _scan_lines(rf: RatingsFile, first_line: int) -> DataError | None:
    first_line = max(first_line, 1 + int(rf.header))  # never check the header
    name = rf.path.name
    with open(rf.path, "rb") as fh:
        for _ in itertools.islice(fh, first_line - 1):  # skip quickly to the suspect line
            pass
        lines = (_utf8_line(name, n, raw) for n, raw in enumerate(fh, first_line))
        if rf.header:  # CSV: quoted fields may hold separators
            reader = csv.reader(lines, delimiter=rf.sep)
            rows = ((first_line - 1 + reader.line_num, parts) for parts in reader)
        else:
            rows = ((n, line.rstrip("\r\n").split(rf.sep)) for n, line in enumerate(lines, first_line))
        try:
            for lineno, parts in rows:
                if not any(p.strip() for p in parts):
                    continue
                message = _check_fields(rf, parts)
                if message:
                    return DataError(f"{name}:{lineno}: {message}")
        except DataError as err:  # a line that is not UTF-8 is the first bad line
            return err
    return None


def _not_utf8(fname: str, line_no: int, byte: int) -> DataError:
    return DataError(f"{fname}:{line_no}: byte 0x{byte:02x} is not UTF-8 text; save the file as UTF-8")


def _utf8_line(fname: str, line_no: int, raw: bytes) -> str:
    """One line of a file that must be UTF-8, decoded; DataError naming the line and the byte if not."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(fname, line_no, raw[exc.start]) from None


def _utf8_text(fname: str, data: bytes) -> str:
    """A whole file that must be UTF-8 (a leading BOM dropped), decoded; DataError naming the first bad line."""
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(fname, data.count(b"\n", 0, exc.start) + 1, data[exc.start]) from None


def _width_message(expected: int, got: int, at_least: bool = False) -> str:
    return f"expected {'at least ' if at_least else ''}{expected} fields, got {got}"


def _check_fields(rf: RatingsFile, parts: list[str]) -> str | None:
    if len(parts) != rf.n_fields:
        return _width_message(rf.n_fields, len(parts))
    for role, k in rf.positions.items():
        value = parts[k].strip()
        label = f"{role} id" if role in ("user", "item") else role
        try:
            number = float(value) if role == "rating" else int(value)
        except ValueError:
            kind = "a number" if role == "rating" else "an integer"
            return f"{label} {value!r} is not {kind}"
        if role in ("user", "item") and not INT32[0] <= number <= INT32[1]:
            return f"{label} {value!r} does not fit a 32-bit integer"
        if role in ("user", "item") and number < 0:
            return f"{label} {value!r} is negative (ids are 0 or more)"
        if role == "rating":
            if number != number or number in (float("inf"), float("-inf")):
                return f"rating {value!r} is not a finite number"
            if not 0.5 <= number <= 5.0:
                return f"rating {value!r} is outside the scale 0.5..5"
            if number * 2 != round(number * 2):
                return f"rating {value!r} is not a multiple of 0.5"
    return None


def _parquet_error(rf: RatingsFile, from_row: int) -> DataError | None:
    row = pl.scan_parquet(rf.path).slice(from_row, 1).collect()

    rating = rf.header_names[rf.positions["rating"]]

    def text(column: str, value) -> str:  # as the reader sees an id or time: a whole float is an integer
        if column != rating and isinstance(value, float) and value.is_integer():
            return str(int(value))
        if hasattr(value, "timestamp"):  # a datetime: its Unix seconds
            return str(int(value.timestamp()))
        return str(value)

    message = _check_fields(rf, [text(c, row[c][0]) for c in rf.header_names]) if row.height else None
    return DataError(f"{rf.path.name}: row {from_row + 1}: {message}") if message else None


# ---------------------------------------------------------------- small files


def _lines(path: Path) -> pl.DataFrame:
    """Non-blank lines of a small text file as `line_no` (1-based), `line`; utf-8, else latin-1."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # GroupLens ships ml-100k and ml-1m in latin-1
    sep = next(c for c in "\x1f\x1e\x1d\x01" if c not in text)
    df = pl.read_csv(
        io.BytesIO(text.encode("utf-8")), has_header=False, separator=sep, quote_char=None,
        schema={"line": pl.String}, raise_if_empty=False, truncate_ragged_lines=True,
    )
    df = df.with_row_index("line_no", offset=1).with_columns(pl.col("line").str.strip_chars_end("\r"))
    return df.filter(pl.col("line").str.strip_chars() != "")


def _split(df: pl.DataFrame, sep: str, n: int, fname: str, exact: bool = True) -> pl.DataFrame:
    df = df.with_columns(pl.col("line").str.split(sep).alias("parts"))
    counts = df["parts"].list.len()
    bad = df.filter((counts != n) if exact else (counts < n))
    if bad.height:
        raise DataError(f"{fname}:{bad['line_no'][0]}: {_width_message(n, len(bad['parts'][0]), not exact)}")
    return df


def _number(df: pl.DataFrame, expr: pl.Expr, dtype, label: str, fname: str, line_col: str = "line_no") -> pl.Series:
    """Cast a string column, naming the first line whose value is not a number."""
    out = df.select(src=expr, val=expr.str.strip_chars().cast(dtype, strict=False), line=pl.col(line_col))
    bad = out.filter(pl.col("val").is_null())
    if bad.height:
        kind = "an integer" if dtype.is_integer() else "a number"
        raise DataError(f"{fname}:{bad['line'][0]}: {label} {bad['src'][0]!r} is not {kind}")
    return out["val"]


def _unique_ids(df: pl.DataFrame, col: str, label: str, fname: str) -> None:
    dup = df.filter(pl.col(col).is_first_distinct().not_())
    if dup.height:
        first = df.filter(pl.col(col) == dup[col][0])["line_no"][0]
        raise DataError(f"{fname}:{dup['line_no'][0]}: {label} {dup[col][0]} already appears on line {first}")


def _title_year(title: pl.Expr) -> list[pl.Expr]:
    t = title.str.strip_chars()
    bare = t.str.replace(_YEAR, "")
    # a title that is only "(2001)" keeps its text rather than become empty
    return [pl.when(bare.str.strip_chars() == "").then(t).otherwise(bare).alias("title"),
            t.str.extract(_YEAR, 1).cast(pl.Int16, strict=False).alias("year")]


def _items_frame(df: pl.DataFrame, ids: pl.Series, fname: str) -> pl.DataFrame:
    df = df.with_columns(ids.alias("item_id"))
    _unique_ids(df, "item_id", "item id", fname)
    return df.select(
        pl.col("item_id").cast(pl.Int32), *_title_year(pl.col("raw_title")),
        pl.col("genres").list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(~pl.element().is_in(list(NO_GENRES)))).alias("genres"),
    ).sort("item_id")


def read_genre_names(path: Path) -> list[str]:
    """ml-100k u.genre ("unknown|0" ... "Western|18") as names ordered by index."""
    df = _split(_lines(path), "|", 2, path.name)
    if df.is_empty():
        raise DataError(f"{path.name}: no genres listed (expected lines like 'Action|1')")
    idx = _number(df, pl.col("parts").list.get(1), pl.Int32, "genre index", path.name)
    names = df.select(pl.col("parts").list.get(0).alias("name")).with_columns(idx.alias("idx")).sort("idx")
    return names["name"].to_list()


def read_items(layout: Layout) -> tuple[pl.DataFrame, dict[str, int] | None]:
    """items (item_id i32, title, year i16, genres list[str]) and ml-100k's per-flag genre counts."""
    path = layout.files["items"]
    name = path.name
    if layout.kind == "ml-100k":
        genres = read_genre_names(layout.files["genres"])
        df = _split(_lines(path), "|", 5 + len(genres), name, exact=False)
        # Genre flags are the last fields: a stray '|' in a URL must not shift them.
        flags = [pl.col("parts").list.get(-len(genres) + k) for k in range(len(genres))]
        before = pl.col("parts").list.get(-len(genres) - 1, null_on_oob=True).str.strip_chars()
        if df.height and df.select(before.is_in(["0", "1"]).all()).item():  # the URL field is a flag too
            raise DataError(f"{name}: its lines end in more 0/1 genre flags than the {len(genres)} genre(s) "
                            f"{layout.files['genres'].name} lists")
        df = df.with_columns(*[f.str.strip_chars().alias(f"g{k}") for k, f in enumerate(flags)])
        for k in range(len(genres)):
            bad = df.filter(~pl.col(f"g{k}").is_in(["0", "1"]))
            if bad.height:
                raise DataError(f"{name}:{bad['line_no'][0]}: genre flag {bad[f'g{k}'][0]!r} is not 0 or 1")
        counts = {g: int((df[f"g{k}"] == "1").sum()) for k, g in enumerate(genres)}
        df = df.with_columns(
            pl.col("parts").list.get(1).alias("raw_title"),
            pl.concat_list([pl.when(pl.col(f"g{k}") == "1").then(pl.lit(g)) for k, g in enumerate(genres)])
            .list.drop_nulls().alias("genres"),
        )
        ids = _number(df, pl.col("parts").list.get(0), pl.Int32, "item id", name)
        return _items_frame(df, ids, name), counts
    if layout.kind in ("ml-1m", "ml-10m"):
        df = _split(_lines(path), "::", 3, name, exact=False)
        n = pl.col("parts").list.len()
        df = df.with_columns(
            pl.col("parts").list.slice(1, n - 2).list.join("::").alias("raw_title"),
            pl.col("parts").list.last().str.split("|").alias("genres"),
        )
        ids = _number(df, pl.col("parts").list.get(0), pl.Int32, "item id", name)
        return _items_frame(df, ids, name), None
    df = _read_csv_strings(path, ("movieId", "title", "genres"))
    df = df.with_columns(pl.col("title").fill_null("").alias("raw_title"), pl.col("genres").fill_null("").str.split("|"))
    ids = _number(df, pl.col("movieId"), pl.Int32, "movieId", name)
    return _items_frame(df, ids, name), None


def _read_csv_strings(path: Path, needed: tuple[str, ...]) -> pl.DataFrame:
    """A headed UTF-8 CSV (movies.csv, tags.csv) as strings with `line_no`, the header being line 1.

    Blank lines are skipped and an empty field is ''. DataError naming the line for a byte that is
    not UTF-8 and for a row with more or fewer fields than the header (Polars would pad a short row
    with nulls). Assumes no line breaks inside quotes, as in every MovieLens release.
    """
    data = path.read_bytes()
    text = _utf8_text(path.name, data)
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        df = pl.read_csv(io.BytesIO(data), infer_schema=False, raise_if_empty=False)
    except pl.exceptions.PolarsError as exc:  # e.g. a row with more fields than the header
        raise _csv_width_error(path.name, text) or DataError(f"{path.name}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{path.name}:1: missing column {missing[0]!r} (header: {','.join(df.columns)})")
    columns = df.columns
    df = df.with_row_index("line_no", offset=2)
    # A short row (or a blank line) leaves the last column null; only those lines are split again.
    suspects = df.filter(pl.col(columns[-1]).is_null())["line_no"].to_list()
    if suspects:
        lines = text.split("\n")
        blank = []
        for line_no in suspects:
            line = lines[line_no - 1].rstrip("\r")
            if not line.strip():
                blank.append(line_no)
                continue
            got = len(next(csv.reader([line])))
            if got != len(columns):
                raise DataError(f"{path.name}:{line_no}: {_width_message(len(columns), got)}")
        df = df.filter(~pl.col("line_no").is_in(blank))
    return df.with_columns(pl.col(columns).fill_null(""))


def _csv_width_error(fname: str, text: str) -> DataError | None:
    """The first row of a headed CSV whose field count differs from the header's, walking every line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    for row in reader:
        blank = len(row) <= 1 and not "".join(row).strip()  # as the fast path: a line of white space
        if not blank and len(row) != len(header):
            return DataError(f"{fname}:{reader.line_num}: {_width_message(len(header), len(row))}")
    return None


def read_users(layout: Layout) -> pl.DataFrame | None:
    """users (user_id i32, gender, age i16, occupation, zip) for ml-100k and ml-1m, else None."""
    path = layout.files.get("users")
    if path is None:
        return None
    name = path.name
    lines = _lines(path)
    if lines.is_empty():  # no users to describe: the dataset has no demographics (has_users false)
        return None
    if layout.kind == "ml-100k":  # id|age|gender|occupation|zip
        df = _split(lines, "|", 5, name)
        order = {"age": 1, "gender": 2, "occupation": 3, "zip": 4}
    else:  # UserID::Gender::Age::Occupation::Zip-code
        df = _split(lines, "::", 5, name)
        order = {"gender": 1, "age": 2, "occupation": 3, "zip": 4}
    get = {k: pl.col("parts").list.get(i).str.strip_chars() for k, i in order.items()}
    df = df.with_columns(
        _number(df, pl.col("parts").list.get(0), pl.Int32, "user id", name).alias("user_id"),
        _number(df, get["age"], pl.Int16, "age", name).alias("age"),
    )
    occupation = get["occupation"]
    if layout.kind == "ml-1m":
        codes = _number(df, occupation, pl.Int32, "occupation code", name)
        bad = df.with_columns(codes.alias("code")).filter(~pl.col("code").is_between(0, len(ML1M_OCCUPATIONS) - 1))
        if bad.height:
            raise DataError(f"{name}:{bad['line_no'][0]}: occupation code {bad['code'][0]} is not one of 0..{len(ML1M_OCCUPATIONS) - 1}")
        df = df.with_columns(codes.alias("code"))
        occupation = pl.col("code").replace_strict(list(range(len(ML1M_OCCUPATIONS))), list(ML1M_OCCUPATIONS))
    _unique_ids(df, "user_id", "user id", name)
    return df.select(
        "user_id", get["gender"].alias("gender"), "age", occupation.cast(pl.String).alias("occupation"),
        get["zip"].alias("zip"),
    ).sort("user_id")


def read_tags(layout: Layout) -> pl.DataFrame | None:
    """tags (user_id i32, item_id i32, tag, timestamp i64) in file order, or None if absent."""
    path = layout.files.get("tags")
    if path is None:
        return None
    name = path.name
    if path.suffix == ".dat":  # UserID::MovieID::Tag::Timestamp; a tag may itself hold '::'
        df = _split(_lines(path), "::", 4, name, exact=False)
        n = pl.col("parts").list.len()
        fields = {
            "user": pl.col("parts").list.get(0), "item": pl.col("parts").list.get(1),
            "tag": pl.col("parts").list.slice(2, n - 3).list.join("::"), "ts": pl.col("parts").list.last(),
        }
        labels = ("user id", "item id", "timestamp")
    else:
        df = _read_csv_strings(path, ("userId", "movieId", "tag", "timestamp"))
        fields = {"user": pl.col("userId"), "item": pl.col("movieId"), "tag": pl.col("tag"), "ts": pl.col("timestamp")}
        labels = ("userId", "movieId", "timestamp")
    out = pl.DataFrame({
        "user_id": _number(df, fields["user"], pl.Int32, labels[0], name),
        "item_id": _number(df, fields["item"], pl.Int32, labels[1], name),
        "tag": df.select(fields["tag"].str.strip_chars()).to_series(),
        "timestamp": _number(df, fields["ts"], pl.Int64, labels[2], name),
    })
    return out.filter(pl.col("tag").is_not_null() & (pl.col("tag") != ""))
