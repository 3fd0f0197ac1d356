"""The execution engine behind every flow-level computation.

All analyses are Ibis expressions; this module only picks the backend. DuckDB (in process)
is the default; `spark` uses Ibis's PySpark backend for clusters (needs `pip install
flowsiem[spark]` and Java 17). Heavy modules are imported only here, on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENGINES = ("duckdb", "spark")


@dataclass
class Engine:
    name: str
    con: object  # an ibis backend

    def read_parquet(self, paths):
        paths = [str(p) for p in paths]
        return self.con.read_parquet(paths if len(paths) > 1 else paths[0])

    def from_arrow(self, arrow_table, name: str | None = None):
        """Register an in-memory Arrow table with the backend and return it as an Ibis table."""
        import ibis

        name = name or ibis.util.gen_name("flows")
        if self.name == "duckdb":
            return self.con.create_table(name, arrow_table, temp=True)
        # Spark: a temporary view of an in-memory DataFrame (Ibis's create_table would write a
        # persistent table into the warehouse directory).
        session = self.con._session
        session.createDataFrame(arrow_table.to_pandas()).createOrReplaceTempView(name)
        return self.con.table(name)


def connect(name: str = "duckdb", *, threads: int | None = None, memory_limit: str | None = None) -> Engine:
    from .errors import UsageError

    name = (name or "duckdb").lower()
    if name == "duckdb":
        import ibis

        con = ibis.duckdb.connect()
        con.raw_sql("SET enable_progress_bar = false")  # we draw our own progress
        if threads:
            con.raw_sql(f"SET threads = {int(threads)}")
        if memory_limit:
            con.raw_sql(f"SET memory_limit = '{memory_limit}'")
        # Spill to disk instead of failing on large days.
        con.raw_sql(f"SET temp_directory = '{os.environ.get('FLOWSIEM_TMP', '/tmp/flowsiem-duckdb')}'")
        return Engine("duckdb", con)
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
        master = os.environ.get("FLOWSIEM_SPARK_MASTER", "local[*]")
        # Nothing persistent: flowsiem only makes temporary views, and the warehouse directory
        # Spark insists on goes to a scratch place, not the working directory.
        session = (SparkSession.builder.master(master).appName("flowsiem")
                   .config("spark.sql.session.timeZone", "UTC")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                   .config("spark.sql.warehouse.dir", scratch)
                   .config("spark.ui.showConsoleProgress", "false")  # flowsiem draws its own progress
                   .getOrCreate())
        session.sparkContext.setLogLevel("ERROR")
        return Engine("spark", ibis.pyspark.connect(session))
    raise UsageError(f"unknown engine '{name}' (choose one of: {', '.join(ENGINES)})")
