"""Insights tables against hand-computed values on the 14-rating fixture release, and segment tests against scipy."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from itertools import product

import numpy as np
import polars as pl
import pytest
from fixtures_layouts import EXPECTED_ITEMS, RATINGS, write_layout
from scipy import stats

from recsys_cli.data.dataset import load_dataset
from recsys_cli.data.preprocess import preprocess
from recsys_cli.insights import segments as sg
from recsys_cli.insights import tables as tb
from recsys_cli.insights.build import Frames, compute_insights, load_frames


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """The ml-100k fixture release (4 users, 8 movies, 14 ratings) run through the real preprocess."""
    root = tmp_path_factory.mktemp("insights")
    preprocess(str(write_layout("ml-100k", root / "raw")), name="fx", data_dir=root / "data")
    frames = load_frames(load_dataset("fx", root / "data"))
    return frames, compute_insights(frames, top=3)


def rows(table: pl.DataFrame, key: str) -> dict:
    return {r[key]: r for r in table.iter_rows(named=True)}


def test_gini_and_top_share_match_the_definitions():
    x = np.array([0, 0, 1, 2, 2, 3, 3, 3])  # ratings per fixture movie
    brute = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())  # mean absolute difference form
    assert tb.gini(x) == pytest.approx(brute) == pytest.approx(0.375)
    assert tb.gini([5, 5, 5]) == pytest.approx(0.0)
    assert tb.gini([0, 0, 0, 9]) == pytest.approx(0.75)  # (n - 1) / n: one entity has everything
    assert tb.top_share(np.arange(1, 101), 0.10) == pytest.approx(sum(range(91, 101)) / 5050)
    assert tb.top_share([1, 9], 0.01) == pytest.approx(0.9)  # at least one entity
    assert math.isnan(tb.gini([]))


def test_ratings_tables_on_the_fixture(fx):
    _, ins = fx
    s = ins.summary
    assert (s["ratings"], s["users"], s["items"], s["rated_items"]) == (14, 4, 8, 6)
    assert s["sparsity"] == pytest.approx(1 - 14 / 32)
    assert s["mean_rating"] == pytest.approx(sum(r for _, _, r, _ in RATINGS) / 14)
    assert s["gini_items"] == pytest.approx(0.375)  # items: 0 0 1 2 2 3 3 3 (two never rated)
    assert s["gini_users"] == pytest.approx(1 / 14)  # users: 4 3 4 3
    assert s["top_1pct_items_share"] == s["top_10pct_items_share"] == pytest.approx(3 / 14)  # one item each
    assert s["items_under_5_share"] == 1.0 and s["users_under_20_share"] == 1.0
    dist = ins.tables["rating_distribution"]
    assert dist["rating"].to_list() == [1, 2, 3, 4, 5] and dist["ratings"].to_list() == [1, 2, 3, 4, 4]
    act = ins.tables["activity"].filter(pl.col("entity") == "item")
    assert dict(zip(act["bin"], act["entities"], strict=True)) == {"0": 2, "1": 1, "2-3": 5}
    assert act["ratings"].sum() == 14
    tail = ins.tables["long_tail"].filter(pl.col("entity") == "user")
    assert tail["ratings"].to_list() == [4, 4, 3, 3]
    assert tail["cumulative_share"].to_list() == pytest.approx([4 / 14, 8 / 14, 11 / 14, 1.0])


def test_top_items_and_damped_mean(fx):
    _, ins = fx
    by_count = ins.tables["top_items_by_count"]
    assert by_count["item_id"].to_list() == [1, 2, 5]  # three movies with 3 ratings, ties by id
    mu = 50 / 14
    item5 = rows(by_count, "item_id")[5]
    assert item5["mean_rating"] == pytest.approx(11 / 3)
    assert item5["damped_mean"] == pytest.approx((11 + 10 * mu) / (3 + 10))
    best = ins.tables["top_items_by_damped_mean"]
    expected = {}
    for item in {i for _, i, _, _ in RATINGS}:
        r = [x for _, i, x, _ in RATINGS if i == item]
        expected[item] = (sum(r) + 10 * mu) / (len(r) + 10)
    assert best["item_id"].to_list() == sorted(expected, key=lambda i: (-expected[i], i))[:3]
    assert best["title"].to_list()[0] == {row[0]: row[1] for row in EXPECTED_ITEMS}[best["item_id"][0]]


def test_genres_and_cooccurrence(fx):
    _, ins = fx
    drama = rows(ins.tables["genres"], "genre")["Drama"]  # movies 2, 3, 4
    ratings = [r for _, i, r, _ in RATINGS if i in (2, 3, 4)]
    assert (drama["items"], drama["ratings"]) == (3, 7)
    assert drama["share_of_ratings"] == pytest.approx(7 / 14)
    assert drama["mean_rating"] == pytest.approx(np.mean(ratings))
    half = 1.959964 * np.std(ratings, ddof=1) / math.sqrt(7)
    assert (drama["ci_low"], drama["ci_high"]) == pytest.approx((np.mean(ratings) - half, np.mean(ratings) + half))
    co = ins.tables["genre_cooccurrence"]
    p = {(r["genre_a"], r["genre_b"]): r["p_b_given_a"] for r in co.iter_rows(named=True)}
    assert p[("Adventure", "Sci-Fi")] == 1.0  # movies 4 and 5 have both
    assert p[("Drama", "Adventure")] == pytest.approx(1 / 3)  # of 2, 3, 4 only 4
    assert p[("Sci-Fi", "Drama")] == pytest.approx(1 / 2)
    assert p[("Comedy", "Children's")] == pytest.approx(1 / 3) and p[("Children's", "Comedy")] == 1.0
    assert p[("Action", "Drama")] == 0.0 and all(p[(g, g)] == 1.0 for g in ins.tables["genres"]["genre"])
    years = rows(ins.tables["release_years"], "year")
    assert (years[1995]["items"], years[1995]["ratings"]) == (3, 7)  # movies 1, 3, 4: 3 + 2 + 2 ratings
    assert years[1977]["mean_rating"] == pytest.approx(11 / 3)


def test_time_tables_match_datetime(fx):
    _, ins = fx
    when = [datetime.fromtimestamp(t, tz=timezone.utc) for _, _, _, t in RATINGS]
    wh = ins.tables["weekday_hour"]
    assert len(wh) == 168 and wh["ratings"].sum() == 14
    got = {(r["weekday"], r["hour"]): r["ratings"] for r in wh.iter_rows(named=True) if r["ratings"]}
    expected: dict = {}
    for d in when:
        expected[(d.isoweekday(), d.hour)] = expected.get((d.isoweekday(), d.hour), 0) + 1
    assert got == expected
    monthly = ins.tables["monthly"]
    for month in monthly.iter_rows(named=True):
        inside = [r for (_, _, r, _), d in zip(RATINGS, when, strict=True) if d.strftime("%Y-%m") == month["month"]]
        assert month["ratings"] == len(inside)
        if inside:
            assert month["mean_rating"] == pytest.approx(np.mean(inside))
    assert monthly["new_users"].sum() == 4
    assert ins.tables["user_tenure"]["users"].to_list() == [4, 0, 0, 0, 0, 0]  # each user rated within minutes


def test_tenure_bins_and_no_timestamps():
    day = 86400
    ratings = pl.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4], "item_id": [1, 2, 1, 2, 1, 2, 1],
                            "rating": [1.0] * 7, "timestamp": [0, 3 * day, 10, 400 * day, 5, 90 * day, 7]})
    tenure = tb.user_tenure(ratings)
    assert dict(zip(tenure["bin"], tenure["users"], strict=True)) == {
        "same day": 1, "1-7 days": 1, "8-30 days": 0, "1-3 months": 1, "3-12 months": 0, "over a year": 1}
    assert not tb.has_timestamps(ratings.with_columns(timestamp=pl.lit(0, pl.Int64)))
    items = pl.DataFrame({"item_id": [1, 2], "title": ["a", "b"], "genres": [["Drama"], []]})
    ins = compute_insights(Frames("x", ratings.with_columns(timestamp=pl.lit(0, pl.Int64)), items))
    assert "monthly" not in ins.tables and "segment_lift" not in ins.tables and ins.summary["has_timestamps"] is False


def test_tags_normalised_and_per_genre():
    tags = pl.DataFrame({"user_id": [1, 2, 3, 1, 2], "item_id": [1, 1, 2, 2, 3],
                         "tag": ["Pixar", " pixar ", "dark  comedy", "Dark Comedy", "twist"], "timestamp": [0] * 5})
    items = pl.DataFrame({"item_id": [1, 2, 3], "genres": [["Animation"], ["Comedy"], ["Comedy", "Thriller"]]})
    top = tb.top_tags(tags)
    assert top.select("tag", "applications", "items", "users").rows() == [("dark comedy", 2, 1, 2), ("pixar", 2, 1, 2),
                                                                          ("twist", 1, 1, 1)]
    per = tb.tags_by_genre(tags, items)
    assert per.filter(pl.col("genre") == "Comedy").select("rank", "tag", "applications").rows() == [
        (1, "dark comedy", 2), (2, "twist", 1)]


def _segment_frames():
    """7 users, 3 occupations; movie 1 Sci-Fi, 2 Drama, 3 Sci-Fi|Drama."""
    items = pl.DataFrame({"item_id": [1, 2, 3], "title": ["s", "d", "sd"], "genres": [["Sci-Fi"], ["Drama"], ["Drama", "Sci-Fi"]]})
    rated = {1: [1, 1, 3], 2: [1, 3], 3: [1, 1, 1, 2], 4: [2, 2, 3], 5: [2, 1], 6: [2, 2, 2, 3], 7: [1, 2]}
    ratings = pl.DataFrame([(u, i, 4.0, 0) for u, its in rated.items() for i in its],
                           schema={"user_id": pl.Int32, "item_id": pl.Int32, "rating": pl.Float32, "timestamp": pl.Int64},
                           orient="row")
    users = pl.DataFrame({"user_id": list(range(1, 8)), "gender": ["F", "M", "F", "M", "M", "F", "M"],
                          "age": [20, 22, 30, 40, 45, 60, 17],
                          "occupation": ["engineer"] * 3 + ["writer"] * 2 + ["artist"] * 2})
    genres = {1: {"Sci-Fi"}, 2: {"Drama"}, 3: {"Drama", "Sci-Fi"}}
    share = {(u, g): sum(g in genres[i] for i in its) / len(its) for u, its in rated.items() for g in ("Sci-Fi", "Drama")}
    return ratings, items, users, share


def test_segment_lift_and_p_value_against_scipy():
    ratings, items, users, share = _segment_frames()
    lift = sg.segment_lift(ratings, items, users, min_users=2, min_expected=0)
    row = lift.filter((pl.col("dimension") == "occupation") & (pl.col("segment") == "engineer") & (pl.col("genre") == "Sci-Fi")).row(0, named=True)
    a = [share[(u, "Sci-Fi")] for u in (1, 2, 3)]
    b = [share[(u, "Sci-Fi")] for u in (4, 5, 6, 7)]
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert (row["users"], row["other_users"], row["others"]) == (3, 4, "others")
    assert row["share"] == pytest.approx(np.mean(a)) and row["other_share"] == pytest.approx(np.mean(b))
    assert row["lift"] == pytest.approx(np.mean(a) / np.mean(b))
    assert row["t"] == pytest.approx(ref.statistic) and row["p_value"] == pytest.approx(ref.pvalue)
    se = math.sqrt(np.var(a, ddof=1) / (3 * np.mean(a) ** 2) + np.var(b, ddof=1) / (4 * np.mean(b) ** 2))
    assert row["lift_ci_low"] == pytest.approx(row["lift"] * math.exp(-1.959964 * se), rel=1e-6)
    # gender has two values: one test per genre (F vs M), never the mirrored M vs F
    gender = lift.filter(pl.col("dimension") == "gender")
    assert set(gender["segment"]) == {"F"} and set(gender["others"]) == {"M"}
    # Holm over every tested cell of the family, in any order
    p = lift["p_value"].to_numpy()
    ok = ~np.isnan(p)
    m = ok.sum()
    order = np.argsort(p[ok])
    expected = np.minimum(1, np.maximum.accumulate((m - np.arange(m)) * p[ok][order]))
    assert lift["p_holm"].to_numpy()[ok][order] == pytest.approx(expected)


def test_small_or_rare_cells_are_not_tested():
    ratings, items, users, _ = _segment_frames()
    lift = sg.segment_lift(ratings, items, users)  # defaults: 10 users a side
    assert lift["p_value"].null_count() == len(lift) and not lift["significant"].any()
    assert sg.statements(lift) == []
    assert [sg.age_band(a) for a in (1, 17, 18, 24, 25, 44, 45, 50, 56, 73)] == [
        "under 18", "under 18", "18-24", "18-24", "25-34", "35-44", "45-49", "50-55", "56+", "56+"]


def _planted(effect: float, seed: int = 0):
    """300 users, a third engineers; engineers' ratings fall on Sci-Fi with probability 0.2 + effect, others 0.2."""
    rng = np.random.default_rng(seed)
    items = pl.DataFrame({"item_id": list(range(1, 41)), "title": [f"m{i}" for i in range(1, 41)],
                          "genres": [["Sci-Fi"] if i <= 8 else ["Drama"] for i in range(1, 41)]})
    occupations = ["engineer" if u % 3 == 0 else ("writer" if u % 3 == 1 else "artist") for u in range(300)]
    rows = []
    for u, occ in enumerate(occupations):
        p = 0.2 + (effect if occ == "engineer" else 0.0)
        for _ in range(30):
            scifi = rng.random() < p
            rows.append((u + 1, int(rng.integers(1, 9) if scifi else rng.integers(9, 41)), 4.0, 0))
    ratings = pl.DataFrame(rows, schema={"user_id": pl.Int32, "item_id": pl.Int32, "rating": pl.Float32,
                                         "timestamp": pl.Int64}, orient="row").unique(["user_id", "item_id"])
    users = pl.DataFrame({"user_id": list(range(1, 301)), "gender": ["F", "M"] * 150, "age": [30] * 300,
                          "occupation": occupations})
    return ratings, items, users


def test_planted_preference_is_found_and_no_effect_gives_no_statement():
    lift = sg.segment_lift(*_planted(0.15))
    found = sg.statements(lift)
    assert any(f.startswith("users with occupation engineer rate Sci-Fi more often than other users") for f in found)
    row = lift.filter((pl.col("segment") == "engineer") & (pl.col("genre") == "Sci-Fi")).row(0, named=True)
    assert row["significant"] and row["lift"] > 1.25 and row["lift_ci_low"] > 1.1
    assert not lift.filter(pl.col("dimension") == "gender")["significant"].any()  # gender was not planted
    for seed in range(3):  # no planted effect: Holm keeps the family quiet
        assert sg.statements(sg.segment_lift(*_planted(0.0, seed))) == []


def test_holm_is_the_abtest_one(monkeypatch):
    """Segments reuse abtest.statistics.holm (one implementation of the correction)."""
    from recsys_cli.abtest import statistics

    calls = []
    real = statistics.holm
    monkeypatch.setattr(statistics, "holm", lambda p: calls.append(np.asarray(p)) or real(p))
    ratings, items, users, _ = _segment_frames()
    lift = sg.segment_lift(ratings, items, users, min_users=2, min_expected=0)
    assert len(calls) == 1 and len(calls[0]) == len(lift)
    np.testing.assert_allclose(lift["p_holm"].to_numpy(), real(calls[0]))


@pytest.mark.parametrize("k", [1, 2])
def test_cooccurrence_is_conditional_probability_of_random_catalogue(k):
    rng = np.random.default_rng(k)
    names = ["A", "B", "C", "D"]
    flags = rng.random((60, 4)) < 0.4
    items = pl.DataFrame({"item_id": list(range(60)), "genres": [[g for g, f in zip(names, row, strict=True) if f] for row in flags]})
    co = tb.genre_cooccurrence(items)
    for a, b in product(range(4), range(4)):
        want = (flags[:, a] & flags[:, b]).sum() / flags[:, a].sum()
        got = co.filter((pl.col("genre_a") == names[a]) & (pl.col("genre_b") == names[b]))["p_b_given_a"].item()
        assert got == pytest.approx(want)
