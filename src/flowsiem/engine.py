"""The execution engine behind every flow-level computation.

All analyses are Ibis expressions; this module only picks the backend. DuckDB (in process)
is the default; `spark` uses Ibis's PySpark backend for clusters (needs `pip install
flowsiem[spark]` and Java 17). Heavy modules are imported only here, on first use.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

ENGINES = ("duckdb", "spark")

_ADDRESS = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_VIEW_MAX_ROWS = 100_000  # Arrow tables up to this size are registered as views rather than copied


def split_list_column(df, col: str, names) -> None:
    """Replace `df[col]`, one list per row (several quantiles taken in one pass: one sort, not
    one per quantile), by one column per name; a missing list gives missing values."""
    rows = [list(v) if v is not None else [None] * len(names) for v in df.pop(col)]
    for i, name in enumerate(names):
        df[name] = [v[i] for v in rows]


def is_address(path: str) -> bool:
    """A location the engine opens itself (hdfs://, s3a://, file:// ...), not a local path."""
    return bool(_ADDRESS.match(str(path)))


@dataclass
class Engine:
    name: str
    con: object  # an ibis backend
    scratch: str | None = None  # this run's scratch directory on this machine (DuckDB)
    _enums: dict = field(default_factory=dict)  # ENUM types created on this connection: name -> values

    def read_parquet(self, paths):
        """Parquet files of this machine, or addresses the engine opens itself (Spark: hdfs://,
        s3a://, file:// ...). On a Spark cluster the executors do not see this machine's disk, so
        local files are read here and handed over (inputs at scale belong on the cluster's storage)."""
        paths = [str(p) for p in paths]
        if self.name == "spark" and not all(is_address(p) for p in paths) \
                and not self.con._session.sparkContext.master.startswith("local"):
            import pyarrow.parquet as pq

            return self.from_arrow(pq.ParquetDataset(paths).read())
        return self.con.read_parquet(paths if len(paths) > 1 else paths[0])

    def materialize(self, expr, labels: dict[str, tuple[str, ...]] | None = None):
        """Compute a table once and keep it in the engine, for the many queries that follow.

        DuckDB: a table in this run's compressed in-memory database, or with a memory limit in
        its scratch database file (see connect). Spark: a cached DataFrame behind a temporary
        view (Ibis's cache()). `labels`: string columns that only ever hold one of a few known
        values (traffic_class); DuckDB keeps them as an ENUM, one byte per row instead of a
        string (writing a day's flows ~15 % faster), which Ibis and pandas still read as strings."""
        import ibis

        if self.name != "duckdb":
            return expr.cache()
        name = ibis.util.gen_name("kept")
        if not labels:
            return self.con.create_table(name, expr)
        casts = ", ".join(f'CAST("{col}" AS {self._enum_type(col, values)}) AS "{col}"'
                          for col, values in labels.items())
        self.con.raw_sql(f'CREATE TABLE "{name}" AS SELECT * REPLACE ({casts}) FROM ({ibis.to_sql(expr)})')
        return self.con.table(name)

    def _enum_type(self, col: str, values: tuple[str, ...]) -> str:
        """The DuckDB ENUM type of column `col`'s `values`, created once per connection."""
        name = "labels_" + re.sub(r"\W", "_", col)
        if name not in self._enums:
            quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
            self.con.raw_sql(f"CREATE TYPE {name} AS ENUM ({quoted})")
            self._enums[name] = tuple(values)
        elif self._enums[name] != tuple(values):
            raise ValueError(f"column {col}: labels {values} differ from the ENUM kept ({self._enums[name]})")
        return name

    def from_arrow(self, arrow_table, name: str | None = None):
        """Register an in-memory Arrow table with the backend and return it as an Ibis table."""
        import ibis

        name = name or ibis.util.gen_name("flows")
        if self.name == "duckdb":
            if arrow_table.num_rows > _VIEW_MAX_ROWS:  # copied into the engine, compressed; the Arrow one can go
                return self.con.create_table(name, arrow_table, temp=True)
            # A small table (the rules' candidate keys): a view over it, no CREATE (tens of ms each)
            self.con.con.register(name, arrow_table)
            return self.con.table(name)
        # Spark: a temporary view of an in-memory DataFrame (Ibis's create_table would write a
        # persistent table into the warehouse directory).
        session = self.con._session
        session.createDataFrame(arrow_table.to_pandas()).createOrReplaceTempView(name)
        return self.con.table(name)


def _scratch_dir() -> str:
    """A new scratch directory for this process under FLOWSIEM_TMP (default: the system's temp).

    Named after the process, so that the directories of runs that were killed (no exit handler
    ran) are recognised and removed by the next run instead of filling the disk."""
    import shutil
    import tempfile

    base = os.environ.get("FLOWSIEM_TMP", os.path.join(tempfile.gettempdir(), "flowsiem-duckdb"))
    os.makedirs(base, exist_ok=True)
    for entry in os.listdir(base):
        parts = entry.split("-")
        if len(parts) == 3 and parts[0] == "run" and parts[1].isdigit() and not _alive(int(parts[1])):
            shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=base)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def connect(name: str = "duckdb", *, threads: int | None = None, memory_limit: str | None = None) -> Engine:
    from .errors import UsageError

    name = (name or "duckdb").lower()
    if name == "duckdb":
        import atexit
        import shutil

        import ibis

        # Where the tables a run materialises live. By default a compressed in-memory database:
        # the fastest (scale 10 `run --no-report`: 116 s, peak 4.6 GiB). When the user bounds
        # memory, a database file in the scratch directory (removed at exit): its tables sit on
        # disk, compressed, and only DuckDB's buffer pool is in memory (133 s, peak 2.4 GiB).
        scratch = _scratch_dir()
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        memory_limit = memory_limit or os.environ.get("FLOWSIEM_MEMORY_LIMIT")
        if memory_limit:
            con = ibis.duckdb.connect(os.path.join(scratch, "work.duckdb"))
        else:
            con = ibis.duckdb.connect()
            con.raw_sql("ATTACH ':memory:' AS work (COMPRESS)")
            con.raw_sql("USE work")
        con.raw_sql("SET enable_progress_bar = false")  # we draw our own progress
        # Offline: DuckDB would download an extension a query needs; flowsiem's are built in
        # (parquet, json), and one the user installed (httpfs for s3://) still loads.
        con.raw_sql("SET autoinstall_known_extensions = false")
        if threads:
            con.raw_sql(f"SET threads = {int(threads)}")
        if memory_limit:
            try:
                con.raw_sql(f"SET memory_limit = '{memory_limit}'")
            except Exception as exc:  # duckdb's own parser has the last word on sizes
                raise UsageError(f"--memory-limit '{memory_limit}': {str(exc).splitlines()[0]}") from None
        # Spill to disk instead of failing on large days.
        con.raw_sql(f"SET temp_directory = '{scratch}'")
        return Engine("duckdb", con, scratch)
    if name == "spark":
        try:
            import ibis
            from pyspark.sql import SparkSession
        except ImportError as exc:  # pragma: no cover - depends on optional extra
            raise UsageError("--engine spark needs PySpark: pip install 'flowsiem[spark]'") from exc
        import atexit
        import shutil
        import tempfile

        scratch = tempfile.mkdtemp(prefix="flowsiem-spark-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        master = os.environ.get("FLOWSIEM_SPARK_MASTER")
        builder = SparkSession.builder
        # --spark-master / FLOWSIEM_SPARK_MASTER; unset, spark-submit's --master applies (its own
        # default is local[*]), so the same command runs on a laptop and under spark-submit.
        if master:
            builder = builder.master(master)
        # Nothing persistent: flowsiem only makes temporary views, and the warehouse directory
        # Spark insists on goes to a scratch place, not the working directory.
        builder = (builder.appName("flowsiem")
                   .config("spark.sql.session.timeZone", "UTC")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                   .config("spark.sql.warehouse.dir", scratch)
                   .config("spark.ui.showConsoleProgress", "false"))  # flowsiem draws its own progress
        session = _start_spark(builder, master or "spark-submit's master (default local[*])")
        session.sparkContext.setLogLevel("ERROR")
        _local_shuffle_partitions(session)
        return Engine("spark", ibis.pyspark.connect(session))
    raise UsageError(f"unknown engine '{name}' (choose one of: {', '.join(ENGINES)})")


def _local_shuffle_partitions(session) -> None:
    """On a local master, one shuffle partition per core unless the user chose a number.

    Spark's default of 200 is sized for a cluster: on one machine every aggregation then schedules
    200 tasks for what fits in a handful (measured: `hunt` on a small Zeek capture 197 s -> 146 s
    on 2 cores). A cluster, or a user's own --conf, keeps its setting."""
    sc = session.sparkContext
    if sc.master.startswith("local") and not sc.getConf().contains("spark.sql.shuffle.partitions"):
        session.conf.set("spark.sql.shuffle.partitions", str(sc.defaultParallelism))


def _start_spark(builder, master: str):
    """Start (or join) the Spark session with the JVM's own log in a file, not on the user's terminal.

    A JVM started here keeps that file as its stderr for its whole life, so Spark's start-up
    banner and warnings never mix with flowsiem's output. If Spark cannot start (no Java, a
    master that does not answer), the user gets one line: Spark's own reason and the log's path."""
    import atexit
    import sys
    import tempfile

    from .errors import FlowsiemError

    fd, log = tempfile.mkstemp(prefix="flowsiem-spark-", suffix=".log")
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j and pyspark raise many kinds; all mean "Spark did not start"
        reason = _spark_failure(log) or str(exc).splitlines()[0]
        raise FlowsiemError(f"Spark did not start on {master}: {reason} (Spark's log: {log})") from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    atexit.register(lambda: os.path.exists(log) and os.remove(log))
    return session


def _spark_failure(log: str) -> str | None:
    """The first ERROR line of Spark's log, without its timestamp and logger name."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                if " ERROR " in line:
                    return line.split(": ", 1)[-1].strip()
    except OSError:
        pass
    return None
