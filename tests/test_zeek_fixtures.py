"""Real Zeek / Bro conn.logs (../shared/fixtures/zeek, outside the repo): row counts and rows
without byte counts must match the table in that folder's README, which is the source of truth."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from flowsiem.engine import connect
from flowsiem.io import read_flows

ZEEK = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "zeek"

# folder -> (format, rows, rows whose orig_bytes or resp_bytes is unset[, rows whose byte count exceeds what
# their packets can carry: Zeek's sequence-number artefacts, read as unknown]), from ZEEK/README.md
EXPECTED = {
    "bro22-inp2": ("zeek-tsv", 148, 13, 2),
    "bro-mptcp-2015": ("zeek-tsv", 969, 299),
    "brobeat-bro25-vlan": ("zeek-tsv", 6465, 514),
    "m57-zeek42-cindy": ("zeek-tsv", 8505, 490),
    "kishpud-lab-ipv6": ("zeek-tsv", 808, 107),
    "evanswj-json-ipv6": ("zeek-json", 110, 1),
    "zat-json-ursnif": ("zeek-json", 50, 0),
    "honeypot-ssh-bruteforce": ("zeek-tsv", 253, 0),
    "rita-proxy-rolling": ("zeek-tsv", 7260, 251, 2),
}

pytestmark = pytest.mark.skipif(not ZEEK.is_dir(), reason=f"real Zeek fixtures not found at {ZEEK}")


@pytest.fixture(scope="module")
def engine():
    return connect("duckdb")


def _folders():
    return sorted(p.name for p in ZEEK.iterdir() if p.is_dir()) if ZEEK.is_dir() else []


def test_every_fixture_folder_is_listed():
    assert set(_folders()) == set(EXPECTED), "update EXPECTED from the README table"


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_rows_and_rows_without_bytes(engine, folder):
    fmt, n_rows, n_unset, *impossible = EXPECTED[folder]
    n_impossible = impossible[0] if impossible else 0
    n_no_bytes = n_unset + n_impossible
    res = read_flows(ZEEK / folder, engine)
    t = res.table
    got = t.aggregate(
        rows=t.count(),
        no_bytes=(t.up_bytes.isnull() | t.down_bytes.isnull()).sum(),
        no_ts=t.ts.isnull().sum(),
        no_ip=(t.src_ip.isnull() | t.dst_ip.isnull()).sum(),
    ).to_pyarrow().to_pylist()[0]
    assert res.fmt == fmt
    assert res.time_unit == "s"
    assert got["rows"] == n_rows
    assert (got["no_bytes"] or 0) == n_no_bytes
    assert (got["no_ts"] or 0) == 0 and (got["no_ip"] or 0) == 0
    if n_no_bytes:
        assert any(f"{n_no_bytes:,} row" in note and "no byte counts" in note for note in res.notes)
    if n_impossible:
        assert any(f"{n_impossible:,} row" in note and "more bytes than" in note for note in res.notes)


def test_kishpud_torn_line_is_reported(engine):
    res = read_flows(ZEEK / "kishpud-lab-ipv6", engine)
    assert any("skipped 1 torn line" in n for n in res.notes)


def test_rita_gzip_with_colons_and_global_ipv6(engine):
    folder = ZEEK / "rita-proxy-rolling"
    res = read_flows(folder, engine)
    assert [p.name for p in res.files] == ["conn.16:00:00-17:00:00.log.gz"]
    t = res.table
    ips = t.select(a=t.src_ip, b=t.dst_ip).to_pyarrow().to_pylist()

    def global_v6(ip: str) -> bool:
        return ":" in ip and ipaddress.ip_address(ip).is_global

    assert sum(global_v6(r["a"]) or global_v6(r["b"]) for r in ips) == 1578


def test_honeypot_three_header_blocks(engine):
    res = read_flows(ZEEK / "honeypot-ssh-bruteforce" / "conn.log", engine)
    t = res.table
    span = t.aggregate(lo=t.ts.min(), hi=t.ts.max()).to_pyarrow().to_pylist()[0]
    assert (span["hi"] - span["lo"]).days >= 3  # the blocks cover 2024-01-06 .. 2024-01-10


def test_all_fixtures_at_once_as_a_glob(engine):
    res = read_flows(str(ZEEK / "*" / "conn*"), engine)
    assert res.fmt == "zeek-json+zeek-tsv"
    assert res.table.count().to_pyarrow().as_py() == sum(v[1] for v in EXPECTED.values())
