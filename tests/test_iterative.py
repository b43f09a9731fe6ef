"""The shared iterative-fit pattern: factor initialisation, the step loop, one divergence error."""

from __future__ import annotations

import numpy as np
import pytest
from contract import checkerboard

from recsys_cli.errors import EXIT_USAGE, DivergedError, UsageError
from recsys_cli.models.iterative import check_finite, init_factors, run_steps
from recsys_cli.models.registry import create_model


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, total, label):
        self.calls.append(("start", total, label))

    def advance(self, n, **fields):
        self.calls.append(("advance", n, fields))


class _Fake:
    name = "fake"
    divergence_hint = "raise reg"

    class Config:
        @staticmethod
        def field_names():
            return ["iterations", "reg"]


class _FakeEpochs(_Fake):
    class Config:
        @staticmethod
        def field_names():
            return ["epochs", "lr"]


def test_init_factors_is_the_float32_normal_sampler_scaled_and_shifted():
    got = init_factors(np.random.default_rng(5), 300, 40, 0.1, mean=0.5)
    want = np.random.default_rng(5).standard_normal((300, 40), dtype=np.float32) * np.float32(0.1) + np.float32(0.5)
    assert got.dtype == np.float32 and got.shape == (300, 40) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    assert abs(float(got.mean()) - 0.5) < 0.01 and abs(float(got.std()) - 0.1) < 0.005
    again = init_factors(np.random.default_rng(5), 300, 40, 0.1, mean=0.5)
    np.testing.assert_array_equal(got, again)


def test_run_steps_drives_progress_and_returns_the_history():
    progress = _Recorder()
    losses = iter([0.9, 0.8, 0.75])
    history = run_steps(_Fake(), progress, 3, lambda i: {"train_rmse": next(losses)})
    assert history == {"train_rmse": [0.9, 0.8, 0.75]}
    assert progress.calls[0] == ("start", 3, "fake iterations")
    assert progress.calls[1:] == [("advance", 1, {"iteration": k + 1, "train_rmse": v})
                                  for k, v in enumerate([0.9, 0.8, 0.75])]
    epochs = _Recorder()
    assert run_steps(_FakeEpochs(), epochs, 2, lambda i: {}) == {}
    assert epochs.calls == [("start", 2, "fake epochs"), ("advance", 1, {"epoch": 1}), ("advance", 1, {"epoch": 2})]


def test_a_non_finite_statistic_or_watched_array_stops_the_fit_with_one_error():
    done = []

    def step(i):
        done.append(i)
        return {"train_rmse": float("nan") if i == 1 else 1.0}

    with pytest.raises(DivergedError, match=r"^fake diverged at iteration 2 \(train_rmse not finite\); raise reg$"):
        run_steps(_Fake(), _Recorder(), 5, step)
    assert done == [0, 1]
    X = np.ones((3, 2), np.float32)

    def blow_up(i):
        X[1, 1] = np.inf if i == 2 else 1.0
        return {}

    with pytest.raises(DivergedError, match=r"at epoch 3 \(parameters not finite\)"):
        run_steps(_FakeEpochs(), _Recorder(), 5, blow_up, watch=lambda: (X,))
    check_finite(_Fake(), {"loss": 1.0}, (X[:1],))  # finite: no error


def test_diverged_error_is_a_usage_error_with_exit_code_2():
    assert issubclass(DivergedError, UsageError) and DivergedError.exit_code == EXIT_USAGE == 2


@pytest.mark.parametrize(("model", "params", "message"), [
    ("svd", {"lr_all": 50, "epochs": 5}, r"^svd diverged at epoch 1 \(train_rmse not finite\); lower lr_all"),
    ("svdpp", {"lr_all": 50, "epochs": 5}, r"^svdpp diverged at epoch 1 .*; lower lr_all"),
    ("bias", {"method": "sgd", "lr": 50}, r"^bias diverged \(parameters not finite\); lower lr$"),
    ("bpr", {"lr": 1e30, "epochs": 3, "threads": 1}, r"^bpr diverged at epoch 1 \(parameters not finite\); lower lr$"),
    ("als", {"reg": 0, "reg_bias": 0, "init_std": 1e30, "iterations": 2}, r"^als diverged at iteration 1 .*; raise reg$"),
])
def test_every_model_reports_divergence_the_same_way(model, params, message):
    data, _ = checkerboard()
    with np.errstate(all="ignore"), pytest.raises(DivergedError, match=message):
        create_model(model, params).fit(data, seed=1)


def test_iterative_models_record_seconds_per_step_and_their_history():
    data, _ = checkerboard()
    model = create_model("als", {"factors": 4, "iterations": 3}).fit(data, seed=1)
    assert len(model.fit_info["train_rmse"]) == 3 and model.fit_info["seconds_per_iteration"] > 0
    assert "seconds_per_iteration" not in create_model("bias").fit(data, seed=1).fit_info


def test_scores_are_ratings_follows_predicts_ratings_unless_a_model_ranks_otherwise():
    assert create_model("svd").scores_are_ratings and create_model("svd").predicts_ratings
    assert not create_model("ials").scores_are_ratings and not create_model("ials").predicts_ratings
    assert create_model("popularity").predicts_ratings and not create_model("popularity").scores_are_ratings
    assert not create_model("item-knn").scores_are_ratings  # rank_by=sum
    assert create_model("item-knn", {"rank_by": "mean"}).scores_are_ratings
