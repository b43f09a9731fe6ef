"""Evaluation: metrics (pure functions), protocols, tuning and the run ledger.

Metric functions, all usable without the CLI (each module imports only the ones above it):

- :mod:`recsys_cli.evaluation.user_lists`: ``canonical_csr`` (validates per-user item
  lists given as CSR arrays).
- :mod:`recsys_cli.evaluation.auc`: per-user AUC (``auc_from_scores``, ``auc_sampled``).
- :mod:`recsys_cli.evaluation.ranking_metrics`: ``ranking_metrics`` over top-K lists
  (precision, recall, nDCG, MAP, MRR, hit rate, coverage, novelty, diversity,
  popularity bias, AUC), defined to match Microsoft Recommenders' ``python_evaluation``.
- :mod:`recsys_cli.evaluation.metrics`: rating accuracy (``rmse``, ``mae``, ``fcp``),
  fold aggregation (``mean_std``); re-exports the public functions of the three above.
"""
