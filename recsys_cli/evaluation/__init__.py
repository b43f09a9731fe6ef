"""Evaluation: metrics (pure functions), protocols, tuning and the run ledger.

Metric functions live in two modules, both usable without the CLI:

- :mod:`recsys_cli.evaluation.metrics`: rating accuracy (``rmse``, ``mae``, ``fcp``),
  per-user AUC (``auc_from_scores``, ``auc_sampled``), fold aggregation (``mean_std``);
  re-exports ``ranking_metrics``.
- :mod:`recsys_cli.evaluation.ranking_metrics`: ``ranking_metrics`` over top-K lists
  (precision, recall, nDCG, MAP, MRR, hit rate, coverage, novelty, diversity,
  popularity bias), defined to match Microsoft Recommenders' ``python_evaluation``,
  and ``canonical_csr`` (validates per-user item lists given as CSR arrays).
"""
