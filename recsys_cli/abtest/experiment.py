"""`recsys abtest RUN_A RUN_B`: load runs and held-out data, assign, expose, click, compare.

Runs must share one dataset and one split; the users are those with held-out ratings in the
split's test part, and clicks are simulated from those held-out ratings by a click model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_cli.abtest.assignment import DEFAULT_SALT, assign_arms, check_traffic, sample_users
from recsys_cli.abtest.segments import activity_labels, demographic_labels, segment_table
from recsys_cli.abtest.simulation import ClickModel, Exposure, HeldOut, exposure_for, mix, simulate_clicks
from recsys_cli.abtest.statistics import check_alpha, check_alternative, compare_arms, srm_check
from recsys_cli.errors import DataError, UsageError


@dataclass
class Setup:
    """Runs loaded against their dataset and split, with the held-out users and ratings."""

    runs: list[str]
    manifests: list[dict]
    models: list
    dataset: object  # recsys_cli.data.dataset.Dataset
    split: str
    heldout: HeldOut
    pool: np.ndarray  # raw ids of users with held-out ratings, ascending
    pool_index: np.ndarray  # their dataset indices
    train_counts: np.ndarray  # training ratings per pool user
    item_ids: np.ndarray
    rating_scale: tuple[float, float]

    def exposure(self, arm: int, rows: np.ndarray, k: int) -> Exposure:
        """Top-k of run `arm` for the pool users at `rows`, with their held-out ratings."""
        return exposure_for(self.models[arm], self.pool[rows], self.pool_index[rows], k, self.item_ids, self.heldout)


def load_setup(runs: list[str], dataset: str | None = None, *, data_dir=None, artifacts_dir=None) -> Setup:
    """Check that the runs are comparable (same dataset and split, a held-out part) and load them."""
    from recsys_cli.artifacts import ArtifactStore
    from recsys_cli.data.dataset import load_dataset

    store = ArtifactStore(artifacts_dir)
    manifests = [store.manifest(r) for r in runs]
    names = {m.get("dataset") for m in manifests}
    if len(names) > 1:
        listing = ", ".join(f"{r} on {m.get('dataset')!r}" for r, m in zip(runs, manifests, strict=True))
        raise UsageError(f"runs were trained on different datasets ({listing}); compare runs of one dataset")
    ds_name = names.pop()
    if dataset is not None and dataset != ds_name:
        raise UsageError(f"runs were trained on dataset {ds_name!r}, not {dataset!r}")
    for r, m in zip(runs, manifests, strict=True):
        if not m.get("split"):
            raise UsageError(
                f"run {r!r} was trained on every rating (no --split), so there is no held-out data to simulate "
                f"clicks from; retrain it on a split, e.g. `recsys train {m.get('model')} --dataset {ds_name} --split random`"
            )
    splits = {m["split"] for m in manifests}
    if len(splits) > 1:
        listing = ", ".join(f"{r} on {m['split']!r}" for r, m in zip(runs, manifests, strict=True))
        raise UsageError(f"runs were trained on different splits ({listing}); both arms need the same held-out users")
    split = splits.pop()
    ds = load_dataset(ds_name, data_dir)
    loaded: dict[str, object] = {}
    for r in runs:
        if r not in loaded:
            loaded[r], manifest = store.load(r, expect_fingerprint=ds.fingerprint)
            ds.check_run_split(r, manifest)
    test = ds.interactions(split, "test")
    if len(test) == 0:
        raise DataError(f"split {split!r} of {ds_name!r} has no held-out (test) ratings to simulate clicks from")
    train_counts = ds.interactions(split, "train").user_counts()
    pool_index = np.unique(test.users).astype(np.int32)
    return Setup(
        runs=list(runs), manifests=manifests, models=[loaded[r] for r in runs], dataset=ds, split=split,
        heldout=HeldOut(test.users, test.items, test.ratings, test.n_items), pool=test.user_ids[pool_index],
        pool_index=pool_index, train_counts=train_counts[pool_index], item_ids=test.item_ids,
        rating_scale=ds.rating_scale,
    )


def sub_seed(seed: int, stream: int) -> int:
    """An independent seed for one random stream (clicks, bootstrap, ...) of a run with `seed`."""
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1)[0])


def run_abtest(setup: Setup, click_model: ClickModel, *, k: int = 10, traffic: float = 0.5,
               salt: str = DEFAULT_SALT, users: int | None = None, seed: int = 42, alpha: float = 0.05,
               alternative: str = "two-sided", n_boot: int = 2000, segments: bool = True) -> dict:
    """Simulate the experiment and analyse it; keys starting with '_' hold arrays for plots."""
    check_traffic(traffic)
    check_alpha(alpha)
    check_alternative(alternative)
    if k < 1:
        raise UsageError(f"--k must be at least 1, got {k}")
    if n_boot < 0:
        raise UsageError(f"--bootstrap must be >= 0, got {n_boot}")
    raw = sample_users(setup.pool, users, seed)
    rows = np.searchsorted(setup.pool, raw)
    arm = assign_arms(raw, salt, traffic)
    a_rows, b_rows = np.flatnonzero(arm == 0), np.flatnonzero(arm == 1)
    if len(a_rows) < 2 or len(b_rows) < 2:
        raise UsageError(f"too few users per arm (A: {len(a_rows)}, B: {len(b_rows)}); use more --users or a --traffic nearer 0.5")
    exp_a = setup.exposure(0, rows, k)
    exp_b = setup.exposure(1, rows, k)
    seen = mix(exp_a, exp_b, arm)
    # Uniforms are drawn for every user in id order, so a user's clicks do not depend on the other users' arms.
    clicks = simulate_clicks(click_model, seen, np.random.default_rng(sub_seed(seed, 1))).sum(axis=1)
    imps = seen.impressions
    core = compare_arms(clicks[a_rows], imps[a_rows], clicks[b_rows], imps[b_rows], alpha=alpha,
                        alternative=alternative, n_boot=n_boot, seed=sub_seed(seed, 2))
    arms = []
    for label, r, m in zip(("A", "B"), setup.runs, setup.manifests, strict=True):
        arms.append({"arm": label, "run": r, "model": m.get("model"), **core["arms"][label]})
    srm = srm_check(len(a_rows), len(b_rows), traffic)
    fallback = int((setup.models[0].known_users(raw) < 0).sum())
    warnings = []
    if srm["mismatch"]:
        warnings.append(
            f"SAMPLE RATIO MISMATCH: arm B got {srm['observed_b_share']:.2%} of users, planned {traffic:.2%} "
            f"(chi-square p = {srm['p_value']:.2g} < {srm['threshold']}); the assignment is broken, do not trust the result"
        )
    short = int((imps < k).sum())
    if short:
        warnings.append(f"{short} user(s) saw fewer than {k} items: the catalogue has no more unseen items for them")
    result = {
        "settings": {
            "run_a": setup.runs[0], "run_b": setup.runs[1], "dataset": setup.dataset.name, "split": setup.split,
            "k": k, "traffic": traffic, "salt": salt, "users": users, "seed": seed, "alpha": alpha,
            "alternative": alternative, "bootstrap": n_boot, "eligible_users": int(len(setup.pool)),
            "sampled_users": int(len(raw)), "users_without_training_ratings": fallback,
        },
        "click_model": {"name": click_model.name, **click_model.params()},
        "arms": arms,
        "tests": core["tests"],
        "primary_test": "user_welch_t",
        "primary_note": "the user is the randomisation unit, so Welch's t-test on per-user CTR is the primary test; "
                        "the impression-level z-test assumes independent impressions and is shown for reference",
        "srm": srm,
        "winner": core["winner"],
        "warnings": warnings,
    }
    if "bootstrap" in core:
        boot = dict(core["bootstrap"])
        result["_lift_samples"] = boot.pop("samples")
        result["tests"]["bootstrap"] = boot
    if segments:
        families = {"activity": activity_labels(setup.train_counts[rows])}
        families.update(demographic_labels(setup.dataset.path / "users.parquet", raw))
        result["segments"] = segment_table(families, arm, clicks, imps, alpha=alpha, alternative=alternative)
        result["segments_note"] = (
            f"Welch's t-test on per-user CTR per segment; Holm correction across all {len(result['segments'])} "
            "segment tests (significant uses the adjusted p)"
        )
    return result


def public(result: dict) -> dict:
    """The result without the '_' keys (arrays kept only for plots)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
