"""Hostile input through the real command: each case gets its exact exit status and a one-line
message naming the file (and column, rows, an example where there is one) -- never a traceback or
a Python warning -- or, with --on-bad-rows skip, a run that says what it left out and keeps it in
OUT/rejected.parquet."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_office_day


def flowsiem(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flowsiem.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.startswith("error:") and "Traceback" not in err and "Warning" not in err, err
    assert len(err.replace("\n", " ")) < 400, err
    for n in needles:
        assert n in " ".join(err.split()), (n, err)  # rich wraps long lines


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    df = make_office_day(seed=3, n_hosts=12, flows_per_host=(40, 60))
    df.to_parquet(d / "good.parquet", index=False)
    df.to_csv(d / "good.csv", index=False)
    return d, df


def _csv(d, df, name, change=None, text=None):
    path = d / name
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path
    df = df.copy()
    if change:
        change(df)
    df.to_csv(path, index=False)
    return path


def _set(col, value, row=5):
    def change(df):
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
    return change


CASES = [
    # name, how to make it, what the message must say
    ("empty.csv", dict(text=""), ["empty.csv", "file is empty"]),
    ("header.csv", dict(text="timestamp,src_ip,dst_ip,proto,port,up_bytes,down_bytes\n"),
     ["header.csv", "no flow records"]),
    ("missing.csv", dict(change=lambda df: df.drop(columns=["dst_ip"], inplace=True)),
     ["missing.csv", "column 'dst_ip'", "required column is missing"]),
    ("renamed.csv", dict(change=lambda df: df.rename(columns={"src_ip": "source"}, inplace=True)),
     ["renamed.csv", "column 'src_ip'", "the file has: timestamp, source"]),
    ("strings.csv", dict(change=_set("up_bytes", "lots")),
     ["strings.csv", "column 'up_bytes', 1 row", "not whole numbers", "'lots'"]),
    ("badip.csv", dict(change=_set("src_ip", "10.0.0.300")),
     ["badip.csv", "column 'src_ip', 1 row", "invalid IP addresses", "'10.0.0.300'"]),
    ("negative.csv", dict(change=_set("down_bytes", -5)),
     ["negative.csv", "column 'down_bytes', 1 row", "negative byte counts", "-5"]),
    ("huge.csv", dict(change=_set("up_bytes", 10**18)),  # an exabyte in one flow
     ["huge.csv", "column 'up_bytes', 1 row", "byte counts out of range", "1000000000000000000", "9.0 PB"]),
    ("badport.csv", dict(change=_set("port", 70000)),
     ["badport.csv", "column 'port', 1 row", "0..65535", "70000"]),
    ("badts.csv", dict(change=_set("timestamp", "noon")),
     ["badts.csv", "column 'timestamp', 1 row", "cannot be read", "'noon'"]),
    ("future.csv", dict(change=_set("timestamp", 10**13)),  # centiseconds: the year 5138
     ["future.csv", "column 'timestamp', 1 row", "out of range as 'centiseconds'", "10000000000000"]),
    ("negts.csv", dict(change=_set("timestamp", -500)),
     ["negts.csv", "column 'timestamp', 1 row", "out of range", "-500"]),
    ("latin1.csv", dict(text="timestamp,src_ip,dst_ip,proto,port,up_bytes,down_bytes\n"
                             "1,10.0.0.1,10.0.0.2,t\xe9p,443,1,2\n".encode("latin-1")),
     ["latin1.csv", "1 row", "not UTF-8 text", "t\\xe9p"]),
]


@pytest.mark.parametrize("name,how,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_csv_is_one_line_exit_2(day, tmp_path, name, how, needles):
    d, df = day
    path = _csv(tmp_path, df, name, **how)
    _one_line_error(flowsiem("hunt", path, "--out", tmp_path / "out", "--no-report"), *needles)
    assert not (tmp_path / "out" / "alerts.jsonl").exists()  # nothing that looks like a result


def test_corrupt_and_truncated_parquet(day, tmp_path):
    d, _ = day
    data = (d / "good.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    _one_line_error(flowsiem("hunt", tmp_path / "cut.parquet", "--out", tmp_path / "o"), "cut.parquet",
                    "not a readable parquet file")
    bad = bytearray(data)
    bad[len(data) // 3: len(data) // 3 + 200] = b"\0" * 200
    (tmp_path / "corrupt.parquet").write_bytes(bytes(bad))
    _one_line_error(flowsiem("hunt", tmp_path / "corrupt.parquet", "--out", tmp_path / "o"), "corrupt.parquet")


def test_all_null_column_in_parquet(day, tmp_path):
    d, df = day
    t = pa.Table.from_pandas(df, preserve_index=False)
    t = t.set_column(t.schema.get_field_index("dst_ip"), "dst_ip", pa.nulls(len(df), pa.string()))
    pq.write_table(t, tmp_path / "nulls.parquet")
    _one_line_error(flowsiem("hunt", tmp_path / "nulls.parquet", "--out", tmp_path / "o"), "nulls.parquet",
                    "column 'dst_ip'", f"{len(df):,} rows", "missing or invalid IP addresses")


def test_gzip_cut_short_reads_the_complete_part_and_says_so(day, tmp_path):
    d, _ = day
    z = gzip.compress((d / "good.csv").read_bytes())
    (tmp_path / "live.csv.gz").write_bytes(z[: len(z) * 2 // 3])
    r = flowsiem("hunt", tmp_path / "live.csv.gz", "--out", tmp_path / "o", "--no-report")
    assert r.returncode == 0, r.stderr
    assert "gzip stream ends early in live.csv.gz" in " ".join(r.stderr.split())


def test_empty_directory_and_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(flowsiem("hunt", tmp_path / "empty", "--out", tmp_path / "o"), "directory has no files")
    _one_line_error(flowsiem("hunt", tmp_path / "nope.parquet", "--out", tmp_path / "o"), "no such file")
    # A name with [brackets] is shown as it is, not taken for console markup.
    (tmp_path / "[bold]day.csv").write_text("")
    _one_line_error(flowsiem("hunt", tmp_path / "[bold]day.csv", "--out", tmp_path / "o"), "[bold]day.csv")


def test_mixed_ipv4_ipv6_and_duplicates_are_fine(day, tmp_path):
    d, df = day
    df = df.copy()
    df.loc[3, "src_ip"], df.loc[4, "dst_ip"] = "2001:db8::5", "fe80::1"
    path = tmp_path / "mixed.csv"
    pd.concat([df, df.head(50)]).to_csv(path, index=False)
    r = flowsiem("hunt", path, "--out", tmp_path / "o", "--no-report")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


def test_skip_leaves_bad_rows_out_and_keeps_them(day, tmp_path):
    d, df = day
    df = df.copy()
    df["up_bytes"] = df["up_bytes"].astype(object)
    df.loc[5, "up_bytes"] = "lots"
    df.loc[9, "src_ip"] = "10.0.0.300"
    df.loc[9, "up_bytes"] = -1  # two problems: the first in reporting order is the reason
    path = tmp_path / "dirty.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "out"
    r = flowsiem("hunt", path, "--out", out, "--no-report", "--on-bad-rows", "skip")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert f"skipped 2 rows of {len(df):,}" in said, said
    assert str(out / "rejected.parquet") in "".join(r.stderr.split()), said  # a long path is folded
    rej = pd.read_parquet(out / "rejected.parquet").sort_values("reason")
    assert list(rej.reason) == ["byte count not a whole number", "negative byte count"]
    assert set(rej.up_bytes) == {"lots", "-1"} and set(rej.input) == {"test"}
    # A clean re-run into the same directory leaves no stale rejected rows behind.
    r = flowsiem("hunt", d / "good.csv", "--out", out, "--no-report", "--on-bad-rows", "skip")
    assert r.returncode == 0 and not (out / "rejected.parquet").exists()
    _one_line_error(flowsiem("hunt", path, "--out", out, "--on-bad-rows", "maybe"), "--on-bad-rows")


def test_bad_baseline_directories_and_rules(day, tmp_path):
    d, _ = day
    args = ("detect", d / "good.parquet", "--out", tmp_path / "o", "--baseline")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "baseline").mkdir()  # a profile killed before its profile.json
    _one_line_error(flowsiem(*args, tmp_path / "half"), "no profile.json here", "interrupted")
    (tmp_path / "future").mkdir()
    (tmp_path / "future" / "profile.json").write_text(json.dumps({"schema_version": 99}))
    _one_line_error(flowsiem(*args, tmp_path / "future"), "profile schema version 99 is not supported")
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "profile.json").write_text('{"schema_version": 1, "hosts": {')
    _one_line_error(flowsiem(*args, tmp_path / "torn"), "profile.json is not valid JSON")
    (tmp_path / "rules.yaml").write_text("rules: [unclosed\n  : x")
    _one_line_error(flowsiem("hunt", d / "good.parquet", "--out", tmp_path / "o", "--rules", tmp_path / "rules.yaml"),
                    "rules.yaml")


def test_addresses_need_spark(tmp_path):
    # hdfs://, s3a://, file:// ... are opened by Spark itself; DuckDB says what to do.
    r = flowsiem("hunt", "s3a://bucket/flows/day.parquet", "--out", tmp_path / "o", "-q")
    _one_line_error(r, "s3a://bucket/flows/day.parquet", "--engine spark")
    from flowsiem.engine import connect
    from flowsiem.errors import UsageError
    from flowsiem.io import read_flows

    with pytest.raises(UsageError, match="mix addresses"):
        read_flows(["s3a://bucket/day.parquet", tmp_path / "local.parquet"], connect("duckdb"))


# --- absurd byte counts -------------------------------------------------------------------------

MAX_FLOW_BYTES = 2**53  # the documented bound: 9.0 PB in one flow (README, What flowsiem guarantees)


def test_byte_counts_beyond_the_bound_are_out_of_range(day, tmp_path):
    d, df = day
    # An int64 parquet column: 2**53 is the largest count taken, one more is out of range.
    for value, ok in ((MAX_FLOW_BYTES, True), (MAX_FLOW_BYTES + 1, False)):
        big = df.copy()
        big.loc[5, "up_bytes"] = value
        path = tmp_path / f"up{value}.parquet"
        big.to_parquet(path, index=False)
        r = flowsiem("hunt", path, "--out", tmp_path / "o", "--no-report", "-q")
        if ok:
            assert r.returncode == 0 and r.stderr == "", r.stderr
        else:
            _one_line_error(r, path.name, "column 'up_bytes', 1 row", "byte counts out of range", str(value))
    # Beyond int64 (text, or a float column): out of range as well, not "not whole numbers".
    path = _csv(tmp_path, df, "int64.csv", _set("down_bytes", 10**20))
    r = flowsiem("hunt", path, "--out", tmp_path / "o", "--no-report")
    _one_line_error(r, "int64.csv", "column 'down_bytes', 1 row", "byte counts out of range",
                    "'100000000000000000000'")
    assert "whole numbers" not in r.stderr
    flt = df.astype({"up_bytes": "float64"})
    flt.loc[7, "up_bytes"] = 1e20
    flt.to_parquet(tmp_path / "float.parquet", index=False)
    r = flowsiem("hunt", tmp_path / "float.parquet", "--out", tmp_path / "o", "--no-report")
    _one_line_error(r, "float.parquet", "column 'up_bytes', 1 row", "byte counts out of range")
    assert "whole numbers" not in r.stderr


def test_skip_sets_absurd_byte_counts_aside(day, tmp_path):
    d, df = day
    df = df.copy().astype({"up_bytes": object, "down_bytes": object})
    df.loc[5, "up_bytes"], df.loc[9, "down_bytes"], df.loc[11, "up_bytes"] = 10**18, 10**20, "lots"
    path = tmp_path / "absurd.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "out"
    r = flowsiem("hunt", path, "--out", out, "--no-report", "--on-bad-rows", "skip")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert f"skipped 3 rows of {len(df):,}" in said and "byte count out of range (over 9.0 PB): 2" in said, said
    rej = pd.read_parquet(out / "rejected.parquet").sort_values("reason")
    assert list(rej.reason) == ["byte count not a whole number"] + ["byte count out of range (over 9.0 PB)"] * 2
    assert set(rej.up_bytes) | set(rej.down_bytes) >= {"1000000000000000000", "100000000000000000000", "lots"}


# --- a baseline with no flows, a test day of strangers ------------------------------------------

@pytest.fixture(scope="module")
def baseline(day, tmp_path_factory):
    d, _ = day
    out = tmp_path_factory.mktemp("baseline")
    r = flowsiem("profile", d / "good.parquet", "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    return out


def test_baseline_with_no_flows(day, tmp_path):
    d, df = day
    df.head(0).to_csv(tmp_path / "header.csv", index=False)
    df.head(0).to_parquet(tmp_path / "norows.parquet", index=False)
    for name, says in (("header.csv", "no flow records"), ("norows.parquet", "file has no rows")):
        r = flowsiem("profile", tmp_path / name, "--out", tmp_path / "p")
        _one_line_error(r, name, says)
        assert not (tmp_path / "p" / "profile.json").exists()
    r = flowsiem("run", tmp_path / "header.csv", d / "good.csv", "--out", tmp_path / "r", "--no-report")
    _one_line_error(r, "header.csv", "no flow records")
    assert not (tmp_path / "r" / "alerts.jsonl").exists()


def test_test_day_of_hosts_unknown_to_the_baseline(day, baseline, tmp_path):
    d, df = day
    # The same office on new addresses in the same network (renumbered by DHCP, a new site): the
    # servers are the baseline's, no host is.
    hosts = sorted(set(df.src_ip))
    new = {h: f"10.9.8.{100 + i}" for i, h in enumerate(hosts)}
    strangers = df.assign(src_ip=df.src_ip.replace(new), dst_ip=df.dst_ip.replace(new))
    strangers.to_csv(tmp_path / "strangers.csv", index=False)
    r = flowsiem("detect", tmp_path / "strangers.csv", "--baseline", baseline, "--out", tmp_path / "o",
                 "--no-report")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    note = [line for line in r.stderr.splitlines() if "none of the test day's" in line]
    assert len(note) == 1, r.stderr
    said = " ".join(r.stderr.split())
    assert (f"none of the test day's {len(hosts)} internal hosts is in the baseline: each is judged "
            f"against its peers only") in said, said
    assert (tmp_path / "o" / "devices.csv").exists()
    # A day of known hosts gets no such note.
    r = flowsiem("detect", d / "good.csv", "--baseline", baseline, "--out", tmp_path / "o2", "--no-report")
    assert r.returncode == 0 and "none of the test day's" not in r.stderr, r.stderr


# --- --on-bad-rows skip in every command that writes files, and in explain -----------------------

@pytest.fixture(scope="module")
def dirty(day):
    d, df = day
    df = df.copy().astype({"up_bytes": object})
    df.loc[5, "up_bytes"] = "lots"
    df.loc[9, "down_bytes"] = -1
    path = d / "dirty.csv"
    df.to_csv(path, index=False)
    return path, len(df)


def _kept(path, inputs):
    rej = pd.read_parquet(path)
    assert sorted(rej.reason) == ["byte count not a whole number", "negative byte count"] * (len(inputs) // 2), rej
    assert sorted(rej.input) == sorted(inputs)
    assert "lots" in set(rej.up_bytes) and "-1" in set(rej.down_bytes)


def test_skip_in_profile_detect_and_run_keeps_the_rows(dirty, baseline, tmp_path):
    path, n = dirty

    def skip(*args):
        r = flowsiem(*args, "--on-bad-rows", "skip")
        assert r.returncode == 0, r.stderr
        said = " ".join(r.stderr.split())
        assert f"skipped 2 rows of {n:,} (byte count not a whole number: 1; negative byte count: 1)" in said, said
        return "".join(r.stderr.split())  # paths may be folded across lines

    p = tmp_path / "p"
    said = skip("profile", path, "--out", p)
    _kept(p / "rejected.parquet", ["baseline"] * 2)
    assert f"{p / 'rejected.parquet'}" in said, said
    o = tmp_path / "o"
    said = skip("detect", path, "--baseline", baseline, "--out", o, "--no-report")
    _kept(o / "rejected.parquet", ["test"] * 2)
    assert f"{o / 'rejected.parquet'}" in said, said
    r = tmp_path / "r"
    said = skip("run", path, path, "--out", r, "--no-report")
    _kept(r / "profile" / "rejected.parquet", ["baseline"] * 2)  # the clean day's
    _kept(r / "rejected.parquet", ["test"] * 2)                   # the test day's
    assert f"{r / 'profile' / 'rejected.parquet'}" in said and f"{r / 'rejected.parquet'}" in said, said


def test_explain_skip_says_what_it_left_out_and_claims_no_file(dirty, baseline, tmp_path):
    path, n = dirty
    r = flowsiem("explain", "10.9.8.1", path, "--baseline", baseline, "--on-bad-rows", "skip", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert f"skipped 2 rows of {n:,}" in said, said
    assert "kept in" not in said and "explain writes no files: the skipped rows are not kept" in said, said
    assert not list(tmp_path.rglob("rejected.parquet")) and not list(baseline.rglob("rejected.parquet"))
