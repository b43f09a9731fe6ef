"""`recsys download`: real HTTP on 127.0.0.1, local mirrors, checksums, unsafe archives and failures."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import socket
import stat
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys_cli.cli.app import app
from recsys_cli.data import download as download_mod
from recsys_cli.data.download import DownloadResult, download, parse_md5_sidecar
from recsys_cli.data.registry import RELEASES, get_release
from recsys_cli.errors import ChecksumError, UsageError

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirror"
REAL_ZIP = MIRROR / "ml-100k.zip"
FAKE_MEMBERS = {
    "ml-100k/": b"",
    "ml-100k/u.data": b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
    "ml-100k/u.item": b"242|Kolya (1996)|24-Jan-1997||http://x|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_DOWNLOAD_BACKOFF", "0")
    monkeypatch.setenv("RECSYS_NO_PROGRESS", "1")
    for var in ("RECSYS_MIRROR", "RECSYS_DATA_DIR", "RECSYS_MAX_UNPACKED_BYTES"):
        monkeypatch.delenv(var, raising=False)


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def _serving(handler) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable]:
    """serve(folder) -> base URL of an http.server on 127.0.0.1; serve(handler_class) for custom ones."""
    with ExitStack() as stack:

        def start(what) -> str:
            handler = partial(_QuietFiles, directory=str(what)) if isinstance(what, Path) else what
            return stack.enter_context(_serving(handler))

        yield start


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def error_line(result) -> str:
    """The one `error: ...` line, which comes last on stderr after any progress log lines."""
    return result.stderr.strip().splitlines()[-1]


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_zip(path: Path, members: dict[str, bytes], *, symlink: tuple[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink[0])
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, symlink[1])
    return path


def fake_mirror(folder: Path, members: dict[str, bytes] | None = None, *, name: str = "ml-100k",
                sidecar: str | None = "bsd", **kw) -> Path:
    """A mirror folder with NAME.zip and (unless sidecar=None) a NAME.zip.md5 in the given format."""
    zip_path = make_zip(folder / f"{name}.zip", FAKE_MEMBERS if members is None else members, **kw)
    digest = md5_of(zip_path)
    if sidecar == "bsd":
        (folder / f"{name}.zip.md5").write_text(f"MD5 ({name}.zip) = {digest}\n")
    elif sidecar == "gnu":
        (folder / f"{name}.zip.md5").write_text(f"{digest}  {name}.zip\n")
    return folder


def raw_leftovers(data: Path) -> list[str]:
    raw = data / "raw"
    return sorted(p.name for p in raw.iterdir()) if raw.exists() else []


# --- registry -------------------------------------------------------------------------------


def test_registry_lists_every_release_with_url_folder_and_layout() -> None:
    assert list(RELEASES) == [
        "ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest",
    ]
    ml10 = get_release("ml-10m")
    assert ml10.folder == "ml-10M100K" and ml10.layout == "ml-10m"
    assert ml10.url == "https://files.grouplens.org/datasets/movielens/ml-10m.zip"
    assert ml10.md5_url == "https://files.grouplens.org/datasets/movielens/ml-10m.zip.md5"
    assert get_release("ml-100k").md5 == "0e33842e24a9c977be4e0107933c0723"
    assert get_release("ml-1m").layout == "ml-1m" and get_release("ml-25m").layout == "csv"
    assert get_release("ml-latest").md5 is None  # changes over time: never pinned
    with pytest.raises(UsageError, match="ml-latest-small"):
        get_release("ml-5k")


def test_unknown_dataset_exits_2_listing_valid_names(tmp_path: Path) -> None:
    result = run("download", "ml-5k", "--data-dir", tmp_path)
    assert result.exit_code == 2
    assert error_line(result).startswith("error: unknown dataset 'ml-5k'")
    for name in RELEASES:
        assert name in result.stderr


# --- sidecars -------------------------------------------------------------------------------

HASH = "0e33842e24a9c977be4e0107933c0723"


@pytest.mark.parametrize(
    "text",
    [
        f"MD5 (ml-100k.zip) = {HASH}\n",
        f"{HASH}  ml-100k.zip\n",
        f"{HASH} *ml-100k.zip",
        f"{HASH}\n",
        f"  {HASH.upper()}  ",
        f"MD5(ml-100k.zip)= {HASH}",
    ],
)
def test_both_sidecar_formats_parse(text: str) -> None:
    assert parse_md5_sidecar(text) == HASH


@pytest.mark.parametrize("text", ["", "not a hash", "0e33842e  short", f"SHA1 (x) = {HASH}"])
def test_unreadable_sidecar_is_a_checksum_error(text: str) -> None:
    with pytest.raises(ChecksumError, match="cannot read an md5"):
        parse_md5_sidecar(text)


# --- end to end over HTTP -------------------------------------------------------------------


def test_end_to_end_real_ml100k_over_http(serve, tmp_path: Path) -> None:
    if not REAL_ZIP.is_file():
        pytest.skip(f"shared MovieLens mirror not found at {MIRROR}")
    url = serve(MIRROR)
    data = tmp_path / "data"
    result = run("download", "ml-100k", "--mirror", url, "--data-dir", data, "--json")
    assert result.exit_code == 0, result.output
    target = data / "raw" / "ml-100k"
    assert len((target / "u.data").read_bytes().splitlines()) == 100_000
    record = json.loads((target / "download.json").read_text())
    # The shared mirror holds a repack of ml-100k (md5 66678d6f...), not GroupLens's byte-identical
    # zip (0e33842e...); its own sidecar is what it is verified against.
    sidecar_md5 = parse_md5_sidecar((MIRROR / "ml-100k.zip.md5").read_text())
    assert record["md5"] == sidecar_md5 == md5_of(REAL_ZIP)
    assert record["sha256"] == hashlib.sha256(REAL_ZIP.read_bytes()).hexdigest()
    assert record["bytes"] == REAL_ZIP.stat().st_size
    assert record["url"] == url + "ml-100k.zip" and record["source"] == "mirror"
    assert record["verified"] is True and record["dataset"] == "ml-100k"
    assert json.loads(result.stdout)["md5"] == record["md5"]
    assert raw_leftovers(data) == ["ml-100k"]

    again = run("download", "ml-100k", "--mirror", url, "--data-dir", data)
    assert again.exit_code == 0
    assert "already present" in again.stderr and again.stdout == ""

    (target / "marker").write_text("old")
    forced = run("download", "ml-100k", "--mirror", url, "--data-dir", data, "--force")
    assert forced.exit_code == 0, forced.output
    assert "downloaded ml-100k" in forced.stderr
    assert not (target / "marker").exists() and (target / "u.data").is_file()
    assert raw_leftovers(data) == ["ml-100k"]


def test_http_mirror_with_md5sum_style_sidecar(serve, tmp_path: Path) -> None:
    url = serve(fake_mirror(tmp_path / "mirror", sidecar="gnu"))
    data = tmp_path / "data"
    result = run("download", "ml-100k", "--mirror", url, "--data-dir", data)
    assert result.exit_code == 0, result.output
    assert (data / "raw" / "ml-100k" / "u.data").read_bytes() == FAKE_MEMBERS["ml-100k/u.data"]


def test_library_api_reports_bytes_to_progress(serve, tmp_path: Path) -> None:
    mirror = fake_mirror(tmp_path / "mirror")
    url = serve(mirror)

    class Recorder:
        def __init__(self) -> None:
            self.starts: list[tuple[int | None, str]] = []
            self.advanced = 0
            self.lines: list[str] = []

        def start(self, total, description=""):
            self.starts.append((total, description))

        def advance(self, n=1, **info):
            self.advanced += n

        def log(self, message):
            self.lines.append(message)

        def close(self):
            pass

    rec = Recorder()
    size = (mirror / "ml-100k.zip").stat().st_size
    result = download("ml-100k", data_dir=tmp_path / "data", mirror=url, progress=rec)
    assert isinstance(result, DownloadResult) and not result.already_present
    assert result.path == tmp_path / "data" / "raw" / "ml-100k"
    assert (result.md5, result.bytes) == (md5_of(mirror / "ml-100k.zip"), size)
    assert rec.starts == [(size, "downloading ml-100k.zip"), (size, "verifying ml-100k.zip")]
    assert rec.advanced == 2 * size  # once while downloading, once while hashing
    again = download("ml-100k", data_dir=tmp_path / "data", mirror=url, progress=rec)
    assert again.already_present and again.md5 == result.md5 and again.sha256 == result.sha256


# --- local sources --------------------------------------------------------------------------


def test_mirror_folder_from_env_and_data_dir_from_env(tmp_path: Path, monkeypatch) -> None:
    mirror = fake_mirror(tmp_path / "mirror")
    monkeypatch.setenv("RECSYS_MIRROR", str(mirror))
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "envdata"))
    result = run("download", "ml-100k")
    assert result.exit_code == 0, result.output
    target = tmp_path / "envdata" / "raw" / "ml-100k"
    assert (target / "u.item").read_bytes() == FAKE_MEMBERS["ml-100k/u.item"]
    record = json.loads((target / "download.json").read_text())
    assert record["source"] == "mirror" and record["url"] == str(mirror / "ml-100k.zip")
    assert record["md5"] == md5_of(mirror / "ml-100k.zip")


def test_file_url_mirror_and_ml10m_folder_name(tmp_path: Path) -> None:
    members = {"ml-10M100K/ratings.dat": b"1::122::5::838985046\n", "ml-10M100K/movies.dat": b"122::Boomerang::Comedy\n"}
    mirror = fake_mirror(tmp_path / "mirror", members, name="ml-10m")
    result = run("download", "ml-10m", "--mirror", mirror.as_uri(), "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "raw" / "ml-10m" / "ratings.dat").read_bytes() == b"1::122::5::838985046\n"


def test_from_zip_uses_its_sidecar(tmp_path: Path) -> None:
    zip_path = fake_mirror(tmp_path / "zips") / "ml-100k.zip"
    result = run("download", "ml-100k", "--from-zip", zip_path, "--data-dir", tmp_path / "data", "-f", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["source"] == "zip" and out["md5"] == md5_of(zip_path) and out["already_present"] is False
    assert (tmp_path / "data" / "raw" / "ml-100k" / "u.data").is_file()


def test_from_zip_without_sidecar_is_checked_against_pinned_md5(tmp_path: Path) -> None:
    zip_path = fake_mirror(tmp_path / "zips", sidecar=None) / "ml-100k.zip"
    result = run("download", "ml-100k", "--from-zip", zip_path, "--data-dir", tmp_path / "data")
    assert result.exit_code == 4
    assert "expected 0e33842e24a9c977be4e0107933c0723" in result.stderr
    assert raw_leftovers(tmp_path / "data") == []
    assert zip_path.is_file()  # the user's own zip is never deleted


def test_no_checksum_at_all_is_recorded_with_a_warning(tmp_path: Path) -> None:
    members = {"ml-latest-small/ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"}
    mirror = fake_mirror(tmp_path / "mirror", members, name="ml-latest-small", sidecar=None)
    result = run("download", "ml-latest-small", "--mirror", mirror, "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert "warning: no checksum available" in result.stderr
    record = json.loads((tmp_path / "data" / "raw" / "ml-latest-small" / "download.json").read_text())
    assert record["verified"] is False and record["md5"] == md5_of(mirror / "ml-latest-small.zip")


def test_existing_folder_without_record_is_not_replaced_without_force(tmp_path: Path) -> None:
    target = tmp_path / "data" / "raw" / "ml-100k"
    target.mkdir(parents=True)
    (target / "u.data").write_text("mine")
    result = run("download", "ml-100k", "--mirror", fake_mirror(tmp_path / "m"), "--data-dir", tmp_path / "data")
    assert result.exit_code == 3 and "--force" in result.stderr
    assert (target / "u.data").read_text() == "mine"


# --- checksum and archive failures ----------------------------------------------------------


def _corrupt(mirror: Path, name: str = "ml-100k") -> None:
    zip_path = mirror / f"{name}.zip"
    raw = bytearray(zip_path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF  # one flipped byte; the sidecar still has the original md5
    zip_path.write_bytes(bytes(raw))


def test_corrupted_zip_is_refused_and_nothing_is_left(serve, tmp_path: Path) -> None:
    mirror = fake_mirror(tmp_path / "mirror")
    _corrupt(mirror)
    data = tmp_path / "data"
    result = run("download", "ml-100k", "--mirror", serve(mirror), "--data-dir", data)
    assert result.exit_code == 4
    assert error_line(result).startswith("error: ml-100k.zip from http://127.0.0.1:")
    assert "the download was deleted" in result.stderr
    assert raw_leftovers(data) == []


def test_force_keeps_the_old_download_when_the_new_one_fails(tmp_path: Path) -> None:
    good = fake_mirror(tmp_path / "good")
    data = tmp_path / "data"
    assert run("download", "ml-100k", "--mirror", good, "--data-dir", data).exit_code == 0
    before = (data / "raw" / "ml-100k" / "download.json").read_text()
    bad = fake_mirror(tmp_path / "bad", {"ml-100k/u.data": b"other\n"})
    _corrupt(bad)
    result = run("download", "ml-100k", "--mirror", bad, "--data-dir", data, "--force")
    assert result.exit_code == 4
    assert (data / "raw" / "ml-100k" / "download.json").read_text() == before
    assert raw_leftovers(data) == ["ml-100k"]


@pytest.mark.parametrize(
    ("members", "symlink", "message"),
    [
        ({"ml-100k/u.data": b"x", "ml-100k/../../evil.txt": b"owned"}, None, "'..'"),
        ({"ml-100k/u.data": b"x", "/tmp/evil.txt": b"owned"}, None, "absolute path"),
        ({"ml-100k/u.data": b"x"}, ("ml-100k/evil", "/etc/passwd"), "symlink"),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_unsafe_archives_are_refused(tmp_path: Path, members, symlink, message) -> None:
    mirror = fake_mirror(tmp_path / "mirror", members, symlink=symlink)
    names = zipfile.ZipFile(mirror / "ml-100k.zip").namelist()
    assert set(members) | ({symlink[0]} if symlink else set()) == set(names)  # stored as written
    data = tmp_path / "data"
    result = run("download", "ml-100k", "--mirror", mirror, "--data-dir", data)
    assert result.exit_code == 6
    assert message in result.stderr
    assert raw_leftovers(data) == []
    assert not (tmp_path / "evil.txt").exists() and not (data / "evil.txt").exists()


def test_archive_expanding_past_the_cap_is_refused(tmp_path: Path, monkeypatch) -> None:
    mirror = fake_mirror(tmp_path / "mirror", {"ml-100k/u.data": b"0" * 50_000})
    assert (mirror / "ml-100k.zip").stat().st_size < 1_000  # compresses >50x
    monkeypatch.setenv("RECSYS_MAX_UNPACKED_BYTES", "10000")
    data = tmp_path / "data"
    result = run("download", "ml-100k", "--mirror", mirror, "--data-dir", data)
    assert result.exit_code == 6
    assert "expands to 50,000 bytes, over the 10,000-byte limit" in result.stderr
    assert raw_leftovers(data) == []
    monkeypatch.delenv("RECSYS_MAX_UNPACKED_BYTES")  # the default cap lets a small archive through
    assert run("download", "ml-100k", "--mirror", mirror, "--data-dir", data).exit_code == 0


def test_disk_full_while_unpacking_is_reported_and_cleaned_up(tmp_path: Path, monkeypatch) -> None:
    def full(archive: Path, into: Path, cap) -> None:
        (into / "ml-100k").mkdir()
        (into / "ml-100k" / "u.data").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download_mod, "_extract", full)
    data = tmp_path / "data"
    result = run("download", "ml-100k", "--mirror", fake_mirror(tmp_path / "m"), "--data-dir", data)
    assert result.exit_code == 8
    assert error_line(result).startswith("error: disk full while writing under")
    assert raw_leftovers(data) == []


# --- network failures -----------------------------------------------------------------------


def _dropping_handler(payload: bytes, *, resume: bool):
    """Sends half of `payload` under a full Content-Length, then hangs up; with resume, honours Range."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.endswith(".md5"):
                self.send_error(404)
                return
            seen.append(self.headers.get("Range"))
            start = int(self.headers["Range"][6:-1]) if resume and self.headers.get("Range") else 0
            if start:
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(payload) - start))
            self.end_headers()
            self.wfile.write(payload[start:] if start else payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True

    return Handler, seen


def test_connection_dropped_mid_file_leaves_nothing(serve, tmp_path: Path) -> None:
    handler, seen = _dropping_handler(b"z" * 40_000, resume=False)
    data = tmp_path / "data"
    result = run("download", "ml-100k", "--mirror", serve(handler), "--data-dir", data, "--retries", "2")
    assert result.exit_code == 5
    assert "tried 3 times" in result.stderr and "--mirror" in result.stderr
    assert len(seen) == 3
    assert raw_leftovers(data) == []  # no dataset, no .part, no temp folder


def test_dropped_download_resumes_with_a_range_request(serve, tmp_path: Path, monkeypatch) -> None:
    payload = bytes(range(256)) * 40
    zip_bytes = (fake_mirror(tmp_path / "m", {"ml-100k/u.data": payload}) / "ml-100k.zip").read_bytes()
    handler, seen = _dropping_handler(zip_bytes, resume=True)
    digest = hashlib.md5(zip_bytes).hexdigest()
    # This server has no sidecar, so the pinned md5 is what the zip is checked against.
    monkeypatch.setitem(RELEASES, "ml-100k", dataclasses.replace(RELEASES["ml-100k"], md5=digest))
    data = tmp_path / "data"
    result = download("ml-100k", data_dir=data, mirror=serve(handler), retries=1, backoff=0.0)
    assert seen == [None, f"bytes={len(zip_bytes) // 2}-"]
    assert (result.md5, result.bytes) == (digest, len(zip_bytes))
    assert (data / "raw" / "ml-100k" / "u.data").read_bytes() == payload
    assert raw_leftovers(data) == ["ml-100k"]


def test_unreachable_source_suggests_mirror(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = tmp_path / "data"
    result = run("download", "ml-100k", "--mirror", f"http://127.0.0.1:{port}/", "--data-dir", data,
                 "--retries", "1", "--timeout", "5")
    assert result.exit_code == 5
    assert error_line(result).startswith(f"error: cannot download http://127.0.0.1:{port}/")
    assert "use --mirror URL|DIR" in result.stderr
    assert raw_leftovers(data) == []


def test_missing_file_on_http_mirror_is_a_network_error(serve, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    data = tmp_path / "data"
    result = run("download", "ml-1m", "--mirror", serve(tmp_path / "empty"), "--data-dir", data)
    assert result.exit_code == 5 and "HTTP 404" in result.stderr
    assert raw_leftovers(data) == []


def test_official_source_fetches_the_sidecar_when_nothing_is_pinned(serve, tmp_path: Path, monkeypatch) -> None:
    from recsys_cli.data import registry

    members = {"ml-32m/ratings.csv": b"userId,movieId,rating,timestamp\n1,17,4.0,944249077\n"}
    grouplens = fake_mirror(tmp_path / "grouplens", members, name="ml-32m", sidecar="bsd")
    monkeypatch.setattr(registry, "BASE_URL", serve(grouplens).rstrip("/"))
    data = tmp_path / "data"
    result = run("download", "ml-32m", "--data-dir", data)
    assert result.exit_code == 0, result.output
    record = json.loads((data / "raw" / "ml-32m" / "download.json").read_text())
    assert record["source"] == "official" and record["checksum_from"] == "official sidecar"
    assert record["md5"] == md5_of(grouplens / "ml-32m.zip") and record["verified"] is True


def test_rich_byte_bar_when_a_person_watches(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("recsys_cli.settings.show_progress", lambda: True)
    result = run("download", "ml-100k", "--mirror", fake_mirror(tmp_path / "m"), "--data-dir", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert "verifying ml-100k.zip" in result.stderr and "downloaded ml-100k" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--timeout", "-5"], "error: --timeout must be more than 0 and at most 3600 seconds, got -5\n"),
    (["--timeout", "0"], "error: --timeout must be more than 0 and at most 3600 seconds, got 0\n"),
    (["--retries", "1000000000"], "error: --retries must be between 0 and 20, got 1000000000\n"),
    (["--retries", "-1"], "error: --retries must be between 0 and 20, got -1\n"),
])
def test_network_limits_are_checked_before_any_attempt(tmp_path: Path, args, message) -> None:
    """A negative timeout was a ValueError traceback after the first attempt; a huge --retries retried for ever."""
    data = tmp_path / "data"
    result = run("download", "ml-1m", "--mirror", "http://127.0.0.1:1/", *args, "--data-dir", data)
    assert result.exit_code == 2 and result.stderr == message
    assert raw_leftovers(data) == []
