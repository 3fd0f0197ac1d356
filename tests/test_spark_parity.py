"""The same rules on Spark: `--engine spark` (Ibis's PySpark backend, local) finds the same devices,
families, rules and risk scores as DuckDB, and writes nothing into the working directory."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

LABELLED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "zeek-labelled"


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flowsiem.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def _devices(out: Path) -> list[tuple]:
    return [(r["ip"], r["severity"], r["families"], r["risk_score"], r["rules"])
            for r in csv.DictReader(open(out / "devices.csv"))]


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    d = tmp_path_factory.mktemp("spark") / "days"
    r = _cli("generate", "--scenario", "obvious", "--seed", 3, "--scale", 0.03, "--out", d, "-q")
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def runs(days, tmp_path_factory):
    """`flowsiem run` (profile + detect) of the day with every family, on each engine."""
    out = tmp_path_factory.mktemp("runs")
    for engine in ("duckdb", "spark"):
        # Spark opens the test day and its servers' file at file:// addresses itself, as it would
        # hdfs:// or s3a:// ones on a cluster (flows.read_remote_parquet); the clean day is a path.
        test, servers = days / "test.parquet", days / "servers.parquet"
        if engine == "spark":
            test, servers = test.resolve().as_uri(), servers.resolve().as_uri()
        args = [days / "data.parquet", test, "--servers", servers,
                "--servers-baseline", days / "servers_data.parquet", "--no-report", "-q"]
        r = _cli("run", *args, "--out", out / engine, "--engine", engine, cwd=out)
        assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_run_is_the_same_on_spark_and_duckdb(runs):
    expected = _devices(runs / "duckdb")
    assert {f for d in expected for f in d[2].split(";")} >= {"botnet", "exfiltration", "cnc", "external_abuse"}
    assert _devices(runs / "spark") == expected
    assert not (runs / "spark-warehouse").exists() and not (runs / "metastore_db").exists()


def test_a_clean_day_is_clean_on_spark_too(days, runs, tmp_path):
    """The clean day checked against its own profile: the same (no device at medium or more)."""
    found = {}
    for engine in ("duckdb", "spark"):
        r = _cli("detect", days / "data.parquet", "--baseline", runs / engine / "profile", "--servers",
                 days / "servers_data.parquet", "--out", tmp_path / engine, "--engine", engine, "--no-report", "-q",
                 cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        found[engine] = _devices(tmp_path / engine)
    assert found["spark"] == found["duckdb"]
    assert not [d for d in found["duckdb"] if d[1] != "low"]


def test_hunt_on_a_zeek_capture_is_the_same_on_spark(tmp_path):
    cap = LABELLED / "rita-proxy-beacon" / "conn.log"
    duck = _cli("hunt", cap, "--out", tmp_path / "duck", "-q")
    spark = _cli("hunt", cap, "--out", tmp_path / "spark", "--engine", "spark", "-q", cwd=tmp_path)
    assert duck.returncode == 0, duck.stderr
    assert spark.returncode == 0, spark.stderr[-2000:]
    assert _devices(tmp_path / "spark") == _devices(tmp_path / "duck") != []
    assert (tmp_path / "spark" / "report.html").exists()


def _session(master: str, user_conf: dict, written: dict):
    """Just enough of a SparkSession for engine._local_shuffle_partitions."""
    conf = SimpleNamespace(contains=lambda k: k in user_conf)
    sc = SimpleNamespace(master=master, defaultParallelism=2, getConf=lambda: conf)
    return SimpleNamespace(sparkContext=sc, conf=SimpleNamespace(set=written.__setitem__))


@pytest.mark.parametrize("master, user_conf, expected", [
    ("local[*]", {}, {"spark.sql.shuffle.partitions": "2"}),            # one partition per local core
    ("local[2]", {"spark.sql.shuffle.partitions": "64"}, {}),           # the user's own --conf stays
    ("spark://head:7077", {}, {}),                                      # a cluster keeps its setting
])
def test_local_spark_uses_one_shuffle_partition_per_core(master, user_conf, expected):
    from flowsiem.engine import _local_shuffle_partitions

    written = {}
    _local_shuffle_partitions(_session(master, user_conf, written))
    assert written == expected
