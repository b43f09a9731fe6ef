"""A/B testing of trained runs: assignment, click simulation, statistics, power, bandits, reports.

Modules: assignment (salted hashing), simulation (held-out ratings -> clicks), statistics
(tests and intervals), power (sample size / MDE), segments, experiment (the `abtest` flow),
bandit (adaptive allocation), report (tables and the PNG).
"""
