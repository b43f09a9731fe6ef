"""Inputs a notebook user gets wrong, found by walking docs/api.md: each is a recsys error naming the argument
(or a right answer), never a TypeError/KeyError from inside, and never a silently different question."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pytest

import recsys_cli as rs
from recsys_cli.errors import DataError, UsageError


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(1, 41):
        for i in rng.choice(30, 12, replace=False):
            rows.append((u, int(i) + 100, float(rng.integers(1, 6)), 1000 + len(rows)))
    return pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row")


@pytest.fixture(scope="module")
def data(frame):
    return rs.from_frame(frame, timestamp="timestamp")


@pytest.fixture(scope="module")
def parts(data):
    return data.split("random", test=0.2, seed=1)


@pytest.fixture(scope="module")
def model(parts):
    return rs.train("bias", parts[0], seed=1)


def test_abtest_stays_the_function_after_its_subpackage_is_imported():
    import recsys_cli.abtest.power  # noqa: F401 - what rs.abtest_plan and the first rs.abtest call do
    from recsys_cli.api import abtest

    rs.abtest_plan(0.1, mde=0.01)
    assert rs.abtest is abtest and callable(rs.abtest)  # it was the package recsys_cli.abtest: not callable
    from recsys_cli.abtest import experiment  # the subpackage itself is still importable

    assert experiment.__name__ == "recsys_cli.abtest.experiment"


@pytest.mark.parametrize("users, words", [
    (["1_0"], "user ids must be integers, got ['1_0']"),  # int() read it as user 10
    (["+1"], "user ids must be integers, got ['+1']"),
    (["\u0661"], "user ids must be integers, got ['\u0661']"),  # an Arabic-Indic digit one
    (True, "user ids must be integers, got booleans True; to pick rows by a condition, pass the ids it selects"),
    ([1, True], "user ids must be integers, got booleans [1, True]; to pick rows by a condition, pass the ids it selects"),
])
def test_ids_are_read_strictly(model, users, words):
    with pytest.raises(UsageError) as err:
        model.recommend(users, n=2)
    assert str(err.value) == words


def test_a_boolean_mask_is_not_a_list_of_ids(model, frame):
    mask = frame.to_pandas()["user_id"] == 3  # user ids 0 and 1 before: the mask's values
    with pytest.raises(UsageError, match=r"^user ids must be integers, got booleans "):
        model.recommend(mask, n=2)
    assert model.recommend([" 3", "3"], n=2)["user_id"].to_list() == [3, 3, 3, 3]  # digits with spaces still read


def test_predict_broadcasts_a_single_item_like_a_single_user(model):
    many_users = model.predict([1, 2, 3], 100)
    assert many_users.equals(model.predict([1, 2, 3], [100, 100, 100]))
    assert model.predict(1, [100, 101]).equals(model.predict([1, 1], [100, 101]))
    with pytest.raises(UsageError, match=r"^users and items differ in length \(2 vs 3\)$"):
        model.predict([1, 2], [100, 101, 102])


def test_fold_in_reads_a_pandas_series_and_names_a_list_of_items(model):
    as_dict = model.fold_in({100: 5, 101: 4}, n=3)
    assert model.fold_in(pd.Series({100: 5.0, 101: 4.0}), n=3).equals(as_dict)
    with pytest.raises(UsageError) as err:
        model.fold_in([100, 101], n=3)  # a TypeError before
    assert str(err.value) == "ratings must be a {item: rating} dict or (item, rating) pairs, e.g. {50: 5, 172: 4}"


def test_split_parts_where_one_dataset_is_expected(data, model):
    words = ("got a tuple of 2 split parts where one Dataset is expected; unpack the split first "
             "(train, test = data.split(...)) and pass one part")
    for call in (lambda: rs.train("bias", data.split("random")), lambda: rs.evaluate(model, data.split("random")),
                 lambda: rs.cross_validate("bias", data.split("random"), cv=2)):
        with pytest.raises(UsageError) as err:
            call()
        assert str(err.value) == words
    with pytest.raises(UsageError) as err:
        rs.train("bias", data.split("kfold", k=2))
    assert str(err.value).startswith("got a list of 2 split parts where one Dataset is expected")
    with pytest.raises(UsageError) as err:
        rs.train("bias", pd.Series([1, 2]))
    assert str(err.value) == ("from_frame takes a whole ratings table (DataFrame), got a Series (one column); "
                              "pass the DataFrame it came from")


@pytest.mark.parametrize("make, error, words", [
    (lambda f: rs.from_frame(f, user=None), UsageError, "user must name a column of the frame (a string), got None"),
    (lambda f: rs.from_frame(f.with_columns(user_id=pl.col("user_id") % 2 == 0)), DataError,
     "column 'user_id' (user ids) must hold integer ids; it holds Boolean"),
    (lambda f: rs.from_frame(f.with_columns(user_id=pl.format("+{}", "user_id"))), DataError,
     "column 'user_id' (user ids) must hold integer ids; found '+1' (480 such values)"),
    (lambda f: rs.from_frame([1, 2, 3]), DataError,
     "each row must be a (user_id, item_id, rating) tuple; got a row that is not a sequence"),
])
def test_bad_frame_arguments(frame, make, error, words):
    with pytest.raises(error) as err:
        make(frame)
    assert type(err.value) is error and str(err.value) == words


def test_string_ids_in_a_frame_read_like_integers(frame):
    as_text = rs.from_frame(frame.with_columns(pl.col("user_id").cast(pl.String)), timestamp="timestamp")
    assert as_text.ratings.equals(rs.from_frame(frame, timestamp="timestamp").ratings)


def test_leave_last_names_its_own_arguments(data):
    with pytest.raises(UsageError) as err:
        data.split("leave-last", last=0)
    assert str(err.value) == ("a leave-last split needs last >= 1 (test ratings per user) and val_last >= 0, "
                              "got last=0, val_last=0")  # it said k=0, val_k=0


def test_evaluate_takes_any_real_threshold(model, parts):
    at_float = rs.evaluate(model, parts[1], metrics="ranking", threshold=4.0).metrics
    assert rs.evaluate(model, parts[1], metrics="ranking", threshold=np.float32(4.0)).metrics == at_float
    with pytest.raises(UsageError, match=r"^the relevance threshold must be a finite number, got nan$"):
        rs.evaluate(model, parts[1], threshold=float("nan"))


def test_cv_and_model_lists(data):
    with pytest.raises(UsageError) as err:
        rs.cross_validate("bias", data, cv=2.0)
    assert str(err.value) == "cv (--cv) must be a whole number of folds, at least 2, got 2.0"  # "needs at least 2"
    listed = rs.compare(["bias", "popularity"], data, cv=2, metrics="ranking").to_frame()
    for models in (("bias", "popularity"), (m for m in ["bias", "popularity"]), pd.Series(["bias", "popularity"])):
        assert rs.compare(models, data, cv=2, metrics="ranking").to_frame().drop("fit_seconds").equals(
            listed.drop("fit_seconds"))
    pair = rs.cross_validate(("bias", {"reg_u": 5.0}), data, cv=2, metrics="rating")
    assert pair.params["reg_u"] == 5.0
    with pytest.raises(UsageError) as err:
        rs.compare([("bias", 3)], data, cv=2)
    assert str(err.value) == "a (name, params) model pair needs a dict of params, got ('bias', 3)"


def test_runs_are_named_by_strings(model, tmp_path):
    run = rs.save(model, "walk", artifacts_dir=tmp_path)
    assert rs.load_run(run) is run
    cases = [
        (lambda: rs.load_run(5, artifacts_dir=tmp_path),
         "load_run takes a saved run's name (a string such as 'svd-notebook'), got 5"),
        (lambda: rs.recommend(model, [1], artifacts_dir=tmp_path),
         "recommend takes a saved run (its name or rs.load_run(name)), not a model; ask the model itself "
         "(model.recommend(...), .predict(...), .similar_items(...)) or rs.save(model, name) first"),
        (lambda: rs.save(model, 5, artifacts_dir=tmp_path), "a run name is a string such as 'svd-notebook', got 5"),
        (lambda: rs.list_runs(limit=1.5, artifacts_dir=tmp_path), "limit must be a positive integer, got 1.5"),
        (lambda: rs.load_dataset(5), "load_dataset takes a processed dataset's name such as 'ml-100k', got 5"),
        (lambda: rs.bandit("walk", artifacts_dir=tmp_path),
         "runs must be a list of run names, e.g. ['svd-ml-100k', 'ials-ml-100k'], got one string 'walk'"),
        (lambda: rs.abtest_plan("0.1", mde=0.01), "baseline_ctr must be a number, got '0.1'"),
    ]
    for call, words in cases:
        with pytest.raises(UsageError) as err:
            call()
        assert str(err.value) == words
    assert rs.recommend(run, [1], n=2).to_frame().equals(model.recommend([1], n=2))


def test_a_frame_trained_run_asks_for_its_test_ratings(model, parts, tmp_path):
    rs.save(model, "from-frame", artifacts_dir=tmp_path)
    with pytest.raises(UsageError) as err:
        rs.evaluate("from-frame", artifacts_dir=tmp_path, data_dir=tmp_path / "data")
    assert str(err.value) == ("run 'from-frame' was trained on 'frame', which is not a processed dataset here, so its "
                              "test part is not stored; pass the held-out ratings: evaluate(run, test)")
    run = rs.load_run("from-frame", artifacts_dir=tmp_path)
    assert run.evaluate(parts[1], metrics="rating").metrics == rs.evaluate(model, parts[1], metrics="rating").metrics


def test_processed_dataset_calls_name_their_arguments(data, tmp_path):
    rs.generate("walk", ratings=600, users=30, items=40, seed=1, data_dir=tmp_path)
    walk = rs.preprocess("walk", data_dir=tmp_path)
    cases = [
        (lambda: walk.named_split(1),
         "a split is named by a string such as 'u1' or 'random', got 1; this dataset has kfold5, random, temporal, user"),
        (lambda: rs.preprocess("walk", name=5, data_dir=tmp_path), "name must be a string such as 'my-ratings', got 5"),
        (lambda: rs.train_run("bias", data, data_dir=tmp_path, artifacts_dir=tmp_path),
         "train_run takes a processed dataset's name such as 'ml-100k', got Dataset; "
         "for a Dataset in memory use rs.save(rs.train(model, data), name)"),
        (lambda: rs.train_run("bias", "walk", params=[1], data_dir=tmp_path, artifacts_dir=tmp_path),
         "params must be a dict of hyperparameters such as {'factors': 50}, got [1]"),
        (lambda: rs.tune("bias", data, grid={"reg_u": [5.0]}),
         "tune takes a processed dataset's name such as 'ml-100k' (it tunes on its stored ratings or split), "
         "got Dataset; for other data use rs.compare(...)"),
        (lambda: rs.tune("bias", "walk", grid={"reg_u": [5.0]}, cv=2.0, data_dir=tmp_path),
         "cv (--cv) must be a whole number of folds, at least 2, got 2.0"),
    ]
    for call, words in cases:
        with pytest.raises(UsageError) as err:
            call()
        assert str(err.value) == words
    assert not (tmp_path / "bias-walk").exists()  # nothing written half-way


def test_dataframe_metrics_read_ids_like_from_frame():
    true = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10], "rating": [5.0, 3.0, 4.0]})
    pred = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10], "prediction": [4.0, 3.0, 5.0]})
    assert rs.metrics.rmse(true, pred) == pytest.approx(math.sqrt(2 / 3))
    # float and text ids join the integer ones (a polars SchemaError before)
    assert rs.metrics.rmse(true.with_columns(pl.col("user_id").cast(pl.Float64)), pred) == pytest.approx(math.sqrt(2 / 3))
    assert rs.metrics.mae(true.with_columns(pl.col("item_id").cast(pl.String)), pred) == pytest.approx(2 / 3)
    with pytest.raises(DataError) as err:  # counted twice before: 0.866
        rs.metrics.rmse(pl.concat([true, true.head(1)]), pred)
    assert str(err.value) == "true has duplicated (user_id, item_id) pairs; keep one row per pair"

    recs = pl.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [10, 12, 13, 10], "score": [2.0, 1.0, 2.0, 1.0]})
    ndcg = (1 / (1 + 1 / math.log2(3)) + 1 / math.log2(3)) / 2
    assert rs.metrics.ndcg_at_k(true, recs, k=2) == pytest.approx(ndcg)
    with pytest.raises(DataError) as err:  # 10.5 was read as item 10: the same metrics as the integer frame
        rs.metrics.ranking(true.with_columns(pl.col("item_id").cast(pl.Float64) + 0.5), recs, k=2)
    assert str(err.value) == "true: column 'item_id' (item ids) must hold integer ids; found 10.5 (3 such values)"
    with pytest.raises(UsageError) as err:  # a KeyError before
        rs.metrics.ndcg_at_k(true, recs, k=[2])
    assert str(err.value) == ("k must be one positive integer, got [2]; for several cutoffs use "
                              "rs.metrics.ranking(true, pred, k=[...])")
    with pytest.raises(DataError) as err:
        rs.metrics.ranking(true, pl.concat([recs, recs]), k=2)
    assert str(err.value) == "pred recommends an item twice to a user (duplicated (user_id, item_id) pairs)"


def test_nothing_to_score_is_an_error_not_an_empty_result(model, tmp_path):
    foreign = rs.from_frame([(1, 5000, 3.0), (2, 5001, 5.0)])  # items the model never saw: no metric was computed
    for metrics in ("rating", "all"):
        with pytest.raises(DataError) as err:
            rs.evaluate(model, foreign, metrics=metrics)
        assert str(err.value) == ("none of the 2 test ratings is of an item in the model's catalogue (e.g. item "
                                  "5000); nothing to score: evaluate on ratings of the items the model was trained with")
    with pytest.raises(UsageError) as err:
        rs.evaluate(model, foreign, metrics=[])
    assert str(err.value) == ("metrics is an empty list; give names such as ['rmse', 'ndcg@10'], or 'all', "
                              "'rating' or 'ranking'")
    with pytest.raises(UsageError) as err:  # "" silently saved under the default name
        rs.save(model, "", artifacts_dir=tmp_path)
    assert str(err.value).startswith("invalid run name '': ")
    assert list(tmp_path.iterdir()) == []


def test_train_passes_frame_options_to_from_frame(frame):
    renamed = frame.rename({"user_id": "u", "item_id": "i", "rating": "r"})
    a = rs.train("bias", renamed, seed=1, user="u", item="i", rating="r", reg_u=5)
    b = rs.train("bias", rs.from_frame(frame), seed=1, reg_u=5)
    assert a.params["reg_u"] == 5
    np.testing.assert_array_equal(a.predict([1, 2], [100, 101])["prediction"].to_numpy(),
                                  b.predict([1, 2], [100, 101])["prediction"].to_numpy())


def test_frame_options_are_from_frames_and_no_models_parameter():
    import inspect

    from recsys_cli.api.data import from_frame
    from recsys_cli.api.model import FRAME_OPTIONS
    from recsys_cli.models.registry import get_model_class, model_names

    assert set(FRAME_OPTIONS) == set(inspect.signature(from_frame).parameters) - {"data"}
    for name in model_names():
        fields = set(get_model_class(name).Config.__dataclass_fields__)
        assert not fields & set(FRAME_OPTIONS), name


def test_a_table_of_ids_is_refused_not_flattened(model):
    with pytest.raises(UsageError, match=r"^user ids must be one list of ids, got an array of shape \(2, 2\); "
                                         r"pick its id column$"):
        model.recommend(np.array([[1, 2], [3, 4]]), n=3)
    assert len(model.recommend(np.array([1, 2]), n=3)) == 6


def test_test_ratings_of_unknown_items_are_counted_not_silently_dropped(model, parts):
    test = parts[1].ratings
    extra = pl.DataFrame({"user_id": [1, 2], "item_id": [999, 998], "rating": [4.0, 3.0],
                          "timestamp": [5, 6]}).cast(test.schema)
    res = rs.evaluate(model, rs.from_frame(pl.concat([test, extra]), timestamp="timestamp"), metrics="rating")
    assert res.protocol["ratings_not_scored"] == 2
    assert res.describe() == "holdout on the given test ratings (2 of items outside the model's catalogue not scored)"
    assert res.metrics == rs.evaluate(model, parts[1], metrics="rating").metrics
    assert "ratings_not_scored" not in rs.evaluate(model, parts[1], metrics="rating").protocol
