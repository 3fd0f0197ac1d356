"""Readers (flowsiem.io): every format into the canonical table, the time-unit guess, sources,
format sniffing, and one precise InputError per kind of bad input."""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsiem.engine import connect
from flowsiem.errors import InputError, UsageError
from flowsiem.io import TIME_UNITS, ReadResult, guess_time_unit, read_flows
from flowsiem.io.canonical import IP_PATTERN
from flowsiem.io.sniff import sniff
from flowsiem.schema import CANONICAL_TYPES

FIX = Path(__file__).resolve().parent / "fixtures" / "readers"


@pytest.fixture(scope="module")
def engine():
    return connect("duckdb")


def rows(res: ReadResult) -> list[dict]:
    return res.table.to_pyarrow().to_pylist()


def write_parquet(path: Path, n: int = 4, **over) -> Path:
    """A small seed-layout parquet file; keyword arguments replace columns."""
    cols = {
        "timestamp": [1_430_000 + i * 100_000 for i in range(n)],
        "src_ip": [f"192.168.101.{10 + i}" for i in range(n)],
        "dst_ip": ["192.168.101.226"] * n,
        "proto": ["tcp"] * n,
        "port": [443] * n,
        "up_bytes": [100 * (i + 1) for i in range(n)],
        "down_bytes": [1000 * (i + 1) for i in range(n)],
    }
    cols.update(over)
    pq.write_table(pa.table(cols), path)
    return path


def write_csv(path: Path, header: str, lines: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


def zeek_tsv(path: Path, fields: list[str], lines: list[str], *, log_path: str = "conn") -> Path:
    head = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-",
            f"#path\t{log_path}", "#open\t2024-01-01-00-00-00", "#fields\t" + "\t".join(fields),
            "#types\t" + "\t".join("string" for _ in fields)]
    path.write_text("\n".join(head + lines) + "\n")
    return path


CONN_FIELDS = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
               "orig_bytes", "resp_bytes"]


def conn_line(ts="1700000000.5", src="10.0.0.1", dst="10.0.0.2", proto="tcp", up="10", down="20"):
    return "\t".join([ts, "C1", src, "40000", dst, "443", proto, up, down])


# --- the time unit ----------------------------------------------------------------------------

def test_time_units_exported():
    assert TIME_UNITS == ("auto", "centiseconds", "s", "ms", "us", "ns", "iso")


@pytest.mark.parametrize("lo,hi,unit", [
    (1.43e6, 8.49e6, "centiseconds"),          # the seed: hundredths since midnight
    (0, 8_639_999, "centiseconds"),
    (1.43e6, 8.7e6, "centiseconds"),           # a day whose last flows end after midnight
    (20_000_000, 30_000_000, "s"),
    (1_700_000_000, 1_700_086_400, "s"),
    (1_700_000_000.25, 1_700_000_001.75, "s"),
    (1_700_000_000_000, 1_700_086_400_000, "ms"),
    (1_700_000_000_000_000, 1_700_086_400_000_000, "us"),
    (1_700_000_000_000_000_000, 1_700_086_400_000_000_000, "ns"),
    (-5, 8_000_000, "s"),                     # negative: not day-relative
    ("2024-01-01T00:00:00", "2024-01-02T00:00:00", "iso"),
])
def test_guess_time_unit(lo, hi, unit):
    assert guess_time_unit(lo, hi) == unit


def test_centiseconds_give_hour_of_day_on_date(engine, tmp_path):
    # 3:58:20, 12:00:00 and 23:35:00 in hundredths of a second since midnight
    f = write_parquet(tmp_path / "day.parquet", 3, timestamp=[1_430_000, 4_320_000, 8_490_000])
    res = read_flows(f, engine, date="2024-06-17")
    assert res.fmt == "flows-parquet"
    assert res.time_unit == "centiseconds" and res.time_unit_guessed
    got = [r["ts"] for r in rows(res)]
    assert got == [dt.datetime(2024, 6, 17, 3, 58, 20), dt.datetime(2024, 6, 17, 12),
                   dt.datetime(2024, 6, 17, 23, 35)]
    hours = res.table.select(h=res.table.ts.hour()).to_pyarrow().column("h").to_pylist()
    assert hours == [3, 12, 23]


def test_centiseconds_default_date_is_epoch_day(engine, tmp_path):
    f = write_parquet(tmp_path / "day.parquet", 1, timestamp=[360_000])
    assert rows(read_flows(f, engine))[0]["ts"] == dt.datetime(1970, 1, 1, 1)


@pytest.mark.parametrize("unit,value", [("s", 1_700_000_000), ("ms", 1_700_000_000_000),
                                        ("us", 1_700_000_000_000_000),
                                        ("ns", 1_700_000_000_000_000_000)])
def test_epoch_units_guessed_and_converted(engine, tmp_path, unit, value):
    f = write_parquet(tmp_path / "e.parquet", 1, timestamp=[value])
    res = read_flows(f, engine)
    assert res.time_unit == unit
    assert rows(res)[0]["ts"] == dt.datetime(2023, 11, 14, 22, 13, 20)


def test_float_epoch_seconds_keep_microseconds(engine, tmp_path):
    f = write_parquet(tmp_path / "e.parquet", 1, timestamp=[1_700_000_000.123456])
    assert rows(read_flows(f, engine))[0]["ts"] == dt.datetime(2023, 11, 14, 22, 13, 20, 123456)


def test_explicit_time_unit_is_not_guessed(engine, tmp_path):
    f = write_parquet(tmp_path / "e.parquet", 1, timestamp=[1_000])
    res = read_flows(f, engine, time_unit="s")
    assert res.time_unit == "s" and not res.time_unit_guessed
    assert rows(res)[0]["ts"] == dt.datetime(1970, 1, 1, 0, 16, 40)


def test_wrong_time_unit_is_refused_not_overflowed(engine, tmp_path):
    f = write_parquet(tmp_path / "e.parquet", 1, timestamp=[1_700_000_000_000_000_000])
    with pytest.raises(InputError) as err:
        read_flows(f, engine, time_unit="s")
    assert err.value.column == "timestamp" and "--time-unit" in str(err.value)


@pytest.mark.parametrize("good, absurd, unit", [
    (1_700_000_000, 1_700_000_000_000, "s"),         # one row in ms among epoch seconds
    (1_430_000, 10_000_000_000_000, "centiseconds"),  # the seed's layout, one row from nowhere
    (1_700_000_000_000, 1_700_000_000_000_000_000, "ms"),
])
def test_one_absurd_timestamp_does_not_change_the_unit(engine, tmp_path, good, absurd, unit):
    # The extremes disagree, so the typical value decides the unit; the absurd row is a row-level
    # problem named with its value (an error, or with --on-bad-rows skip a rejected row).
    f = write_parquet(tmp_path / "t.parquet", 9, timestamp=[good + i for i in range(8)] + [absurd])
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    assert (err.value.column, err.value.rows) == ("timestamp", 1)
    assert f"as '{unit}'" in str(err.value) and repr(absurd) in str(err.value)
    res = read_flows(f, engine, on_bad_rows="skip")
    assert res.time_unit == unit and res.rejected_rows == 1
    assert res.table.count().execute() == 8
    assert res.rejected.to_pyarrow().column("ts").to_pylist() == [str(absurd)]


def test_future_and_negative_timestamps_are_refused(engine, tmp_path):
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    for bad in (now + 3 * 86_400, -5.0):
        f = write_parquet(tmp_path / "f.parquet", 3, timestamp=[now - 3600, now - 60, bad])
        with pytest.raises(InputError) as err:
            read_flows(f, engine)
        assert err.value.rows == 1 and "out of range" in str(err.value)
    # clock skew of a few hours is not "the future"
    f = write_parquet(tmp_path / "skew.parquet", 2, timestamp=[now - 60, now + 3 * 3600])
    assert read_flows(f, engine).table.count().execute() == 2
    # ISO text and a --date in the future, too
    g = write_csv(tmp_path / "iso.csv", "timestamp,src_ip,dst_ip,proto,port,up_bytes,down_bytes", [
        "2024-01-02T03:04:05Z,10.0.0.1,10.0.0.2,tcp,80,1,2", "2999-01-02T03:04:05Z,10.0.0.1,10.0.0.2,tcp,80,1,2"])
    with pytest.raises(InputError, match="out of range"):
        read_flows(g, engine)
    h = write_parquet(tmp_path / "cs.parquet", 2)
    with pytest.raises(UsageError, match="in the future"):
        read_flows(h, engine, date="2999-01-01")


def test_parquet_without_statistics_still_guesses(engine, tmp_path):
    t = pa.table({"timestamp": [1_700_000_000_000], "src_ip": ["10.0.0.1"], "dst_ip": ["10.0.0.2"],
                  "proto": ["tcp"], "port": [80], "up_bytes": [1], "down_bytes": [2]})
    pq.write_table(t, tmp_path / "nostats.parquet", write_statistics=False)
    res = read_flows(tmp_path / "nostats.parquet", engine)
    assert res.time_unit == "ms"


def test_iso_text_timestamps(engine, tmp_path):
    f = write_csv(tmp_path / "iso.csv", "timestamp,src_ip,dst_ip,proto,port,up_bytes,down_bytes", [
        "2024-01-02T03:04:05Z,10.0.0.1,10.0.0.2,tcp,80,1,2",
        "2024-01-02 05:04:05+02:00,10.0.0.1,10.0.0.2,tcp,80,1,2",
    ])
    res = read_flows(f, engine)
    assert res.time_unit == "iso"
    assert [r["ts"] for r in rows(res)] == [dt.datetime(2024, 1, 2, 3, 4, 5)] * 2
    with pytest.raises(InputError):
        read_flows(f, engine, time_unit="ms")


def test_bad_options_are_usage_errors(engine):
    with pytest.raises(UsageError):
        read_flows(FIX / "flows.csv", engine, time_unit="fortnights")
    with pytest.raises(UsageError):
        read_flows(FIX / "flows.csv", engine, fmt="pcap")
    with pytest.raises(UsageError):
        read_flows(FIX / "flows.csv", engine, date="17/06/2024")


# --- seed layout ------------------------------------------------------------------------------

def test_parquet_canonical_schema_and_mapping(engine, tmp_path):
    f = write_parquet(tmp_path / "p.parquet", 3, proto=[6, 17, 1])
    res = read_flows(f, engine)
    assert isinstance(res, ReadResult)
    assert res.files == [f]
    assert list(res.table.columns) == list(CANONICAL_TYPES)
    assert {c: str(t) for c, t in res.table.schema().items()} == CANONICAL_TYPES
    got = rows(res)
    assert [r["proto"] for r in got] == ["tcp", "udp", "icmp"]
    assert all(r["src_port"] is None for r in got)
    assert got[0]["up_bytes"] == 100 and got[0]["down_bytes"] == 1000


def test_parquet_column_names_case_insensitive_and_ts_alias(engine, tmp_path):
    t = pa.table({"TS": [1_430_000], "SRC_IP": ["10.0.0.1"], "Dst_Ip": ["10.0.0.2"], "PROTO": ["UDP"],
                  "Port": [53], "src_port": [5353], "UP_BYTES": [1.0], "DOWN_BYTES": [2.0],
                  "extra": ["ignored"]})
    pq.write_table(t, tmp_path / "x.parquet")
    r = rows(read_flows(tmp_path / "x.parquet", engine))[0]
    assert r["proto"] == "udp" and r["src_port"] == 5353 and r["up_bytes"] == 1


def test_parquet_files_with_different_layouts_are_unioned(engine, tmp_path):
    write_parquet(tmp_path / "a.parquet", 2)
    t = pa.table({"TS": [1_500_000.5], "SRC_IP": ["10.0.0.9"], "DST_IP": ["10.0.0.1"], "PROTO": [6],
                  "PORT": [22], "UP_BYTES": [5], "DOWN_BYTES": [6]})
    pq.write_table(t, tmp_path / "b.parquet")
    res = read_flows(tmp_path, engine)
    assert res.table.count().to_pyarrow().as_py() == 3
    assert sorted(r["proto"] for r in rows(res)) == ["tcp", "tcp", "tcp"]


def test_flows_csv(engine):
    res = read_flows(FIX / "flows.csv", engine, date="2024-06-17")
    assert res.fmt == "flows-csv" and res.time_unit == "centiseconds"
    got = rows(res)
    assert [r["ts"].hour for r in got] == [3, 12, 23]
    assert [r["proto"] for r in got] == ["tcp", "udp", "udp"]
    assert got[2]["dst_ip"] == "2001:db8::53"


def test_flows_csv_epoch_ms(engine, tmp_path):
    f = write_csv(tmp_path / "ms.csv", "ts,src_ip,dst_ip,proto,port,up_bytes,down_bytes",
                  ["1700000000000,10.0.0.1,10.0.0.2,tcp,80,1,2"])
    res = read_flows(f, engine)
    assert res.time_unit == "ms"
    assert rows(res)[0]["ts"] == dt.datetime(2023, 11, 14, 22, 13, 20)


# --- sources ----------------------------------------------------------------------------------

def test_glob_source_sorted(engine, tmp_path):
    write_parquet(tmp_path / "day2.parquet", 2)
    write_parquet(tmp_path / "day1.parquet", 3)
    res = read_flows(str(tmp_path / "day*.parquet"), engine)
    assert [p.name for p in res.files] == ["day1.parquet", "day2.parquet"]
    assert res.table.count().to_pyarrow().as_py() == 5


def test_glob_matching_nothing(engine, tmp_path):
    with pytest.raises(InputError, match="no files match"):
        read_flows(str(tmp_path / "*.parquet"), engine)


def test_missing_file(engine, tmp_path):
    with pytest.raises(InputError) as err:
        read_flows(tmp_path / "nope.parquet", engine)
    assert err.value.file == str(tmp_path / "nope.parquet")


def test_directory_skips_non_flow_files(engine, tmp_path):
    write_parquet(tmp_path / "data.parquet", 2)
    (tmp_path / "truth.json").write_text('{"anomalies": []}\n')
    (tmp_path / ".hidden").write_text("x")
    res = read_flows(tmp_path, engine)
    assert [p.name for p in res.files] == ["data.parquet"]
    assert any("truth.json" in n for n in res.notes)


def test_directory_without_flow_files(engine, tmp_path):
    (tmp_path / "README.txt").write_text("hello\n")
    with pytest.raises(InputError, match="no flow files"):
        read_flows(tmp_path, engine)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError):
        read_flows(empty, engine)


def test_list_of_sources(engine, tmp_path):
    a = write_parquet(tmp_path / "a.parquet", 1)
    b = write_parquet(tmp_path / "b.parquet", 2)
    assert read_flows([a, str(b)], engine).table.count().to_pyarrow().as_py() == 3


def test_mixed_formats_refused(engine, tmp_path):
    write_parquet(tmp_path / "a.parquet", 1)
    shutil.copy(FIX / "zeek_conn.log", tmp_path / "conn.log")
    with pytest.raises(InputError, match="separately"):
        read_flows(tmp_path, engine)


# --- sniffing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,fmt", [("zeek_conn.log", "zeek-tsv"), ("zeek_conn.json", "zeek-json"),
                                      ("flows.csv", "flows-csv"), ("nfdump16.csv", "nfdump-csv"),
                                      ("nfdump17.csv", "nfdump-csv")])
def test_sniff_by_content_not_name(tmp_path, name, fmt):
    renamed = tmp_path / "data.bin"  # a name that says nothing
    shutil.copy(FIX / name, renamed)
    assert sniff(renamed).fmt == fmt
    gz = tmp_path / "data2.bin"
    gz.write_bytes(gzip.compress((FIX / name).read_bytes()))
    assert sniff(gz).fmt == fmt


def test_sniff_parquet(tmp_path):
    assert sniff(write_parquet(tmp_path / "x.dat", 1)).fmt == "flows-parquet"


def test_unknown_format(engine, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("just some text\n")
    with pytest.raises(InputError, match="unknown format") as err:
        read_flows(f, engine)
    assert err.value.file == str(f)


def test_forced_format(engine, tmp_path):
    # a flows CSV whose header the sniffer would not recognise (no src_ip) is still read with
    # --format flows, and then fails on the missing column, naming it
    f = write_csv(tmp_path / "x.csv", "timestamp,source,dst_ip,proto,port,up_bytes,down_bytes",
                  ["1,10.0.0.1,10.0.0.2,tcp,80,1,2"])
    with pytest.raises(InputError) as err:
        read_flows(f, engine, fmt="flows")
    assert err.value.column == "src_ip"
    with pytest.raises(InputError) as err:  # also recognised without --format
        read_flows(f, engine)
    assert err.value.column == "src_ip"


# --- Zeek -------------------------------------------------------------------------------------

def test_zeek_tsv_blocks_torn_line_ipv6(engine):
    res = read_flows(FIX / "zeek_conn.log", engine)
    assert res.fmt == "zeek-tsv" and res.time_unit == "s"
    got = rows(res)
    assert len(got) == 6  # two header blocks with other column orders; one torn line skipped
    assert any("skipped 1 torn line" in n for n in res.notes)
    assert any(n.startswith("2 rows of 6 have no byte counts") for n in res.notes)
    assert got[0] == {"ts": dt.datetime(2024, 3, 1, 10), "src_ip": "10.0.0.5", "dst_ip": "93.184.216.34",
                      "proto": "tcp", "port": 443, "src_port": 51000, "up_bytes": 1200, "down_bytes": 54000,
                      # optional columns are carried when the log has them (no packet counts here)
                      "duration": 1.5, "conn_state": "SF", "up_pkts": None, "down_pkts": None}
    icmp = got[2]
    assert icmp["src_ip"] == "fe80::1" and icmp["up_bytes"] is None and icmp["down_bytes"] is None
    assert got[3]["up_bytes"] == 300 and got[3]["down_bytes"] is None
    second_block = got[4]  # _node_name first, orig/resp swapped in the column order
    assert (second_block["src_ip"], second_block["dst_ip"], second_block["port"]) == \
        ("203.0.113.7", "192.168.1.20", 22)
    assert (second_block["up_bytes"], second_block["down_bytes"]) == (800, 5000)
    assert second_block["ts"] == dt.datetime(2024, 3, 1, 11, 0, 0, 1)


def test_zeek_gzip_with_colons_in_name(engine, tmp_path):
    f = tmp_path / "conn.16:00:00-17:00:00.log.gz"
    f.write_bytes(gzip.compress((FIX / "zeek_conn.log").read_bytes()))
    res = read_flows(f, engine)
    assert res.fmt == "zeek-tsv" and res.table.count().to_pyarrow().as_py() == 6


def test_zeek_truncated_gzip_reads_complete_part(engine, tmp_path):
    body = (FIX / "zeek_conn.log").read_bytes() * 50
    f = tmp_path / "conn.log.gz"
    f.write_bytes(gzip.compress(body)[:-200])
    res = read_flows(f, engine)
    assert any("gzip stream ends early" in n for n in res.notes)
    assert 0 < res.table.count().to_pyarrow().as_py() <= 300


def test_zeek_json(engine):
    res = read_flows(FIX / "zeek_conn.json", engine)
    assert res.fmt == "zeek-json" and res.time_unit == "s"
    got = rows(res)
    assert got[0]["ts"] == dt.datetime(2024, 3, 1, 10, 0, 0, 500000)
    assert got[1]["src_ip"] == "fe80::a179:b3ff:199:2314"
    assert got[1]["up_bytes"] is None and got[1]["down_bytes"] is None  # absent keys
    assert got[2]["port"] == 8443 and got[2]["src_port"] == 443


def test_zeek_json_torn_line(engine, tmp_path):
    text = (FIX / "zeek_conn.json").read_text()
    f = tmp_path / "conn.json"
    f.write_text(text + '{"ts":1709287203.0,"uid":"J4","id.orig_h":"10.0.0.1","id.or\n')
    res = read_flows(f, engine)
    assert res.table.count().to_pyarrow().as_py() == 3
    assert any("skipped 1 unreadable line" in n for n in res.notes)


def test_zeek_tsv_and_json_in_one_directory(engine, tmp_path):
    shutil.copy(FIX / "zeek_conn.log", tmp_path / "conn.log")
    shutil.copy(FIX / "zeek_conn.json", tmp_path / "conn2.log")
    res = read_flows(tmp_path, engine, fmt="zeek")
    assert res.fmt == "zeek-json+zeek-tsv"
    assert res.table.count().to_pyarrow().as_py() == 9


def test_zeek_other_logs_skipped_in_directory_refused_by_name(engine, tmp_path):
    shutil.copy(FIX / "zeek_conn.log", tmp_path / "conn.log")
    dns = zeek_tsv(tmp_path / "dns.log", ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h",
                                          "id.resp_p", "proto", "query"],
                   ["1700000000.0\tC1\t10.0.0.1\t5353\t10.0.0.2\t53\tudp\texample.com"], log_path="dns")
    res = read_flows(tmp_path, engine)
    assert res.files == [tmp_path / "conn.log"]
    assert any("not conn logs: dns.log" in n for n in res.notes)
    with pytest.raises(InputError, match="'dns' log"):
        read_flows(dns, engine)


def test_zeek_missing_field(engine, tmp_path):
    fields = [f for f in CONN_FIELDS if f != "id.resp_h"]
    f = zeek_tsv(tmp_path / "conn.log", fields, ["\t".join(["1700000000.0", "C1", "10.0.0.1", "1", "80",
                                                              "tcp", "1", "2"])])
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    assert err.value.column == "id.resp_h" and err.value.file == str(f)


# --- nfdump -----------------------------------------------------------------------------------

def test_nfdump_16_with_summary(engine):
    res = read_flows(FIX / "nfdump16.csv", engine)
    assert res.fmt == "nfdump-csv" and res.time_unit == "iso"
    got = rows(res)
    assert len(got) == 3  # the Summary block is not flows
    assert got[0]["ts"] == dt.datetime(2019, 3, 5, 10, 0, 1)
    assert got[1]["ts"] == dt.datetime(2019, 3, 5, 10, 0, 3, 250000)
    assert [r["proto"] for r in got] == ["tcp", "udp", "icmp"]
    assert (got[0]["src_ip"], got[0]["dst_ip"], got[0]["port"], got[0]["src_port"]) == \
        ("10.1.1.1", "172.16.0.5", 80, 49152)
    assert (got[0]["up_bytes"], got[0]["down_bytes"]) == (1500, 9000)
    assert got[2]["src_ip"] == "2001:db8::1"


def test_nfdump_17_header(engine):
    got = rows(read_flows(FIX / "nfdump17.csv", engine))
    assert got[0]["ts"] == dt.datetime(2024, 5, 1, 8, 15, 0, 123000)
    assert got[0]["proto"] == "tcp" and got[1]["proto"] == "udp"
    assert (got[0]["up_bytes"], got[0]["down_bytes"]) == (2400, 48000)


def test_nfdump_without_out_bytes(engine, tmp_path):
    f = write_csv(tmp_path / "nf.csv", "ts,te,td,sa,da,sp,dp,pr,ipkt,ibyt",
                  ["2024-01-01 00:00:00,2024-01-01 00:00:01,1.0,10.0.0.1,10.0.0.2,1234,80,TCP,3,180"])
    res = read_flows(f, engine)
    assert rows(res)[0]["down_bytes"] == 0
    assert any("obyt/outBytes" in n for n in res.notes)


# --- bad input --------------------------------------------------------------------------------

def test_empty_file(engine, tmp_path):
    f = tmp_path / "empty.csv"
    f.write_bytes(b"")
    with pytest.raises(InputError, match="empty") as err:
        read_flows(f, engine)
    assert err.value.file == str(f)
    g = tmp_path / "empty.log.gz"
    g.write_bytes(gzip.compress(b""))
    with pytest.raises(InputError, match="empty"):
        read_flows(g, engine)


def test_header_only_file_has_no_records(engine, tmp_path):
    f = write_csv(tmp_path / "h.csv", "timestamp,src_ip,dst_ip,proto,port,up_bytes,down_bytes", [])
    with pytest.raises(InputError, match="no flow records"):
        read_flows(f, engine)


def test_parquet_missing_column(engine, tmp_path):
    t = pa.table({"timestamp": [1], "src_ip": ["10.0.0.1"], "dst_ip": ["10.0.0.2"], "proto": ["tcp"],
                  "port": [80], "up_bytes": [1]})
    pq.write_table(t, tmp_path / "m.parquet")
    with pytest.raises(InputError) as err:
        read_flows(tmp_path / "m.parquet", engine)
    assert err.value.column == "down_bytes" and err.value.file == str(tmp_path / "m.parquet")


def test_csv_missing_timestamp_column(engine, tmp_path):
    f = write_csv(tmp_path / "m.csv", "src_ip,dst_ip,proto,port,up_bytes,down_bytes",
                  ["10.0.0.1,10.0.0.2,tcp,80,1,2"])
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    assert err.value.column == "timestamp"


def test_nfdump_missing_column(engine, tmp_path):
    f = write_csv(tmp_path / "nf.csv", "ts,te,td,sa,da,sp,pr,ibyt,obyt",
                  ["2024-01-01 00:00:00,2024-01-01 00:00:01,1.0,10.0.0.1,10.0.0.2,1234,TCP,1,2"])
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    assert err.value.column == "dp"


def test_bad_timestamps_counted(engine, tmp_path):
    lines = [f"{1_430_000 + i},10.0.0.1,10.0.0.2,tcp,80,1,2" for i in range(5)]
    lines += ["noon,10.0.0.1,10.0.0.2,tcp,80,1,2", "later,10.0.0.1,10.0.0.2,tcp,80,1,2"]
    f = write_csv(tmp_path / "t.csv", "timestamp,src_ip,dst_ip,proto,port,up_bytes,down_bytes", lines)
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    e = err.value
    assert (e.file, e.column, e.rows) == (str(f), "timestamp", 2)
    assert "'noon'" in str(e) or "'later'" in str(e)


def test_bad_zeek_timestamp(engine, tmp_path):
    f = zeek_tsv(tmp_path / "conn.log", CONN_FIELDS, [conn_line(), conn_line(ts="yesterday")])
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    assert (err.value.column, err.value.rows) == ("ts", 1)


def test_bad_ip_addresses(engine, tmp_path):
    f = write_parquet(tmp_path / "ip.parquet", 4,
                      dst_ip=["10.0.0.1", "10.0.0.300", "10.0.0.300", "not-an-ip"])
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    e = err.value
    assert (e.file, e.column, e.rows) == (str(f), "dst_ip", 3)


def test_bad_ipv6_in_zeek(engine, tmp_path):
    f = zeek_tsv(tmp_path / "conn.log", CONN_FIELDS, [conn_line(src="2001:db8::1"),
                                                       conn_line(src="2001:db8:::1")])
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    assert (err.value.column, err.value.rows) == ("id.orig_h", 1)


def test_negative_bytes(engine, tmp_path):
    f = write_parquet(tmp_path / "neg.parquet", 3, up_bytes=[1, -5, -7])
    with pytest.raises(InputError, match="negative") as err:
        read_flows(f, engine)
    assert (err.value.column, err.value.rows) == ("up_bytes", 2)


def test_non_numeric_bytes(engine, tmp_path):
    f = write_csv(tmp_path / "b.csv", "timestamp,src_ip,dst_ip,proto,port,up_bytes,down_bytes",
                  ["1430000,10.0.0.1,10.0.0.2,tcp,80,1,lots", "1430001,10.0.0.1,10.0.0.2,tcp,80,1,2"])
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    assert (err.value.column, err.value.rows) == ("down_bytes", 1)
    assert "'lots'" in str(err.value)


def test_error_names_the_bad_file_among_several(engine, tmp_path):
    write_parquet(tmp_path / "a.parquet", 3)
    bad = write_parquet(tmp_path / "b.parquet", 3, down_bytes=[-1, 2, -3])
    with pytest.raises(InputError) as err:
        read_flows(tmp_path, engine)
    assert (err.value.file, err.value.column, err.value.rows) == (str(bad), "down_bytes", 2)


def test_torn_lines_in_csv_are_skipped_and_noted(engine, tmp_path):
    f = write_csv(tmp_path / "torn.csv", "timestamp,src_ip,dst_ip,proto,port,up_bytes,down_bytes",
                  ["1430000,10.0.0.1,10.0.0.2,tcp,80,1,2", "1430001,10.0.0.1,10.0", "1430002,10.0.0.1,10.0.0.2,tcp,80,1,2"])
    res = read_flows(f, engine)
    assert res.table.count().to_pyarrow().as_py() == 2
    assert any("skipped 1 torn line" in n for n in res.notes)


def test_corrupt_parquet(engine, tmp_path):
    f = tmp_path / "bad.parquet"
    f.write_bytes(b"PAR1" + b"\0" * 20)
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    assert err.value.file == str(f)


# --- IP syntax --------------------------------------------------------------------------------

_IP_RE = re.compile(IP_PATTERN)


def _python_says(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text  # zone indexes are not flow addresses


@pytest.mark.parametrize("text", ["::", "::1", "1::", "fe80::1", "2001:db8::1.2.3.4", "::ffff:10.0.0.1",
                                  "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "0.0.0.0", "255.255.255.255",
                                  "01.2.3.4", "256.1.1.1", "1.2.3", "1:::2", "1::2::3", "12345::",
                                  "1:2:3:4:5:6:7:8:9", "fe80::1%eth0", "", " 1.2.3.4"])
def test_ip_pattern_examples(text):
    assert bool(_IP_RE.match(text)) == _python_says(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.ip_addresses().map(str),
                 st.ip_addresses(v=6).map(lambda a: a.exploded),
                 st.text(alphabet="0123456789abcdef:.", max_size=45)))
def test_ip_pattern_agrees_with_ipaddress(text):
    assert bool(_IP_RE.match(text)) == _python_says(text)


# --- more sources and types -------------------------------------------------------------------

def test_forced_format_in_directory_skips_other_files(engine, tmp_path):
    write_parquet(tmp_path / "data.parquet", 2)
    (tmp_path / "truth.json").write_text('{"anomalies": []}\n')
    res = read_flows(tmp_path, engine, fmt="flows")
    assert res.files == [tmp_path / "data.parquet"]
    assert any("truth.json" in n for n in res.notes)


def test_parquet_native_timestamps(engine, tmp_path):
    f = write_parquet(tmp_path / "t.parquet", 1, timestamp=pa.array([dt.datetime(2024, 2, 3, 4, 5, 6)],
                                                                    pa.timestamp("ms")))
    res = read_flows(f, engine, time_unit="s")
    assert res.time_unit is None and not res.time_unit_guessed
    assert rows(res)[0]["ts"] == dt.datetime(2024, 2, 3, 4, 5, 6)
    assert any("ignored" in n for n in res.notes)


def test_empty_parquet_among_others_is_noted(engine, tmp_path):
    write_parquet(tmp_path / "a.parquet", 2)
    write_parquet(tmp_path / "b.parquet", 0)
    res = read_flows(tmp_path, engine)
    assert res.table.count().to_pyarrow().as_py() == 2
    assert any("b.parquet" in n for n in res.notes)
    with pytest.raises(InputError, match="no rows"):
        read_flows(tmp_path / "b.parquet", engine)


def test_zeek_blocks_with_bad_value_in_one_block(engine, tmp_path):
    # one block parses as numbers, the other falls back to text: they must still concatenate
    f = zeek_tsv(tmp_path / "conn.log", CONN_FIELDS, [conn_line()])
    second = zeek_tsv(tmp_path / "b.log", CONN_FIELDS, [conn_line(up="many")]).read_text()
    f.write_text(f.read_text() + second)
    with pytest.raises(InputError) as err:
        read_flows(f, engine)
    assert (err.value.column, err.value.rows) == ("orig_bytes", 1)


def test_read_is_lazy_for_parquet(engine, tmp_path):
    f = write_parquet(tmp_path / "lazy.parquet", 3)
    res = read_flows(f, engine)
    sql = str(engine.con.compile(res.table))
    assert "read_parquet" in sql.lower() or "lazy" in sql  # a view over the file, not a copy


# --- reading in blocks ------------------------------------------------------------------------

ZEEK_REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "zeek"


def _sorted_rows(res: ReadResult) -> list[tuple]:
    t = res.table.to_pyarrow()
    return sorted(tuple(str(v) for v in r.values()) for r in t.to_pylist())


def _text_inputs(tmp_path: Path) -> list[Path]:
    out = [FIX / n for n in ("flows.csv", "nfdump16.csv", "nfdump17.csv", "zeek_conn.json", "zeek_conn.log")]
    out += sorted(p for p in ZEEK_REAL.glob("*/conn*") if p.stat().st_size < 400_000)
    # gzip of one member, and two members (logs concatenated with cat)
    data = (FIX / "zeek_conn.log").read_bytes()
    (tmp_path / "one.log.gz").write_bytes(gzip.compress(data))
    half = data.index(b"\n", len(data) // 2) + 1
    (tmp_path / "two.log.gz").write_bytes(gzip.compress(data[:half]) + gzip.compress(data[half:]))
    return out + [tmp_path / "one.log.gz", tmp_path / "two.log.gz"]


def test_block_size_does_not_change_what_is_read(engine, tmp_path, monkeypatch):
    # Text is parsed a block at a time so that memory does not grow with the file; the blocks
    # end at line ends, a Zeek header block may sit in any of them, nfdump's Summary may
    # start one. With a few dozen blocks per file (of a few hundred bytes for the small ones)
    # such boundaries are crossed.
    from flowsiem.io import sniff as sniff_mod

    for path in _text_inputs(tmp_path):
        whole = read_flows(path, engine)
        monkeypatch.setattr(sniff_mod, "BLOCK_SIZE", max(257, path.stat().st_size // 30))
        small = read_flows(path, engine)
        monkeypatch.undo()
        assert _sorted_rows(small) == _sorted_rows(whole), path
        assert (small.time_unit, small.notes) == (whole.time_unit, whole.notes), path


def test_text_blocks_end_at_line_ends_and_see_truncated_gzip(tmp_path):
    from flowsiem.io.sniff import TextBlocks

    data = b"".join(b"line %d with some text\n" % i for i in range(2000))
    (tmp_path / "a.gz").write_bytes(gzip.compress(data)[:-300])  # cut short
    blocks = TextBlocks(tmp_path / "a.gz", size=1000)
    got = list(blocks)
    assert blocks.truncated
    assert all(b.endswith(b"\n") for b in got[:-1]) and len(got) > 10
    assert data.startswith(b"".join(got))
    (tmp_path / "b").write_bytes(data + b"no newline at the end")
    assert b"".join(TextBlocks(tmp_path / "b", size=999)) == data + b"no newline at the end"


def test_text_inputs_are_spooled_to_scratch_not_kept_in_memory(engine, tmp_path):
    # DuckDB reads the parsed blocks from parquet files in the run's scratch directory.
    res = read_flows(FIX / "zeek_conn.log", engine)
    spooled = list(Path(engine.scratch).glob("spool-*/block-*.parquet"))
    assert spooled and res.table.count().execute() > 0


def test_gzip_blocks_stay_bounded_however_well_it_compresses(tmp_path):
    # 20 MB of one repeated line compress to ~20 kB: still blocks of at most the block size.
    from flowsiem.io.sniff import TextBlocks

    (tmp_path / "z.gz").write_bytes(gzip.compress(b"1,10.0.0.1,10.0.0.2,tcp,80,1,2\n" * 650_000))
    sizes = [len(b) for b in TextBlocks(tmp_path / "z.gz", size=1 << 20)]
    assert sum(sizes) == 31 * 650_000 and max(sizes) <= (1 << 20) + 31
