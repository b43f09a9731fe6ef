"""Tiny MovieLens folders in each exact GroupLens layout, with the same content in every one.

`write_layout(kind, root)` writes ml-100k/, ml-1m/, ml-10M100K/ or a CSV release folder under
`root` and returns it. Every layout holds the same 8 movies, 4 users and 14 ratings (whole
stars in ml-100k/ml-1m, some half stars in ml-10m/CSV); `duplicates=True` adds two repeated
(user, item) pairs, one newer and one older than the original. `expected_ratings(kind)` gives
the processed rows in the contract's order (user, timestamp, item).
"""

from __future__ import annotations

import csv
from pathlib import Path

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)

# (id, title as GroupLens writes it, genres); movie 6 has no genre, 7 and 8 are never rated.
MOVIES = (
    (1, "Toy Story (1995)", ("Animation", "Children's", "Comedy")),
    (2, "Shawshank Redemption, The (1994)", ("Drama",)),
    (3, "Misérables, Les (1995)", ("Drama", "Musical")),
    (4, "City of Lost Children, The (Cité des enfants perdus, La) (1995)", ("Adventure", "Drama", "Fantasy", "Mystery", "Sci-Fi")),
    (5, "Star Wars: Episode IV - A New Hope (1977)", ("Action", "Adventure", "Sci-Fi")),
    (6, "unknown", ()),
    (7, "Unrated Movie (2001)", ("Comedy",)),
    (8, "Fawlty Towers (1975-1979)", ("Comedy",)),
)
# What items.parquet must hold: (item_id, title, year, genres).
EXPECTED_ITEMS = (
    (1, "Toy Story", 1995, ["Animation", "Children's", "Comedy"]),
    (2, "Shawshank Redemption, The", 1994, ["Drama"]),
    (3, "Misérables, Les", 1995, ["Drama", "Musical"]),
    (4, "City of Lost Children, The (Cité des enfants perdus, La)", 1995, ["Adventure", "Drama", "Fantasy", "Mystery", "Sci-Fi"]),
    (5, "Star Wars: Episode IV - A New Hope", 1977, ["Action", "Adventure", "Sci-Fi"]),
    (6, "unknown", None, []),
    (7, "Unrated Movie", 2001, ["Comedy"]),
    (8, "Fawlty Towers", 1975, ["Comedy"]),
)

# ml-100k: id, age, gender, occupation, zip
ML100K_USERS = ((1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"),
                (3, 23, "M", "writer", "32067"), (4, 33, "F", "programmer", "10001"))
# ml-1m: id, gender, age bucket, occupation code, zip; and the occupation names codes map to
ML1M_USERS = ((1, "M", 25, 17, "85711"), (2, "F", 50, 0, "94043"), (3, "M", 18, 20, "32067"), (4, "F", 35, 12, "10001-4321"))
ML1M_OCCUPATIONS = {1: "technician/engineer", 2: "other", 3: "writer", 4: "programmer"}

# (user, item, rating, timestamp), in file order
RATINGS = (
    (1, 1, 5.0, 880000000), (1, 2, 3.0, 880000100), (1, 3, 4.0, 880000050), (1, 5, 2.0, 880000200),
    (2, 1, 4.0, 881000000), (2, 4, 5.0, 881000000), (2, 6, 1.0, 881000500),
    (3, 2, 5.0, 882000000), (3, 3, 3.0, 882000300), (3, 5, 4.0, 882000100), (3, 1, 2.0, 882000200),
    (4, 5, 5.0, 883000000), (4, 4, 3.0, 883000400), (4, 2, 4.0, 883000300),
)
HALF_STARS = {(1, 2): 3.5, (2, 6): 0.5, (3, 3): 2.5, (4, 4): 4.5}  # ml-10m and CSV releases
NEWER_DUPLICATE = (3, 5, 1.0, 882999999)  # written first, but newest: wins
OLDER_DUPLICATE = (1, 2, 1.0, 879999999)  # written last, but oldest: loses
TAGS = ((1, 1, "pixar", 880000010), (2, 4, "dark, surreal", 881000010), (3, 5, "space opera", 882000010))

N_RATINGS, N_USERS, N_ITEMS, N_RATED_ITEMS = 14, 4, 8, 6
FOLDERS = {"ml-100k": "ml-100k", "ml-1m": "ml-1m", "ml-10m": "ml-10M100K", "csv": "ml-latest-small"}
RATINGS_FILES = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "ml-10m": "ratings.dat", "csv": "ratings.csv"}


def half_stars(kind: str) -> bool:
    return kind in ("ml-10m", "csv")


def file_ratings(kind: str, duplicates: bool = False) -> list[tuple[int, int, float, int]]:
    """Rows as written to the ratings file, in file order."""
    rows = [(u, i, HALF_STARS.get((u, i), r) if half_stars(kind) else r, t) for u, i, r, t in RATINGS]
    return [NEWER_DUPLICATE, *rows, OLDER_DUPLICATE] if duplicates else rows


def expected_ratings(kind: str, duplicates: bool = False) -> list[tuple[int, int, float, int]]:
    """ratings.parquet rows: latest per (user, item), sorted by (user, timestamp, item)."""
    latest: dict[tuple[int, int], tuple[int, int, float, int]] = {}
    for row in file_ratings(kind, duplicates):
        key = (row[0], row[1])
        if key not in latest or row[3] >= latest[key][3]:
            latest[key] = row
    return sorted(latest.values(), key=lambda r: (r[0], r[3], r[1]))


def _num(r: float) -> str:
    return str(int(r)) if r == int(r) else str(r)


def _write(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes("".join(f"{line}\n" for line in lines).encode(encoding))


def write_ml100k(root: Path, duplicates: bool = False) -> Path:
    """ml-100k/: u.data (tab), u.item/u.user/u.genre (pipe, latin-1), u.info, u.occupation, u1..u5, ua, ub."""
    folder = Path(root) / FOLDERS["ml-100k"]
    folder.mkdir(parents=True)
    rows = file_ratings("ml-100k", duplicates)
    _write(folder / "u.data", [f"{u}\t{i}\t{_num(r)}\t{t}" for u, i, r, t in rows])
    items = []
    for mid, title, genres in MOVIES:
        flags = ["1" if g in genres or (g == "unknown" and not genres) else "0" for g in ML100K_GENRES]
        url = "" if title == "unknown" else f"http://us.imdb.com/M/title-exact?{title.replace(' ', '%20')}"
        date = "" if title == "unknown" else "01-Jan-1995"
        items.append("|".join([str(mid), title, date, "", url, *flags]))
    _write(folder / "u.item", items, "latin-1")
    _write(folder / "u.user", ["|".join(map(str, u)) for u in ML100K_USERS], "latin-1")
    _write(folder / "u.genre", [f"{g}|{k}" for k, g in enumerate(ML100K_GENRES)] + [""], "latin-1")
    _write(folder / "u.occupation", sorted({u[3] for u in ML100K_USERS}))
    _write(folder / "u.info", [f"{N_USERS} users", f"{N_ITEMS} items", f"{N_RATINGS} ratings"])
    unique = expected_ratings("ml-100k", duplicates)
    for k in range(1, 6):  # u1..u5: five disjoint test sets
        test = [r for n, r in enumerate(unique) if n % 5 == k - 1]
        _write(folder / f"u{k}.test", [f"{u}\t{i}\t{_num(r)}\t{t}" for u, i, r, t in test])
        _write(folder / f"u{k}.base", [f"{u}\t{i}\t{_num(r)}\t{t}" for u, i, r, t in unique if (u, i, r, t) not in test])
    for name, per_user in (("ua", 1), ("ub", 2)):  # ua/ub: a few ratings of every user held out
        test = [r for r in unique if [x for x in unique if x[0] == r[0]].index(r) < per_user]
        _write(folder / f"{name}.test", [f"{u}\t{i}\t{_num(r)}\t{t}" for u, i, r, t in test])
        _write(folder / f"{name}.base", [f"{u}\t{i}\t{_num(r)}\t{t}" for u, i, r, t in unique if (u, i, r, t) not in test])
    return folder


def _write_dat_movies(folder: Path, encoding: str) -> None:
    lines = [f"{mid}::{title}::{'|'.join(genres) or '(no genres listed)'}" for mid, title, genres in MOVIES]
    _write(folder / "movies.dat", lines, encoding)


def write_ml1m(root: Path, duplicates: bool = False) -> Path:
    """ml-1m/: ratings.dat, movies.dat, users.dat ('::' separated, latin-1)."""
    folder = Path(root) / FOLDERS["ml-1m"]
    folder.mkdir(parents=True)
    rows = file_ratings("ml-1m", duplicates)
    _write(folder / "ratings.dat", [f"{u}::{i}::{_num(r)}::{t}" for u, i, r, t in rows])
    _write_dat_movies(folder, "latin-1")
    _write(folder / "users.dat", ["::".join(map(str, u)) for u in ML1M_USERS], "latin-1")
    return folder


def write_ml10m(root: Path, duplicates: bool = False) -> Path:
    """ml-10M100K/: ratings.dat (half stars), movies.dat, tags.dat ('::' separated); no users."""
    folder = Path(root) / FOLDERS["ml-10m"]
    folder.mkdir(parents=True)
    rows = file_ratings("ml-10m", duplicates)
    _write(folder / "ratings.dat", [f"{u}::{i}::{_num(r)}::{t}" for u, i, r, t in rows])
    _write_dat_movies(folder, "utf-8")
    _write(folder / "tags.dat", [f"{u}::{i}::{tag}::{t}" for u, i, tag, t in TAGS])
    return folder


def write_csv_release(root: Path, duplicates: bool = False, name: str | None = None) -> Path:
    """A CSV release (ml-latest-small style): ratings.csv, movies.csv (quoted titles), tags.csv, links.csv."""
    folder = Path(root) / (name or FOLDERS["csv"])
    folder.mkdir(parents=True)
    rows = file_ratings("csv", duplicates)
    _write(folder / "ratings.csv", ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r:.1f},{t}" for u, i, r, t in rows])
    with open(folder / "movies.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        for mid, title, genres in MOVIES:
            writer.writerow([mid, title, "|".join(genres) or "(no genres listed)"])
    with open(folder / "tags.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["userId", "movieId", "tag", "timestamp"])
        writer.writerows(TAGS)
    _write(folder / "links.csv", ["movieId,imdbId,tmdbId"] + [f"{mid},{114709 + mid:07d},{861 + mid}" for mid, _, _ in MOVIES])
    return folder


WRITERS = {"ml-100k": write_ml100k, "ml-1m": write_ml1m, "ml-10m": write_ml10m, "csv": write_csv_release}


def write_layout(kind: str, root: Path, duplicates: bool = False) -> Path:
    """Write the fixture release of layout `kind` (ml-100k|ml-1m|ml-10m|csv) under `root`; returns its folder."""
    return WRITERS[kind](root, duplicates=duplicates)


def append_line(folder: Path, kind: str, line: str) -> int:
    """Append a raw line to the ratings file; returns its 1-based line number."""
    path = Path(folder) / RATINGS_FILES[kind]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    return len(path.read_text(encoding="utf-8").splitlines())
