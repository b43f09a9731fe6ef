"""The item map's projections (insights.projection): t-SNE is seeded and separates planted genre clusters far
above shuffled genres; the cap on shown items; UMAP's call with a stand-in module; a missing package is one
UsageError naming its install command."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from recsys_cli.errors import UsageError
from recsys_cli.insights.model_report import genre_silhouettes
from recsys_cli.insights.projection import (
    MAX_POINTS,
    check_projection,
    pca_2d,
    project,
    shown_indices,
)


def planted(n_per: int = 40, genres: int = 4, dim: int = 16, seed: int = 0):
    """Item vectors around one direction per genre (cosine clusters, lengths varying like popularity), one-hot genres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(genres, dim))
    label = np.repeat(np.arange(genres), n_per)
    vec = (centres[label] + rng.normal(scale=0.35, size=(len(label), dim))) * rng.uniform(0.5, 3.0, (len(label), 1))
    onehot = np.zeros((len(label), genres), np.float32)
    onehot[np.arange(len(label)), label] = 1.0
    return vec, onehot, tuple(f"g{g}" for g in range(genres))


def test_tsne_map_is_seeded_shaped_and_separates_planted_genres():
    pytest.importorskip("sklearn")
    vec, onehot, names = planted()
    a = project(vec, "tsne", seed=3)
    b = project(vec, "tsne", seed=3)
    assert a.method == "tsne" and a.variance is None and a.axes == ("t-SNE 1", "t-SNE 2")
    assert a.coords.shape == (len(vec), 2) and np.isfinite(a.coords).all()
    np.testing.assert_array_equal(a.coords, b.coords)  # same vectors, same seed: the same map
    # The genres were planted as clusters: on the map each genre's dots sit apart from the others, far above the
    # same score for random sets of as many items (the shuffled baseline, about 0).
    rows = genre_silhouettes(a.coords, onehot, names, metric="euclidean", min_items=5, seed=1)
    assert len(rows) == len(names)
    real, shuffled = np.mean([r["silhouette"] for r in rows]), np.mean([r["shuffled"] for r in rows])
    assert real > 0.5 and abs(shuffled) < 0.1 and real > shuffled + 0.4
    labels = onehot.argmax(1)
    fake = np.random.default_rng(0).permutation(labels)
    fake_rows = genre_silhouettes(a.coords, np.eye(len(names))[fake], names, metric="euclidean", min_items=5)
    assert real > np.mean([r["silhouette"] for r in fake_rows]) + 0.4  # shuffled labels on the same map
    # A handful of points: t-SNE needs perplexity < n, PCA shows them instead.
    np.testing.assert_allclose(project(vec[:3], "tsne").coords, pca_2d(vec[:3])[0])


def test_pca_is_the_default_and_keeps_its_variance_share():
    vec, _, _ = planted(n_per=10)
    p = project(vec)
    coords, ratio = pca_2d(vec)
    assert p.method == "pca" and p.axes == ("component 1", "component 2")
    np.testing.assert_array_equal(p.coords, coords)
    np.testing.assert_array_equal(p.variance, ratio)
    assert 1.0 >= ratio.sum() > 0 and ratio[0] >= ratio[1]


def test_shown_items_are_capped_evenly_for_tsne():
    assert len(shown_indices(1682, "pca")) == 1682
    assert len(shown_indices(1682, "tsne")) == 1682 <= MAX_POINTS["tsne"]
    idx = shown_indices(59047, "tsne")
    assert len(idx) == MAX_POINTS["tsne"] and idx[0] == 0 and idx[-1] == 59046
    gaps = np.diff(idx)
    assert gaps.min() >= 29 and gaps.max() <= 30  # evenly spaced over the catalogue
    assert len(shown_indices(59047, "pca", 5000)) == 5000
    assert len(shown_indices(59047, "tsne", 500)) == 500  # the caller's cap, when smaller
    assert len(shown_indices(59047, "umap")) == 59047


def test_a_missing_package_is_one_line_naming_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)  # `import sklearn.manifold` now fails
    with pytest.raises(UsageError) as err:
        check_projection("tsne")
    msg = str(err.value)
    assert msg == "projection tsne needs scikit-learn, which is not installed: pip install 'recsys-cli[maps]'"
    assert "\n" not in msg and err.value.exit_code == 2
    with pytest.raises(UsageError, match="recsys-cli\\[maps\\]"):
        project(np.eye(5), "tsne")
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(UsageError, match="needs umap-learn, which is not installed: pip install umap-learn"):
        check_projection("umap")
    with pytest.raises(UsageError, match="choose one of: pca, tsne, umap"):
        check_projection("mds")
    assert check_projection(None) == "pca" and check_projection("PCA") == "pca"


def test_umap_is_called_seeded_with_cosine_when_installed(monkeypatch):
    """umap-learn is optional: a stand-in module checks what project() asks of it."""
    calls = []

    class UMAP:
        def __init__(self, **kwargs):
            calls.append(kwargs)

        def fit_transform(self, X):
            return np.asarray(X)[:, :2] * 2.0

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=UMAP))
    vec, _, _ = planted(n_per=5)
    p = project(vec, "umap", seed=7)
    assert calls == [{"n_components": 2, "n_neighbors": 15, "metric": "cosine", "random_state": 7}]
    assert p.method == "umap" and p.variance is None and p.axes == ("UMAP 1", "UMAP 2")
    np.testing.assert_allclose(p.coords, vec[:, :2] * 2.0)
