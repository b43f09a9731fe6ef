"""The Spark engine: `--engine spark` on train (als, ials), recommend --all-users and preprocess.

Imported only when a command is given `--engine spark`; pyspark (the `spark` extra) and Java 17
are needed then and only then. Every step writes the same artifacts as the local engine: a
Spark-trained run is a normal run of our `ALS`/`IALS` classes.
"""
