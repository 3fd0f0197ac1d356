"""The network model: which addresses are internal, the traffic classes, the internal servers.

Everything here works on *unique* addresses (a few thousand to a few million), never per flow:
the flow table is joined to a small address table that the engine builds.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .errors import UsageError

# Traffic classes (the seed's sections 2.2–2.4, plus the transit case for completeness).
INTERNAL_INTERNAL = "internal_internal"
INTERNAL_EXTERNAL = "internal_external"
EXTERNAL_INTERNAL = "external_internal"
EXTERNAL_EXTERNAL = "external_external"
TRAFFIC_CLASSES = (INTERNAL_INTERNAL, INTERNAL_EXTERNAL, EXTERNAL_INTERNAL, EXTERNAL_EXTERNAL)

# Prefix lengths used to summarise inferred internal networks.
V4_PREFIX = 24
V6_PREFIX = 64


def parse_cidrs(text: str | None) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`"10.0.0.0/8, 192.168.1.0/24"` -> networks; a bare address is a /32 (/128)."""
    if not text:
        return []
    nets = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise UsageError(f"--internal: '{part}' is not a CIDR network ({exc})") from None
    return nets


def _parse(ip: str):
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def _is_local_scope(addr) -> bool:
    """Addresses that say nothing about the site's own networks (link-local, multicast, ...)."""
    return addr.is_link_local or addr.is_multicast or addr.is_unspecified or addr.is_loopback \
        or (addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255"))


def infer_internal_networks(source_ips) -> list[str]:
    """Infer the internal networks from the clean day's source addresses.

    The seed's rule is "every source of the clean day is internal". Real captures also hold
    inbound flows, so: if any source is a private (RFC 1918 / ULA) address, the internal networks
    are the /24 (IPv4) or /64 (IPv6) prefixes of the private sources; otherwise (a company on
    public addresses) the prefixes of all sources. Link-local, multicast, loopback and unspecified
    sources are ignored. Adjacent prefixes are merged. Override with --internal.
    """
    addrs = [a for a in (_parse(ip) for ip in source_ips if ip) if a is not None and not _is_local_scope(a)]
    private = [a for a in addrs if a.is_private]
    chosen = private or addrs
    prefixes = {
        ipaddress.ip_network(f"{a}/{V4_PREFIX if a.version == 4 else V6_PREFIX}", strict=False)
        for a in chosen
    }
    v4 = ipaddress.collapse_addresses(p for p in prefixes if p.version == 4)
    v6 = ipaddress.collapse_addresses(p for p in prefixes if p.version == 6)
    return [str(n) for n in list(v4) + list(v6)]


@dataclass
class NetworkModel:
    networks: list = field(default_factory=list)   # ip_network objects
    inferred: bool = True
    _unicast: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # is_unicast_host's answers

    @property
    def cidrs(self) -> list[str]:
        return [str(n) for n in self.networks]

    def _broadcasts(self) -> set:
        return {n.broadcast_address for n in self.networks if n.version == 4 and n.prefixlen <= 30}

    def is_internal(self, ip: str) -> bool:
        return self.classify_ips([ip])[0]

    def classify_ips(self, ips) -> list[bool]:
        """Internal flag per address (Python on unique addresses only).

        Internal = inside an internal network, or of local scope (link-local, multicast,
        broadcast, unspecified): such traffic never leaves the site, so it is not "external".
        """
        v4 = [n for n in self.networks if n.version == 4]
        v6 = [n for n in self.networks if n.version == 6]
        out = []
        for ip in ips:
            a = _parse(ip)
            if a is None:
                out.append(False)
            else:
                out.append(_is_local_scope(a) or any(a in n for n in (v4 if a.version == 4 else v6)))
        return out

    def is_unicast_host(self, ip: str) -> bool:
        """False for multicast, broadcast (limited or of an internal network) and unparseable
        addresses: those can be destinations but never servers or hosts. Remembered per address
        (the rules ask about the same hosts many times)."""
        if ip not in self._unicast:
            a = _parse(ip)
            self._unicast[ip] = not (a is None or a.is_multicast or a.is_unspecified or (
                a.version == 4 and (a == ipaddress.IPv4Address("255.255.255.255") or a in self._broadcasts())))
        return self._unicast[ip]

    @classmethod
    def from_option_or_sources(cls, internal: str | None, source_ips) -> "NetworkModel":
        nets = parse_cidrs(internal)
        if nets:
            return cls(networks=nets, inferred=False)
        return cls(networks=[ipaddress.ip_network(c) for c in infer_internal_networks(source_ips)], inferred=True)


def addresses(flows):
    """The distinct source and destination addresses of a flow table (pandas Series). Two
    one-column scans: a union of the two selections is a CTE that DuckDB materialises with every
    column of every flow (three times slower at scale)."""
    import pandas as pd

    src = flows.select(ip=flows.src_ip).distinct().to_pandas().ip
    dst = flows.select(ip=flows.dst_ip).distinct().to_pandas().ip
    return pd.Series(pd.unique(pd.concat([src, dst], ignore_index=True)), dtype=object)


def with_traffic_class(flows, ip_table):
    """Join the flow table to a small (ip, internal) table: adds src_internal, dst_internal, traffic_class.

    Portable Ibis (a join and a case expression): runs on DuckDB and Spark alike.
    """
    import ibis

    s = ip_table.select(ip=ip_table.ip, src_internal=ip_table.internal)
    d = ip_table.select(ip=ip_table.ip, dst_internal=ip_table.internal)
    t = flows.left_join(s, flows.src_ip == s.ip).drop("ip")
    t = t.left_join(d, t.dst_ip == d.ip).drop("ip")
    si = t.src_internal.fill_null(False)
    di = t.dst_internal.fill_null(False)
    cls = (
        ibis.cases(
            (si & di, INTERNAL_INTERNAL),
            (si & ~di, INTERNAL_EXTERNAL),
            (~si & di, EXTERNAL_INTERNAL),
            else_=EXTERNAL_EXTERNAL,
        )
    )
    return t.mutate(src_internal=si, dst_internal=di, traffic_class=cls)


def internal_services(ii_flows, min_clients: int = 3):
    """Internal servers and their services from internal→internal flows.

    A (dst, proto, port) is a service when at least `min_clients` distinct internal hosts use it
    (the seed calls every internal destination a server; requiring a few clients keeps one-off
    peer-to-peer chatter of real networks out). Returns an Ibis table:
    ip, proto, port, flows, clients, up_bytes, down_bytes.
    """
    g = ii_flows.group_by(ip=ii_flows.dst_ip, proto=ii_flows.proto, port=ii_flows.port).aggregate(
        flows=ii_flows.count(),
        clients=ii_flows.src_ip.nunique(),
        up_bytes=ii_flows.up_bytes.sum(),
        down_bytes=ii_flows.down_bytes.sum(),
    )
    return g.filter(g.clients >= min_clients)
