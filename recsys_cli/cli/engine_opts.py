"""Options of the heavy steps that can run on Spark: --engine, --spark-master, --spark-conf.

Kept apart from the commands so each command gains three option lines and one branch.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ENGINES = ("local", "spark")

EngineOpt = Annotated[
    str,
    typer.Option("--engine", help="Where the heavy work runs: local (this machine, Numba) or spark "
                 "(needs the spark extra and Java 17: pip install 'recsys-cli[spark]')."),
]
SparkMasterOpt = Annotated[
    Optional[str],
    typer.Option("--spark-master", metavar="URL", show_default=False,
                 help="With --engine spark: local[*], local[N], spark://HOST:7077 or yarn "
                      "(default: $RECSYS_SPARK_MASTER, else local[*])."),
]
SparkConfOpt = Annotated[
    Optional[list[str]],
    typer.Option("--spark-conf", metavar="KEY=VALUE", show_default=False,
                 help="With --engine spark: a Spark setting (repeatable), e.g. --spark-conf spark.executor.memory=4g."),
]


def spark_options(engine: str, master: str | None, conf: list[str] | None):
    """SparkOptions for --engine spark, None for local; UsageError for an unknown engine or stray Spark options."""
    from recsys_cli.errors import UsageError

    if engine not in ENGINES:
        raise UsageError(f"unknown --engine {engine!r}; use {' or '.join(ENGINES)}")
    if engine == "local":
        if master or conf:
            raise UsageError("--spark-master and --spark-conf need --engine spark")
        return None
    from recsys_cli.spark.session import SparkOptions, parse_conf

    return SparkOptions(master=master, conf=parse_conf(conf))
