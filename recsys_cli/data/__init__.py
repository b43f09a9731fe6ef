"""Data pipeline: registry, download, readers, preprocess, splits, synthetic data, dataset loading."""
