"""Tests for flowsiem.enrich (country / ASN per unique IP)."""

from __future__ import annotations

import ipaddress
import random
import struct
from pathlib import Path

import pyarrow as pa
import pytest

from flowsiem.enrich import GeoResolver
from flowsiem.errors import InputError

EXPECTED_COLUMNS = ["ip", "country", "asn", "as_org", "private"]


@pytest.fixture(scope="module")
def default_resolver() -> GeoResolver:
    return GeoResolver()


def rows_by_ip(table: pa.Table) -> dict:
    return {row["ip"]: row for row in table.to_pylist()}


# ── default data (geoip2fast) ───────────────────────────────────────────────────────────────

def test_schema(default_resolver):
    tbl = default_resolver.lookup(["8.8.8.8"])
    assert tbl.column_names == EXPECTED_COLUMNS
    assert tbl.schema.field("ip").type == pa.string()
    assert tbl.schema.field("country").type == pa.string()
    assert tbl.schema.field("asn").type == pa.int64()
    assert tbl.schema.field("as_org").type == pa.string()
    assert tbl.schema.field("private").type == pa.bool_()


def test_empty_input(default_resolver):
    tbl = default_resolver.lookup([])
    assert tbl.num_rows == 0
    assert tbl.column_names == EXPECTED_COLUMNS


@pytest.mark.parametrize("ip, country, org", [
    ("142.250.184.243", "US", "GOOGLE"),
    ("157.240.212.35", None, "FACEBOOK"),
    ("88.157.217.145", "PT", None),
    ("13.107.42.14", None, "MICROSOFT"),
    ("8.8.8.8", "US", "GOOGLE"),
])
def test_public_ipv4(default_resolver, ip, country, org):
    row = default_resolver.lookup([ip]).to_pylist()[0]
    assert row["ip"] == ip
    assert row["private"] is False
    assert len(row["country"]) == 2 and row["country"].isupper()
    if country:
        assert row["country"] == country
    if org:
        assert org in (row["as_org"] or "").upper()
    assert row["asn"] is None        # geoip2fast data carries no AS numbers


def test_public_ipv6(default_resolver):
    row = default_resolver.lookup(["2a00:1450:4003:80f::200e"]).to_pylist()[0]
    assert row["country"] not in ("unknown", "private")
    assert row["private"] is False
    assert "GOOGLE" in (row["as_org"] or "").upper()


def test_ipv4_mapped_ipv6_uses_ipv4(default_resolver):
    rows = rows_by_ip(default_resolver.lookup(["::ffff:8.8.8.8", "::ffff:10.0.0.1"]))
    assert rows["::ffff:8.8.8.8"]["country"] == "US"
    assert rows["::ffff:10.0.0.1"]["country"] == "private"


@pytest.mark.parametrize("ip", [
    "192.168.1.1", "10.0.0.1", "172.16.5.4", "127.0.0.1", "169.254.1.1", "100.64.0.1",
    "224.0.0.251", "255.255.255.255", "0.0.0.0", "240.0.0.1",
    "fe80::1", "fd00::1", "::1", "::", "ff02::1", "2001:db8::1",
])
def test_private(default_resolver, ip):
    row = default_resolver.lookup([ip]).to_pylist()[0]
    assert row == {"ip": ip, "country": "private", "asn": None, "as_org": None, "private": True}


@pytest.mark.parametrize("bad", ["not-an-ip", "", "1.2.3", "256.1.1.1", "1.2.3.4/24", " 8.8.8.8", None])
def test_invalid(default_resolver, bad):
    row = default_resolver.lookup([bad]).to_pylist()[0]
    assert row == {"ip": bad, "country": "unknown", "asn": None, "as_org": None, "private": False}


def test_duplicates_and_order(default_resolver):
    ips = ["8.8.8.8", "10.0.0.1", "8.8.8.8", "fe80::1", "10.0.0.1", "x"]
    tbl = default_resolver.lookup(ips)
    assert tbl.column("ip").to_pylist() == ["8.8.8.8", "10.0.0.1", "fe80::1", "x"]


def test_accepts_generator_and_arrow(default_resolver):
    a = default_resolver.lookup(ip for ip in ["8.8.8.8", "1.1.1.1"])
    b = default_resolver.lookup(pa.chunked_array([["8.8.8.8"], ["1.1.1.1"]]))
    assert a.equals(b)


def test_source_default(default_resolver):
    default_resolver.lookup(["8.8.8.8"])
    assert default_resolver.source.startswith("geoip2fast ")
    assert "shipped data" in default_resolver.source


def test_matches_geoip2fast_library(default_resolver):
    """Our reader of the .dat.gz agrees with GeoIP2Fast itself.

    GeoIP2Fast keeps its tables in module globals, so the two reference instances are used
    one after the other. Organisations are compared with the IPv4-only ASN file, because
    geoip2fast's own range check on the IPv4+IPv6 file uses IPv6 prefix sizes for IPv4
    networks; countries with the IPv4+IPv6 file, because in the IPv4-only files Andorra has
    country index 15 and geoip2fast's ``index < 16`` test reports it as private "--".
    """
    geoip2fast = pytest.importorskip("geoip2fast")
    rnd = random.Random(7)
    ips = [str(ipaddress.IPv4Address(rnd.getrandbits(32))) for _ in range(3000)]
    ips += ["80.80.86.82"]                             # Andorra (also drawn by seed 7)
    rows = [row for row in default_resolver.lookup(ips).to_pylist() if not row["private"]]

    lib = geoip2fast.GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn.dat.gz")
    for row in rows:
        name = lib.lookup(row["ip"]).asn_name
        assert row["as_org"] == (None if name in ("", "<unknown>", "IANA.ORG") else name), row["ip"]

    lib = geoip2fast.GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz")
    for row in rows:
        code = lib.lookup(row["ip"]).country_code
        ok = len(code) == 2 and code.isalpha() and code != "EU"
        assert row["country"] == (code if ok else "unknown"), row["ip"]
    assert {row["ip"]: row["country"] for row in rows}["80.80.86.82"] == "AD"


# ── MaxMind DB files ────────────────────────────────────────────────────────────────────────
# No mmdb writer package is installed, so here is a minimal writer of the MaxMind DB format
# (https://maxmind.github.io/MaxMind-DB/): 24-bit records, no pointers, non-overlapping
# networks, IPv4 or IPv6 trees (IPv4 networks go under ::/96 in an IPv6 tree).

class U16(int): pass
class U32(int): pass
class U64(int): pass


def _ctrl(type_num: int, size: int) -> bytes:
    if size < 29:
        head, extra = size, b""
    elif size < 29 + 256:
        head, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        head, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        head, extra = 31, (size - 65821).to_bytes(3, "big")
    if type_num <= 7:
        return bytes([(type_num << 5) | head]) + extra
    return bytes([head, type_num - 7]) + extra          # extended type


def _uint(type_num: int, value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _ctrl(type_num, len(raw)) + raw


def mmdb_encode(value) -> bytes:
    if isinstance(value, bool):
        return _ctrl(14, int(value))
    if isinstance(value, U16):
        return _uint(5, value)
    if isinstance(value, U64):
        return _uint(9, value)
    if isinstance(value, int):                         # U32 and plain ints
        return _uint(6, value)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _ctrl(2, len(raw)) + raw
    if isinstance(value, float):
        return _ctrl(3, 8) + struct.pack(">d", value)
    if isinstance(value, dict):
        return _ctrl(7, len(value)) + b"".join(mmdb_encode(k) + mmdb_encode(v) for k, v in value.items())
    if isinstance(value, list):
        return _ctrl(11, len(value)) + b"".join(mmdb_encode(v) for v in value)
    raise TypeError(type(value))


def write_mmdb(path: Path, records: dict[str, dict], database_type: str, ip_version: int = 4) -> Path:
    bits = 32 if ip_version == 4 else 128
    root: list = [None, None]                          # trie node: [left, right]
    data = bytearray()
    for cidr, record in records.items():
        net = ipaddress.ip_network(cidr)
        value, plen = int(net.network_address), net.prefixlen
        if net.version == 6 and ip_version == 4:
            raise ValueError(f"{cidr}: IPv6 network in an IPv4 tree")
        if net.version == 4 and ip_version == 6:
            plen += 96                                 # ::a.b.c.d/(96+n), same integer value
        node = root
        for depth in range(plen):
            bit = (value >> (bits - 1 - depth)) & 1
            if depth == plen - 1:
                node[bit] = ("data", len(data))
            else:
                if node[bit] is None:
                    node[bit] = [None, None]
                node = node[bit]
        data += mmdb_encode(record)
    nodes, queue = [], [root]                          # number nodes breadth-first, root = 0
    ids = {}
    while queue:
        node = queue.pop(0)
        ids[id(node)] = len(nodes)
        nodes.append(node)
        queue.extend(child for child in node if isinstance(child, list))
    count = len(nodes)

    def rec(child) -> int:
        if child is None:
            return count
        if isinstance(child, tuple):
            return count + 16 + child[1]
        return ids[id(child)]

    tree = b"".join(rec(n[0]).to_bytes(3, "big") + rec(n[1]).to_bytes(3, "big") for n in nodes)
    metadata = {
        "node_count": U32(count), "record_size": U16(24), "ip_version": U16(ip_version),
        "database_type": database_type, "languages": ["en"],
        "binary_format_major_version": U16(2), "binary_format_minor_version": U16(0),
        "build_epoch": U64(1_700_000_000), "description": {"en": "flowsiem test database"},
    }
    path.write_bytes(tree + b"\x00" * 16 + bytes(data) + b"\xab\xcd\xefMaxMind.com"
                     + mmdb_encode(metadata))
    return path


@pytest.fixture()
def country_mmdb(tmp_path) -> Path:
    return write_mmdb(tmp_path / "Test-Country.mmdb", {
        "1.2.3.0/24": {"country": {"iso_code": "AU"}, "registered_country": {"iso_code": "JP"}},
        "5.6.0.0/16": {"registered_country": {"iso_code": "DE"}},
        "9.9.9.0/24": {"continent": {"code": "EU"}},
        "142.250.0.0/15": {"country": {"iso_code": "NL"}},   # deliberately not what geoip2fast says
    }, "GeoLite2-Country")


@pytest.fixture()
def asn_mmdb(tmp_path) -> Path:
    return write_mmdb(tmp_path / "Test-ASN.mmdb", {
        "1.2.3.0/24": {"autonomous_system_number": 64500, "autonomous_system_organization": "Example Org"},
        "142.250.0.0/15": {"autonomous_system_number": 15169, "autonomous_system_organization": "Google LLC"},
        "2001:4860::/32": {"autonomous_system_number": 15169, "autonomous_system_organization": "Google LLC"},
    }, "GeoLite2-ASN", ip_version=6)


def test_mmdb_writer_roundtrip(country_mmdb, asn_mmdb):
    maxminddb = pytest.importorskip("maxminddb")
    with maxminddb.open_database(str(country_mmdb)) as reader:
        assert reader.get("1.2.3.4") == {"country": {"iso_code": "AU"}, "registered_country": {"iso_code": "JP"}}
        assert reader.get("1.2.4.1") is None
        assert reader.metadata().database_type == "GeoLite2-Country"
    with maxminddb.open_database(str(asn_mmdb)) as reader:
        assert reader.get("1.2.3.200")["autonomous_system_number"] == 64500
        assert reader.get("2001:4860:4860::8888")["autonomous_system_organization"] == "Google LLC"


def test_country_mmdb_only(country_mmdb):
    r = GeoResolver(country_mmdb=country_mmdb)
    rows = rows_by_ip(r.lookup(["1.2.3.4", "5.6.7.8", "9.9.9.9", "142.250.184.243", "8.8.8.8",
                                "2a00:1450:4003:80f::200e", "192.168.0.1", "bogus"]))
    assert rows["1.2.3.4"]["country"] == "AU"                  # country.iso_code wins
    assert rows["5.6.7.8"]["country"] == "DE"                  # registered_country fallback
    assert rows["9.9.9.9"]["country"] == "unknown"             # record without a country
    assert rows["142.250.184.243"]["country"] == "NL"          # from the mmdb, not geoip2fast
    assert rows["8.8.8.8"]["country"] == "unknown"             # not in the mmdb
    assert rows["2a00:1450:4003:80f::200e"]["country"] == "unknown"   # IPv6 in an IPv4-only db
    assert rows["192.168.0.1"]["country"] == "private"
    assert rows["bogus"]["country"] == "unknown"
    # ASN side falls back to geoip2fast: organisation, no number
    assert "GOOGLE" in rows["142.250.184.243"]["as_org"].upper()
    assert rows["142.250.184.243"]["asn"] is None
    assert "Test-Country.mmdb" in r.source and "geoip2fast" in r.source


def test_asn_mmdb_only(asn_mmdb):
    r = GeoResolver(asn_mmdb=asn_mmdb)
    rows = rows_by_ip(r.lookup(["1.2.3.4", "142.250.184.243", "2001:4860:4860::8888", "8.8.4.4", "10.1.1.1"]))
    assert (rows["1.2.3.4"]["asn"], rows["1.2.3.4"]["as_org"]) == (64500, "Example Org")
    assert (rows["142.250.184.243"]["asn"], rows["142.250.184.243"]["country"]) == (15169, "US")
    assert rows["2001:4860:4860::8888"]["asn"] == 15169
    assert (rows["8.8.4.4"]["asn"], rows["8.8.4.4"]["as_org"]) == (None, None)   # not in the mmdb
    assert rows["8.8.4.4"]["country"] == "US"                  # country from geoip2fast
    assert rows["10.1.1.1"]["asn"] is None and rows["10.1.1.1"]["private"] is True
    assert "Test-ASN.mmdb" in r.source


def test_both_mmdb(country_mmdb, asn_mmdb):
    r = GeoResolver(country_mmdb=country_mmdb, asn_mmdb=asn_mmdb)
    row = r.lookup(["1.2.3.9"]).to_pylist()[0]
    assert row == {"ip": "1.2.3.9", "country": "AU", "asn": 64500, "as_org": "Example Org", "private": False}
    assert r.source == "MaxMind mmdb: Test-Country.mmdb, Test-ASN.mmdb"


def test_missing_mmdb_raises(tmp_path):
    missing = tmp_path / "nope.mmdb"
    with pytest.raises(InputError, match="cannot open GeoIP database") as exc:
        GeoResolver(country_mmdb=missing)
    assert exc.value.file == str(missing)
    with pytest.raises(InputError, match="cannot open GeoIP database"):
        GeoResolver(asn_mmdb=missing)


def test_unreadable_mmdb_raises(tmp_path):
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"this is not a maxmind database" * 10)
    with pytest.raises(InputError, match="cannot open GeoIP database") as exc:
        GeoResolver(country_mmdb=junk)
    assert exc.value.file == str(junk)


def test_swapped_mmdb_raises(country_mmdb, asn_mmdb):
    with pytest.raises(InputError, match="ASN database"):
        GeoResolver(country_mmdb=asn_mmdb)
    with pytest.raises(InputError, match="country/city database"):
        GeoResolver(asn_mmdb=country_mmdb)
