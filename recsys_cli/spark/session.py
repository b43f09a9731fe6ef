"""SparkSession for recsys: checked prerequisites, bounded waits, quiet logs, stopped after use.

`spark_session(options)` checks Java (17+) and pyspark first (a one-line UsageError naming the
fix), probes a `spark://` master over TCP for a bounded time (EngineError, exit 5, when it does
not answer), then starts the session with small-job defaults that `--spark-conf` overrides.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from recsys_cli.errors import EngineError, UsageError

JAVA_FIX = "install Java 17 (`apt-get install openjdk-17-jre-headless`) or point JAVA_HOME at one"
PYSPARK_FIX = "install the spark extra: pip install 'recsys-cli[spark]'"
MIN_JAVA = 17
DEFAULT_MASTER = "local[*]"
MASTER_WAIT_SECONDS = 10.0
JVM_STACK = "16m"

# Small-job defaults: no UI, few shuffle partitions. --spark-conf overrides them. Spark's own network and
# heartbeat timeouts are kept (120 s): at 60 s a CPU-starved local executor was declared dead mid-fit.
# The bounded wait for an absent master is check_master's TCP probe, before any JVM starts.
DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "2g",
}


# Spark logs warnings and errors only, one line each, on stderr (its default prints INFO banners).
LOG4J2 = """rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark %p %c{1}: %m%n
appender.console.layout.alwaysWriteExceptions = false
logger.netlib.name = dev.ludovic.netlib
logger.netlib.level = error
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
"""
# Loggers whose errors our own one-line error repeats (a failed task, a context that did not start):
# silenced unless RECSYS_DEBUG is set, which also brings the Java stack traces back.
QUIET_LOGGERS = ("org.apache.spark.executor.Executor", "org.apache.spark.scheduler.TaskSetManager",
                 "org.apache.spark.SparkContext", "org.apache.spark.TaskContextImpl")


def _log4j2() -> str:
    if os.environ.get("RECSYS_DEBUG"):
        return LOG4J2.replace("alwaysWriteExceptions = false", "alwaysWriteExceptions = true")
    quiet = "".join(f"logger.q{k}.name = {name}\nlogger.q{k}.level = off\n" for k, name in enumerate(QUIET_LOGGERS))
    return LOG4J2 + quiet


def _log_config() -> str:
    import tempfile

    text = _log4j2()
    debug = "-debug" if os.environ.get("RECSYS_DEBUG") else ""
    path = os.path.join(tempfile.gettempdir(), f"recsys-spark-log4j2-{os.getuid()}{debug}.properties")
    if not os.path.exists(path) or open(path).read() != text:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class SparkOptions:
    """Where and how to run: --spark-master (else $RECSYS_SPARK_MASTER, else local[*]) and --spark-conf.

    master_wait: seconds to wait for a spark:// master to answer ($RECSYS_SPARK_MASTER_WAIT, default 10).
    """

    master: str | None = None
    conf: dict[str, str] = field(default_factory=dict)
    master_wait: float = field(default_factory=lambda: float(os.environ.get("RECSYS_SPARK_MASTER_WAIT")
                                                             or MASTER_WAIT_SECONDS))

    @property
    def resolved_master(self) -> str:
        return self.master or os.environ.get("RECSYS_SPARK_MASTER") or DEFAULT_MASTER


def parse_conf(items: list[str] | None) -> dict[str, str]:
    """['spark.executor.memory=4g', ...] -> dict; UsageError on anything but key=value."""
    conf: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--spark-conf expects key=value, got {item!r}")
        conf[key.strip()] = value.strip()
    return conf


def java_version() -> int | None:
    """Major version of the `java` Spark would start ($JAVA_HOME/bin/java, else PATH), None if absent."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def check_prerequisites() -> None:
    """UsageError (exit 2) naming the fix when Java 17+ or pyspark is missing."""
    version = java_version()
    home = os.environ.get("JAVA_HOME")
    where = f" (JAVA_HOME={home})" if home else ""
    if version is None:
        found = f"JAVA_HOME={home} has no working bin/java" if home else "no java was found"
        raise UsageError(f"--engine spark needs Java {MIN_JAVA}, and {found}: {JAVA_FIX}")
    if version < MIN_JAVA:
        raise UsageError(f"--engine spark needs Java {MIN_JAVA}+, found Java {version}{where}: {JAVA_FIX}")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise UsageError(f"--engine spark needs pyspark: {PYSPARK_FIX}") from None


MASTER_FORMS = "local, local[N], local[*], local[N,F], spark://HOST:PORT, yarn or k8s://HOST:PORT"
_LOCAL = re.compile(r"local(\[(\*|[1-9]\d*)(,\s*[1-9]\d*)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]")


def check_master_url(master: str) -> None:
    """UsageError (exit 2) for a master URL Spark cannot parse, before a JVM starts (Spark would print
    a Java stack trace), and for yarn without its configuration folder."""
    if _LOCAL.fullmatch(master) or master.startswith(("spark://", "k8s://")):
        return
    if master == "yarn":
        if not (os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR")):
            raise UsageError("--spark-master yarn needs HADOOP_CONF_DIR or YARN_CONF_DIR set to the cluster's "
                             "Hadoop configuration folder")
        return
    raise UsageError(f"--spark-master {master!r} is not a Spark master URL; use {MASTER_FORMS}")


def check_master(master: str, wait: float = MASTER_WAIT_SECONDS) -> None:
    """A malformed URL is a UsageError (exit 2); for spark://host:port[,host:port], EngineError (exit 5)
    unless one answers within `wait` seconds."""
    check_master_url(master)
    if not master.startswith("spark://"):
        return  # local[...] needs no server; yarn/k8s are found through their own configuration
    hosts = []
    for part in master[len("spark://"):].split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--spark-master {master!r}: expected spark://HOST:PORT")
        hosts.append((host, int(port)))
    deadline = time.monotonic() + wait
    while True:
        for host, port in hosts:
            try:
                with socket.create_connection((host, port), timeout=min(2.0, max(0.1, wait))):
                    return
            except OSError:
                pass
        if time.monotonic() >= deadline:
            raise EngineError(f"Spark master {master} is unreachable (no answer within {wait:g} s); "
                              "is it running, and is the address right?")
        time.sleep(0.5)


@contextlib.contextmanager
def spark_session(options: SparkOptions, app: str = "recsys"):
    """A started SparkSession (stopped on exit); prerequisites and the master are checked first."""
    master = options.resolved_master
    check_master_url(master)
    check_prerequisites()
    from pyspark.sql import SparkSession

    check_master(master, options.master_wait)
    active = SparkSession.getActiveSession()
    if active is not None:  # a notebook's or a test suite's session: used as it is, and left running
        running = active.sparkContext.master
        if options.master is not None and running != master:
            raise EngineError(f"a Spark session on {running} is already running in this process; "
                              f"stop it to use {master}")
        yield active
        return
    # Python workers must be this interpreter (numpy, pyarrow of the same environment).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master.startswith("local"):  # one process: bind to loopback (no hostname lookup, no warning about it)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    builder = SparkSession.builder.master(master).appName(app)
    # -Xss: Java's 1 MB default thread stack overflows serialising the task of a long ALS lineage.
    conf = {**DEFAULT_CONF,
            "spark.driver.extraJavaOptions": f"-Xss{JVM_STACK} -Dlog4j2.configurationFile=file:{_log_config()}",
            "spark.executor.extraJavaOptions": f"-Xss{JVM_STACK}",
            **options.conf}
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start or the master refused us
        raise EngineError(f"cannot start Spark on {master}: {_one_line(exc)}") from None
    spark.sparkContext.setLogLevel("ERROR")
    restore = _watch_sigint()
    try:
        yield spark
    finally:
        restore()
        spark.stop()


_INTERRUPTED = threading.Event()


def _watch_sigint():
    """Note a Ctrl-C before pyspark's handler cancels the jobs: the call waiting on a job then fails with a
    Java error, which job_errors turns back into KeyboardInterrupt (exit 130). Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    import logging

    # pyspark's handler cancels the jobs over the py4j connection the interrupted call is using; py4j then
    # logs that failure's tracebacks with logging.exception on the root logger, which would configure it
    # to print them on stderr. Our one line `error: interrupted` says it all (RECSYS_DEBUG shows them).
    root = logging.getLogger()
    quiet = logging.NullHandler() if not root.handlers and not os.environ.get("RECSYS_DEBUG") else None
    if quiet is not None:
        root.addHandler(quiet)
    previous = signal.getsignal(signal.SIGINT)
    _INTERRUPTED.clear()

    def handler(signum, frame):
        _INTERRUPTED.set()
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)

    def restore():
        signal.signal(signal.SIGINT, previous)
        _INTERRUPTED.clear()
        if quiet is not None:
            root.removeHandler(quiet)
    return restore


@contextlib.contextmanager
def checkpointing(spark, progress=None):
    """A checkpoint directory for iterative jobs (Spark ALS cuts its lineage there every few iterations).

    Without one, ALS's lineage grows with every iteration and serialising a task overflows the JVM
    stack (15 iterations at Java's default stack, a crash at 30). A directory the user set (on the
    context, or `--spark-conf spark.checkpoint.dir=...`) is kept; on a local master a temporary one
    is made, kept for the life of the context and removed when the process exits; on a cluster,
    where a driver-local folder is not shared, the user is told to set one.
    """
    sc = spark.sparkContext
    if sc.getCheckpointDir() is not None:
        yield True
        return
    configured = sc.getConf().get("spark.checkpoint.dir")
    if configured:
        sc.setCheckpointDir(configured)
        yield True
        return
    if not sc.master.startswith("local"):
        if progress is not None:
            progress.log(f"no Spark checkpoint directory on {sc.master}: long fits may fail; "
                         "set --spark-conf spark.checkpoint.dir=hdfs://...")
        yield False
        return
    import atexit
    import tempfile

    folder = tempfile.mkdtemp(prefix="recsys-spark-checkpoint-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    sc.setCheckpointDir(folder)
    yield True


def engine_info(spark) -> dict:
    """What the manifest records about the engine."""
    sc = spark.sparkContext
    return {"engine": "spark", "spark_version": spark.version, "master": sc.master,
            "default_parallelism": sc.defaultParallelism}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    java = getattr(exc, "java_exception", None)
    if text.startswith("An error occurred while calling") and java is not None:  # py4j's wrapper: the Java message
        try:
            text = str(java.toString()).strip()
        except Exception:  # the JVM is gone
            pass
    lines = text.splitlines()
    return lines[0][:300] if lines else type(exc).__name__


# Spark errors about the input (a path that does not exist, a file that cannot be read, part files whose
# schemas disagree): data errors, exit 3, as the local engine's.
INPUT_ERRORS = ("PATH_NOT_FOUND", "FAILED_READ_FILE", "CANNOT_MERGE_SCHEMAS", "CANNOT_MERGE_INCOMPATIBLE_DATA_TYPE",
                "UNABLE_TO_INFER_SCHEMA", "java.io.FileNotFoundException", "Failed to merge incompatible")


@contextlib.contextmanager
def job_errors(what: str):
    """Turn a failed or killed Spark job (Py4J / PySpark exceptions) into one line: DataError (exit 3) when
    the input cannot be read, KeyboardInterrupt (exit 130) after Ctrl-C, else EngineError (exit 5)."""
    try:
        yield
    except Exception as exc:
        from recsys_cli.errors import DataError, RecsysError

        if isinstance(exc, RecsysError):
            raise
        mod = type(exc).__module__
        if mod.startswith(("py4j", "pyspark")) or "Py4J" in type(exc).__name__:
            if _INTERRUPTED.is_set():
                raise KeyboardInterrupt from None
            line = _one_line(exc)
            if any(code in line for code in INPUT_ERRORS):
                if "MERGE" in line:  # Spark's first line ends in "Failed merging schemas:", the schemas follow
                    line = line.rstrip(":") + ": the Parquet part files disagree on the columns' types"
                raise DataError(f"cannot read the input: {line}") from None
            raise EngineError(f"Spark job failed during {what}: {line}") from None
        raise
