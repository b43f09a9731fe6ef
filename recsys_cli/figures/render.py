"""The look (one theme) and the outputs (PNG, SVG, SVG text) of every figure; deterministic bytes."""

from __future__ import annotations

import functools
import io
import os
import tempfile
from pathlib import Path

from recsys_cli.errors import UsageError

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
SEQUENTIAL = "viridis"  # perceptually uniform, colour-blind safe
DIVERGING = "PuOr"  # ColorBrewer, colour-blind safe
SIZE = (8.0, 4.5)  # inches; at DPI 100 an 800 x 450 px PNG, readable at 1x on a laptop
DPI = 100
FORMATS = ("png", "svg")

THEME = {
    "font.family": "DejaVu Sans",  # shipped with matplotlib: same glyphs on every machine
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.constrained_layout.use": True,
    "svg.hashsalt": "recsys",  # fixed element ids: the same figure gives the same SVG bytes
    "svg.fonttype": "path",  # text as outlines: the SVG needs no font
    "image.cmap": SEQUENTIAL,
}


def require_matplotlib(option: str = "--plot") -> None:
    """UsageError (exit 2) with the install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        raise UsageError(f"{option} needs matplotlib, which is not installed: pip install 'recsys-cli[plot]'") from None


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def themed(builder):
    """Decorator: run a figure builder inside the theme (rcParams restored afterwards)."""

    @functools.wraps(builder)
    def wrapper(*args, **kwargs):
        plt = pyplot()
        with plt.rc_context(THEME):
            return builder(*args, **kwargs)

    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, size=SIZE, **kwargs):
    """(figure, axes) in the theme's size; call inside a @themed builder."""
    return pyplot().subplots(nrows, ncols, figsize=size, **kwargs)


def _metadata(fmt: str) -> dict:
    # No creation date in the SVG; PNG carries only the Software key matplotlib always writes.
    return {"Date": None} if fmt == "svg" else {}


def to_bytes(fig, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown figure format {fmt!r}; choose png or svg")
    buf = io.BytesIO()
    with pyplot().rc_context(THEME):
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=_metadata(fmt))
    return buf.getvalue()


def svg_text(fig) -> str:
    """The figure as an SVG document (for inlining into HTML)."""
    return to_bytes(fig, "svg").decode("utf-8")


def check_output_file(path, option: str) -> Path:
    """Before the work: `path` can take one output file (`--plot`, `--html`). A folder in its place is a
    usage error (exit 2); a folder that cannot be written (read-only, permissions, a file where a folder
    should be) is exit 7 naming the option. Missing folders are created when the file is written."""
    from recsys_cli.swap import check_writable

    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name")
    check_writable(path.parent, f"{option} folder")
    return path


def check_output_dir(path, option: str) -> Path:
    """Before the work: `path` can be (or become) a folder of outputs (`--out DIR`); exit 2 for a file in its
    place, exit 7 when it cannot be written."""
    from recsys_cli.swap import check_writable

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder")
    check_writable(path, f"{option} folder")
    return path


def _named(exc: OSError, path: Path) -> OSError:
    """The error of writing `path` naming `path` (the caller's file), not the hidden temporary one."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write through a temporary file beside `path` and one os.replace; usual permissions."""
    return write_all_atomic([(Path(path), data)])[0]


def write_all_atomic(files) -> list[Path]:
    """Write several (path, bytes) at once: every file goes to a temporary file beside its target first, and
    only when all are written are they moved into place (one os.replace each), so a failed or interrupted
    write (disk full, Ctrl-C) replaces none of them, leaves no file half-written and no temporary file behind."""
    files = [(Path(path), data) for path, data in files]
    umask = os.umask(0)
    os.umask(umask)
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            except OSError as exc:
                raise _named(exc, path) from None
            staged.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
            except OSError as exc:
                raise _named(exc, path) from None
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise _named(exc, path) from None
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [path for path, _ in files]


def save(fig, path, fmt: str | None = None) -> Path:
    """Write the figure to `path` (format from `fmt` or the suffix), atomically."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    return write_bytes_atomic(path, to_bytes(fig, fmt))


def close(fig) -> None:
    pyplot().close(fig)
