"""Outputs are whole or absent: atomic writes, and a run killed at any moment leaves no truncated file."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import NET, hosts
from flowsiem.atomic import open_replacing, replacing

OUTPUTS = ("alerts.jsonl", "devices.csv", "profile/profile.json")


def test_replacing_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "devices.csv"
    target.write_text("old complete content\n")
    with pytest.raises(RuntimeError):
        with open_replacing(target) as fh:
            fh.write("half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old complete content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["devices.csv"]  # no temporary left behind


def test_replacing_publishes_only_when_done(tmp_path):
    target = tmp_path / "alerts.jsonl"
    with replacing(target) as tmp:
        tmp.write_text("{}\n")
        assert not target.exists()  # readers never see the file being written
        assert tmp.parent == target.parent  # same file system: the rename is atomic
    assert target.read_text() == "{}\n"


def _cli(*args):
    return [sys.executable, "-m", "flowsiem.cli", *map(str, args)]


def _contents(out):
    """What a reader would take from each output: parsed, with the run's own timing left out."""
    got = {}
    for name in OUTPUTS:
        p = out / name
        if not p.exists():
            continue
        text = p.read_text()
        if name.endswith(".jsonl"):
            got[name] = sorted((json.loads(line)["rule"]["id"], json.loads(line)["source"]["ip"])
                               for line in text.splitlines())
        elif name.endswith(".csv"):
            got[name] = [(r["ip"], r["severity"], r["rules"]) for r in csv.DictReader(text.splitlines())]
        else:
            prof = json.loads(text)
            got[name] = {k: v for k, v in prof.items() if k != "seconds"}
    return got


def _small_run(tmp_path):
    """(out, the `flowsiem run` command) for a small generated day (scale 0.02)."""
    days, out = tmp_path / "d", tmp_path / "out"
    subprocess.run(_cli("generate", "--scenario", "obvious", "--seed", "5", "--scale", "0.02", "--out", days,
                        "--quiet"), check=True)
    return out, _cli("run", days / "data.parquet", days / "test.parquet", "--servers", days / "servers.parquet",
                     "--out", out, "--no-report", "--quiet")


def test_killed_run_leaves_old_or_complete_outputs(tmp_path):
    out, cmd = _small_run(tmp_path)
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    took = time.monotonic() - t0
    complete = _contents(out)
    assert set(complete) == set(OUTPUTS) and complete["devices.csv"], "the reference run must flag devices"

    # Killed at several moments of a re-run over the complete outputs (fresh=False) or of a first
    # run into an empty directory: each output is the complete one or absent, never cut short.
    for sig, frac, fresh in [(signal.SIGKILL, 0.6, False), (signal.SIGKILL, 0.95, False),
                             (signal.SIGKILL, 0.9, True), (signal.SIGTERM, 0.85, True)]:
        if fresh:
            for name in OUTPUTS:
                (out / name).unlink(missing_ok=True)
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(took * frac)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        got = _contents(out)
        for name, value in got.items():
            assert value == complete[name], (name, sig, frac, fresh)
        if not fresh:
            assert set(got) == set(OUTPUTS), (sig, frac)
        if sig == signal.SIGTERM and p.returncode == -signal.SIGTERM:
            # Python restores the default handler while the interpreter shuts down: a SIGTERM
            # then kills it outright, which is harmless only once every output is written.
            assert set(got) == set(OUTPUTS), "killed by SIGTERM before its outputs were complete"
        elif sig == signal.SIGTERM and p.returncode != 0:  # not already finished
            assert p.returncode == 128 + signal.SIGTERM and b"Traceback" not in err, err
    # Temporaries of killed writes are hidden files beside the outputs, never taken for results.
    assert not [p for p in out.rglob("*.partial") if not p.name.startswith(".")]


def test_sigterm_inside_a_query_still_exits_as_terminated(monkeypatch, capsys):
    # DuckDB catches the handler's SystemExit mid-query and raises "Query interrupted" instead
    # (seen in CI): that must exit 128+15 like any other termination, not as an internal error.
    from flowsiem import cli

    def query_interrupted(*args, **kwargs):
        try:
            cli._terminated(signal.SIGTERM, None)
        except SystemExit:
            raise RuntimeError("Query interrupted") from None

    monkeypatch.setattr(cli, "app", query_interrupted)
    monkeypatch.setattr(cli, "_TERMINATED_BY", [])
    with pytest.raises(SystemExit) as exc:
        cli.main(["run"])
    assert exc.value.code == 128 + signal.SIGTERM
    assert "internal error" not in capsys.readouterr().err


def test_scratch_of_killed_runs_is_removed_by_the_next(tmp_path, monkeypatch):
    from flowsiem.engine import _scratch_dir

    monkeypatch.setenv("FLOWSIEM_TMP", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"run-{dead.pid}-abc123"
    stale.mkdir()
    (stale / "work.duckdb").write_bytes(b"x" * 10)
    mine = _scratch_dir()
    assert not stale.exists()
    assert os.path.basename(mine).startswith(f"run-{os.getpid()}-")
    assert _scratch_dir() != mine and os.path.isdir(mine)  # a live run's directory is kept


def test_all_null_byte_columns_run_without_warnings_or_crash(office, detect_day):
    # Some exporters leave byte counts empty; such a day must run (pytest turns any warning raised
    # from flowsiem's code into an error), and its alerts' example flows show the bytes as unknown.
    base, test = office(seed=4), office(seed=5)
    for day in (base, test):
        day["up_bytes"] = pd.array([None] * len(day), dtype="Int64")
        day["down_bytes"] = pd.array([None] * len(day), dtype="Int64")
    # a horizontal scan from one office host, so that an alert with example flows exists
    scan = pd.DataFrame({"timestamp": range(4_000_000, 4_000_000 + 300), "src_ip": hosts(5)[4],
                         "dst_ip": [f"{NET}.{100 + i % 150}" for i in range(300)], "proto": "tcp",
                         "port": 445, "up_bytes": pd.array([None] * 300, dtype="Int64"),
                         "down_bytes": pd.array([None] * 300, dtype="Int64")})
    res = detect_day(base, pd.concat([test, scan], ignore_index=True))
    examples = [e for a in res.alerts for e in a.examples]
    assert examples and all(e["up_bytes"] is None for e in examples)


def test_replaced_files_keep_usual_permissions(tmp_path):
    new, old = tmp_path / "new.csv", tmp_path / "old.csv"
    old.write_text("x\n")
    os.chmod(old, 0o640)
    for p in (new, old):
        with open_replacing(p) as fh:
            fh.write("y\n")
    umask = os.umask(0)
    os.umask(umask)
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask
    assert old.stat().st_mode & 0o777 == 0o640


def test_no_network_access_at_run_time(tmp_path, monkeypatch):
    # Everything a run needs ships with flowsiem (GeoIP data, DuckDB's parquet and json readers):
    # with every socket refused, generate + run with the report + hunt on Zeek JSON still work.
    import socket

    from flowsiem import cli

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access at run time: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    days, out = tmp_path / "d", tmp_path / "out"

    def flowsiem(*args):
        with pytest.raises(SystemExit) as exc:
            cli.main([str(a) for a in args])
        assert exc.value.code in (0, None), args

    flowsiem("generate", "--scenario", "obvious", "--seed", "2", "--scale", "0.02", "--out", days, "--quiet")
    flowsiem("run", days / "data.parquet", days / "test.parquet", "--servers", days / "servers.parquet",
             "--out", out, "--quiet")
    assert (out / "report.html").stat().st_size > 0 and (out / "devices.csv").read_text().count("\n") > 1
    zeek_json = Path(__file__).resolve().parent / "fixtures" / "readers" / "zeek_conn.json"
    flowsiem("hunt", zeek_json, "--out", tmp_path / "hunt", "--no-report", "--quiet")


def test_run_twice_into_the_same_out_is_idempotent(tmp_path):
    # Re-running the same job (cron retrying, a pipeline re-played) over its own outputs gives
    # the same alerts and devices, byte for byte: nothing from the earlier run leaks in.
    out, cmd = _small_run(tmp_path)
    subprocess.run(cmd, check=True)
    first = {name: (out / name).read_bytes() for name in ("alerts.jsonl", "devices.csv")}
    assert first["alerts.jsonl"].count(b"\n") > 0 and first["devices.csv"].count(b"\n") > 1
    subprocess.run(cmd, check=True)
    for name, content in first.items():
        assert (out / name).read_bytes() == content, name


def test_a_memory_limit_changes_where_tables_live_not_the_results(tmp_path):
    # With --memory-limit the kept tables live in a scratch database file and DuckDB pages to disk
    # beyond the limit (another storage path than the default in-memory store): the alerts and
    # devices must be the same, byte for byte.
    out, cmd = _small_run(tmp_path)
    subprocess.run(cmd, check=True)
    limited = tmp_path / "limited"
    r = subprocess.run([*cmd[:cmd.index("--out")], "--out", str(limited), "--no-report", "--quiet",
                        "--memory-limit", "64MB"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in ("alerts.jsonl", "devices.csv"):
        assert (limited / name).read_bytes() == (out / name).read_bytes(), name


_LARGER_THAN_THE_LIMIT = """
import json, resource
from flowsiem.engine import connect
engine = connect("duckdb", memory_limit="64MB", threads=2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
flows = engine.materialize(engine.con.sql(
    "SELECT i AS flow, i % 1000003 AS host, random() AS bytes FROM range(40000000) r(i)"))
per_host = engine.materialize(flows.group_by("host").aggregate(n=flows.count(), total=flows.bytes.sum()))
kept = engine.con.raw_sql("SELECT sum(total_blocks * block_size) / 2**20 FROM pragma_database_size()").fetchone()[0]
print(json.dumps({"hosts": int(per_host.count().execute()), "flows": int(per_host.n.sum().execute()),
                  "kept_mib": float(kept),
                  "grew_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before}))
"""


def test_tables_larger_than_the_memory_limit_are_paged_to_disk(tmp_path):
    # A day larger than memory must spill, not be killed. Under a 64 MB limit, keep 40 M rows
    # (random doubles do not compress: several times the limit) and group them by a million keys:
    # the answer must be whole while the process grows by far less than what it keeps.
    env = {**os.environ, "FLOWSIEM_TMP": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", _LARGER_THAN_THE_LIMIT], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["hosts"] == 1_000_003 and got["flows"] == 40_000_000
    assert got["kept_mib"] > 4 * 64  # what the engine keeps is well beyond the limit...
    assert got["grew_mib"] < got["kept_mib"] / 2, got  # ...and most of it is on disk, not in the process
