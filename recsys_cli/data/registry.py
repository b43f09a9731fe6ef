"""Every GroupLens MovieLens release: where it lives, its checksum, and how its files are laid out."""

from __future__ import annotations

from dataclasses import dataclass

from recsys_cli.errors import UsageError

BASE_URL = "https://files.grouplens.org/datasets/movielens"

# Layouts the readers understand (see data/LAYOUT.md).
LAYOUTS = ("ml-100k", "ml-1m", "ml-10m", "csv")


@dataclass(frozen=True)
class Release:
    """One MovieLens release as GroupLens publishes it."""

    name: str
    folder: str  # top folder inside the zip
    layout: str  # one of LAYOUTS
    size: str  # approximate size of the zip, for people
    description: str
    md5: str | None = None  # pinned md5 of the official zip; None where it changes or is not known

    @property
    def filename(self) -> str:
        return f"{self.name}.zip"

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.filename}"

    @property
    def md5_url(self) -> str:
        return f"{self.url}.md5"


# Pinned md5s are for frozen releases only; ml-latest* change over time, so their
# checksum comes from the official sidecar at download time.
RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        Release(
            "ml-100k", "ml-100k", "ml-100k", "5 MB",
            "100,000 ratings (1-5) from 943 users on 1,682 movies, with demographics (1998).",
            md5="0e33842e24a9c977be4e0107933c0723",
        ),
        Release(
            "ml-1m", "ml-1m", "ml-1m", "6 MB",
            "1 million ratings (1-5) from 6,040 users on 3,706 movies, with demographics (2003).",
            md5="c4d9eecfca2ab87c1945afe126590906",
        ),
        Release(
            "ml-10m", "ml-10M100K", "ml-10m", "63 MB",
            "10 million ratings (0.5-5) and 95,580 tags from 71,567 users on 10,681 movies (2009).",
            md5="ce571fd55effeba0271552578f2648bd",
        ),
        Release(
            "ml-20m", "ml-20m", "csv", "190 MB",
            "20 million ratings and 465,000 tags from 138,493 users on 27,278 movies (2015).",
            md5="cd245b17a1ae2cc31bb14903e1204af3",
        ),
        Release(
            "ml-25m", "ml-25m", "csv", "250 MB",
            "25 million ratings and 1 million tags from 162,541 users on 62,423 movies (2019).",
            md5="6b51fb2759a8657d3bfcbfc42b592ada",
        ),
        Release(
            "ml-32m", "ml-32m", "csv", "240 MB",
            "32 million ratings and 2 million tags from 200,948 users on 87,585 movies (2023).",
        ),
        Release(
            "ml-latest-small", "ml-latest-small", "csv", "1 MB",
            "About 100,000 ratings and 3,600 tags from 610 users on 9,700 movies; changes over time.",
        ),
        Release(
            "ml-latest", "ml-latest", "csv", "335 MB",
            "The full current MovieLens data (30M+ ratings, tag genome); changes over time.",
        ),
    )
}


def names() -> list[str]:
    """Names of every known release, smallest first."""
    return list(RELEASES)


def get_release(name: str) -> Release:
    """The release called `name`; UsageError listing the valid names for an unknown one."""
    release = RELEASES.get(name.strip().lower())
    if release is None:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(RELEASES)}")
    return release
