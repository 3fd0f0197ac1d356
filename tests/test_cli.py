"""The `flowsiem` command: exit codes, one-line errors, outputs where it says."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flowsiem.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    assert "generate" in r.stdout and "profile" in r.stdout


def test_generate_then_profile(tmp_path):
    r = run("generate", "--scenario", "clean", "--seed", "3", "--scale", "0.02", "--out", tmp_path / "d", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "truth.json").exists()
    r = run("profile", tmp_path / "d" / "data.parquet", "--servers", tmp_path / "d" / "servers.parquet",
            "--out", tmp_path / "p", "--bucket", "1h")
    assert r.returncode == 0, r.stderr
    assert "Internal servers" in r.stdout
    assert "timestamps: centiseconds (guessed" in r.stderr
    p = json.loads((tmp_path / "p" / "profile.json").read_text())
    truth = json.loads((tmp_path / "d" / "truth.json").read_text())
    assert p["internal_networks"] == truth["internal_networks"]
    assert p["traffic"]["internal_internal"]["timeline"]["bucket_seconds"] == 3600
    for name in ("edges", "hosts", "host_hours", "services", "destinations", "ip_info", "clients"):
        assert (tmp_path / "p" / p["baseline_tables"][name]).exists()


def test_quiet_silences_diagnostics(tmp_path):
    run("generate", "--scenario", "clean", "--seed", "1", "--scale", "0.02", "--out", tmp_path / "d", "--quiet")
    r = run("profile", tmp_path / "d" / "data.parquet", "--out", tmp_path / "p", "--quiet")
    assert r.returncode == 0 and r.stderr == "" and r.stdout == ""


@pytest.mark.parametrize("args,needle", [
    (("profile", "/nonexistent/flows.parquet", "--out", "OUT"), "no such file"),
    (("profile", "BAD", "--out", "OUT"), "column 'dst_ip', 1 row"),
    (("profile", "BAD", "--out", "OUT", "--bucket", "soon"), "--bucket"),
    (("profile", "BAD", "--out", "OUT", "--internal", "10.0.0.0/99"), "--internal"),
    (("profile", "BAD", "--out", "OUT", "--engine", "oracle"), "unknown engine"),
    (("generate", "--scenario", "nope", "--out", "OUT"), "unknown scenario"),
    (("generate",), "--out"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,src_ip,dst_ip,proto,port,up_bytes,down_bytes\n1,10.0.0.1,10.0.0.999,tcp,443,1,2\n")
    args = [str(bad) if a == "BAD" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    err = r.stderr.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err
