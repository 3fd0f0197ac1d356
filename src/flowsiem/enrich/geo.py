"""Country and ASN for unique IP addresses.

Data sources
------------
* Default: the data files shipped inside the ``geoip2fast`` package (offline). We read
  ``geoip2fast-asn-ipv6.dat.gz``, which holds IPv4 *and* IPv6 networks with country and
  AS organisation, so one file answers both address families.
* A user's MaxMind DB files (``GeoLite2-Country``/``-City`` and/or ``GeoLite2-ASN``) via
  ``maxminddb``. Either may be given alone; the other column set comes from geoip2fast.

ASN numbers
-----------
geoip2fast's data does NOT contain AS numbers: its builder (``geoip2dat.py``) reads the
MaxMind ASN CSV but replaces ``autonomous_system_number`` with its own sequential id keyed
by organisation name. With the default data ``asn`` is therefore always null and only
``as_org`` is filled. Give an ASN mmdb to get numbers.

Why we read the geoip2fast ``.dat.gz`` ourselves
------------------------------------------------
``GeoIP2Fast`` keeps the loaded tables in *module globals*, so a second instance (for
example one loaded with another data file anywhere else in the process) silently replaces
the data of the first. Its ASN range check for the IPv4+IPv6 file also uses IPv6 prefix
sizes for IPv4 networks, so IPv4 addresses in gaps between ASN networks get the previous
network's organisation. We unpickle the same file (format 120, the format geoip2fast 1.2.2
itself reads) into a private object and do the same two-level bisect with per-family
range checks. ``tests/test_enrich.py`` checks the results against ``GeoIP2Fast``.

Private addresses are decided with :mod:`ipaddress`, never from geoip2fast's ``"--"``.
IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) are looked up as their IPv4 address.
"""

from __future__ import annotations

import bisect
import gzip
import ipaddress
import pickle
import threading
from dataclasses import dataclass
from importlib import metadata as _metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from flowsiem.errors import InputError

__all__ = ["GeoResolver", "SCHEMA", "PRIVATE", "UNKNOWN"]

PRIVATE = "private"
UNKNOWN = "unknown"

SCHEMA = pa.schema([
    pa.field("ip", pa.string()),
    pa.field("country", pa.string()),
    pa.field("asn", pa.int64()),
    pa.field("as_org", pa.string()),
    pa.field("private", pa.bool_()),
])

_G2F_DATA_FILE = "geoip2fast-asn-ipv6.dat.gz"
_G2F_FORMAT = 120
_V4_BITS, _V6_BITS = 32, 128
# "<unknown>" is the builder's id 0; "IANA.ORG" is the label it gives its own list of
# reserved networks, not an AS organisation.
_NO_ORG = {"", "<unknown>", "IANA.ORG"}
_CONTINENTS = {"EU", "ASIA"}


# ── geoip2fast shipped data ──────────────────────────────────────────────────────────────────

def _g2f_version() -> str:
    try:
        return _metadata.version("geoip2fast")
    except _metadata.PackageNotFoundError:  # pragma: no cover - dependency is pinned
        return "?"


def _g2f_data_path() -> Path:
    spec = find_spec("geoip2fast")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover
        raise RuntimeError("the geoip2fast package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / _G2F_DATA_FILE


@dataclass(frozen=True)
class _G2FData:
    """The tables of one geoip2fast ``.dat.gz`` (country + ASN, IPv4 + IPv6)."""

    info: str
    # country networks: two-level index of first addresses, prefix lengths, country ids
    index: list
    first: list
    netlen: list
    country_id: list
    codes: list          # country id -> ISO code, or None for geoip2fast's reserved/not-found
    # ASN networks, same layout
    asn_index: list
    asn_first: list
    asn_netlen: list
    asn_id: list
    orgs: list           # ASN id -> organisation name, or None

    @classmethod
    def load(cls, path: Path) -> "_G2FData":
        # The shipped file is a pickle written by geoip2fast's own builder; geoip2fast loads it
        # the same way. It comes from the installed package, never from user input.
        with gzip.open(path, "rb") as fh:
            version, source_info, _total, tables = pickle.load(fh)
        if version != _G2F_FORMAT or not (source_info.get("country") and source_info.get("asn")
                                          and source_info.get("ipv6")):
            raise RuntimeError(f"{path}: unexpected geoip2fast data format "
                               f"(version {version!r}, {source_info!r})")
        (index, asn_index, country_names, asn_names, first, asn_first,
         country_id, asn_id, netlen, asn_netlen) = tables
        # "US:United States"; "01:Private Network Class A".."99:<not found>" are geoip2fast's
        # reserved ranges; networks MaxMind places only on a continent carry the continent
        # code ("EU", "ASIA"), which is not a country: both become "unknown".
        codes = []
        for item in country_names:
            code = item.split(":", 1)[0]
            ok = len(code) == 2 and code.isalpha() and code.isupper() and code not in _CONTINENTS
            codes.append(code if ok else None)
        orgs = [None if name in _NO_ORG else name for name in asn_names]
        return cls(source_info.get("info", ""), index, first, netlen, country_id, codes,
                   asn_index, asn_first, asn_netlen, asn_id, orgs)

    def country(self, value: int, bits: int) -> str:
        i = bisect.bisect_right(self.index, value) - 1
        if i < 0:
            return UNKNOWN
        firsts = self.first[i]
        j = bisect.bisect_right(firsts, value) - 1
        if j < 0 or value >= firsts[j] + (1 << (bits - self.netlen[i][j])):
            return UNKNOWN
        return self.codes[self.country_id[i][j]] or UNKNOWN

    def org(self, value: int, bits: int) -> str | None:
        i = bisect.bisect_right(self.asn_index, value) - 1
        if i < 0:
            return None
        firsts = self.asn_first[i]
        j = bisect.bisect_right(firsts, value) - 1
        if j < 0 or value >= firsts[j] + (1 << (bits - self.asn_netlen[i][j])):
            return None
        return self.orgs[self.asn_id[i][j]]


_g2f_lock = threading.Lock()
_g2f_cache: dict[str, _G2FData] = {}


def _g2f_data() -> _G2FData:
    """The shipped data, loaded once per process on first use (~0.3 s)."""
    path = _g2f_data_path()
    key = str(path)
    data = _g2f_cache.get(key)
    if data is None:
        with _g2f_lock:
            data = _g2f_cache.get(key)
            if data is None:
                data = _g2f_cache[key] = _G2FData.load(path)
    return data


# ── MaxMind DB files ─────────────────────────────────────────────────────────────────────────

_mmdb_lock = threading.Lock()
_mmdb_cache: dict[tuple, Any] = {}


def _open_mmdb(path: Path | str, kind: str):
    """Open (or reuse) a maxminddb reader; any failure becomes an InputError naming the file."""
    import maxminddb

    p = Path(path).expanduser()
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    except OSError as exc:
        raise InputError(f"cannot open GeoIP database: {exc.strerror or exc}", file=str(path)) from exc
    with _mmdb_lock:
        reader = _mmdb_cache.get(key)
        if reader is None:
            try:
                reader = maxminddb.open_database(str(p))
            except Exception as exc:  # InvalidDatabaseError, OSError, ValueError, ...
                raise InputError(f"cannot open GeoIP database: {exc}", file=str(path)) from exc
            _mmdb_cache[key] = reader
    dbtype = str(reader.metadata().database_type or "")
    low = dbtype.lower()
    has_geo = "country" in low or "city" in low
    if kind == "country" and "asn" in low and not has_geo:
        raise InputError(f"cannot open GeoIP database: '{dbtype}' is an ASN database, "
                         "not a country/city one", file=str(path))
    if kind == "asn" and has_geo and "asn" not in low:
        raise InputError(f"cannot open GeoIP database: '{dbtype}' is a country/city database, "
                         "not an ASN one", file=str(path))
    return reader


def _mmdb_get(reader, addr, path: Path) -> dict | None:
    try:
        rec = reader.get(addr)
    except ValueError:            # e.g. IPv6 address in an IPv4-only database
        return None
    except Exception as exc:      # maxminddb.InvalidDatabaseError: corrupt data section
        raise InputError(f"GeoIP database is corrupt: {exc}", file=str(path)) from exc
    return rec if isinstance(rec, dict) else None


def _mmdb_country(reader, addr, path: Path) -> str:
    rec = _mmdb_get(reader, addr, path)
    if rec:
        for key in ("country", "registered_country"):
            sub = rec.get(key)
            code = sub.get("iso_code") if isinstance(sub, dict) else None
            if code:
                return str(code)
    return UNKNOWN


def _mmdb_asn(reader, addr, path: Path) -> tuple[int | None, str | None]:
    rec = _mmdb_get(reader, addr, path)
    if not rec:
        return None, None
    num = rec.get("autonomous_system_number")
    org = rec.get("autonomous_system_organization")
    return (int(num) if isinstance(num, int) else None), (str(org) if org else None)


# ── address classification ───────────────────────────────────────────────────────────────────

def _parse(ip: Any):
    """Return an ipaddress object (IPv4-mapped IPv6 unwrapped to IPv4) or None if invalid."""
    if not isinstance(ip, str):
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr


def _is_private(addr) -> bool:
    # not is_global also covers 100.64.0.0/10 (carrier-grade NAT), which is neither private
    # nor reserved for ipaddress; multicast counts as global for ipaddress, so check it too.
    return (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
            or addr.is_reserved or addr.is_unspecified or not addr.is_global)


# ── public API ───────────────────────────────────────────────────────────────────────────────

class GeoResolver:
    """Resolve country and ASN for unique IP addresses.

    ``GeoResolver(country_mmdb=None, asn_mmdb=None)``: with no paths, geoip2fast's shipped
    data is used for both (loaded lazily on the first :meth:`lookup`, once per process).
    A given mmdb is opened immediately, so a missing or unreadable file raises
    :class:`~flowsiem.errors.InputError` at construction.
    """

    def __init__(self, country_mmdb: Path | str | None = None, asn_mmdb: Path | str | None = None):
        self.country_mmdb = Path(country_mmdb) if country_mmdb is not None else None
        self.asn_mmdb = Path(asn_mmdb) if asn_mmdb is not None else None
        self._country_reader = _open_mmdb(country_mmdb, "country") if country_mmdb is not None else None
        self._asn_reader = _open_mmdb(asn_mmdb, "asn") if asn_mmdb is not None else None

    @property
    def uses_geoip2fast(self) -> bool:
        return self._country_reader is None or self._asn_reader is None

    @property
    def source(self) -> str:
        """Short description of the data used, for reports.

        Once the geoip2fast data has been loaded in this process (first lookup), the
        description also names the dataset it was built from (GeoLite2 and its date).
        """
        g2f = f"geoip2fast {_g2f_version()} shipped data"
        loaded = _g2f_cache.get(str(_g2f_data_path())) if self.uses_geoip2fast else None
        if loaded is not None and loaded.info:
            g2f += f" ({loaded.info})"
        if self._country_reader is None and self._asn_reader is None:
            return g2f
        names = ", ".join(p.name for p in (self.country_mmdb, self.asn_mmdb) if p is not None)
        text = f"MaxMind mmdb: {names}"
        if self._country_reader is None:
            text += f"; country from {g2f}"
        elif self._asn_reader is None:
            text += f"; AS organisation from {g2f} (no AS numbers)"
        return text

    def lookup(self, ips: Iterable[str]) -> pa.Table:
        """One row per distinct input address, in first-seen order.

        Columns: ``ip`` (the input string, unchanged), ``country`` (ISO-3166 alpha-2,
        ``"private"`` for non-global addresses, ``"unknown"`` for invalid or unmapped ones),
        ``asn`` (int64, null when unknown; always null with geoip2fast data), ``as_org``
        (null when unknown) and ``private``.
        """
        if isinstance(ips, (pa.Array, pa.ChunkedArray)):
            ips = ips.to_pylist()
        unique = list(dict.fromkeys(ips))

        creader, areader = self._country_reader, self._asn_reader
        g2f = _g2f_data() if (creader is None or areader is None) and unique else None

        countries: list[str] = []
        asns: list[int | None] = []
        orgs: list[str | None] = []
        privs: list[bool] = []
        c_app, n_app, o_app, p_app = countries.append, asns.append, orgs.append, privs.append

        for ip in unique:
            addr = _parse(ip)
            if addr is None:
                c_app(UNKNOWN); n_app(None); o_app(None); p_app(False)
                continue
            if _is_private(addr):
                c_app(PRIVATE); n_app(None); o_app(None); p_app(True)
                continue
            p_app(False)
            if creader is None or areader is None:
                value = int(addr)
                bits = _V4_BITS if addr.version == 4 else _V6_BITS
            if creader is not None:
                c_app(_mmdb_country(creader, addr, self.country_mmdb))
            else:
                c_app(g2f.country(value, bits))
            if areader is not None:
                num, org = _mmdb_asn(areader, addr, self.asn_mmdb)
                n_app(num); o_app(org)
            else:
                n_app(None); o_app(g2f.org(value, bits))

        return pa.table({
            "ip": pa.array(unique, pa.string()),
            "country": pa.array(countries, pa.string()),
            "asn": pa.array(asns, pa.int64()),
            "as_org": pa.array(orgs, pa.string()),
            "private": pa.array(privs, pa.bool_()),
        }, schema=SCHEMA)
