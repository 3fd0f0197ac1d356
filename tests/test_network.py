"""Network model: internal networks inferred from sources, classification, services."""

import ibis
import pytest

from flowsiem.errors import UsageError
from flowsiem.network import NetworkModel, infer_internal_networks, internal_services, parse_cidrs, with_traffic_class


def test_infer_private_sources_only():
    srcs = ["192.168.101.5", "192.168.101.200", "8.8.8.8", "fe80::1", "0.0.0.0", "224.0.0.251"]
    assert infer_internal_networks(srcs) == ["192.168.101.0/24"]


def test_infer_merges_adjacent_and_keeps_ipv6():
    srcs = ["10.1.0.7", "10.1.1.9", "fd12:3456:789a:1::10"]
    assert infer_internal_networks(srcs) == ["10.1.0.0/23", "fd12:3456:789a:1::/64"]


def test_infer_public_company_uses_all_sources():
    assert infer_internal_networks(["193.136.1.10", "193.136.1.77"]) == ["193.136.1.0/24"]


def test_parse_cidrs_and_errors():
    assert [str(n) for n in parse_cidrs("10.0.0.0/8, 2001:db8::/32,192.0.2.7")] == [
        "10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]
    with pytest.raises(UsageError, match="not a CIDR"):
        parse_cidrs("10.0.0.0/33")


def test_classify_and_services():
    m = NetworkModel.from_option_or_sources("10.0.0.0/24", [])
    # local scope (loopback, link-local, multicast, broadcast) never leaves the site: internal
    assert m.classify_ips(["10.0.0.1", "10.0.1.1", "bogus", "::1", "fe80::1", "224.0.0.251", "8.8.8.8"]) == [
        True, False, False, True, True, True, False]
    assert [m.is_unicast_host(ip) for ip in ("10.0.0.7", "10.0.0.255", "255.255.255.255", "ff02::1", "0.0.0.0")] \
        == [True, False, False, False, False]
    flows = ibis.memtable({
        "src_ip": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "8.8.8.8", "10.0.0.4"],
        "dst_ip": ["10.0.0.9", "10.0.0.9", "10.0.0.9", "1.1.1.1", "10.0.0.9", "10.0.0.5"],
        "proto": ["udp"] * 4 + ["tcp", "tcp"],
        "port": [53, 53, 53, 443, 443, 445],
        "up_bytes": [1, 2, 3, 4, 5, 6],
        "down_bytes": [1, 1, 1, 1, 1, 1],
    })
    ips = ibis.memtable({"ip": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.9",
                                "1.1.1.1", "8.8.8.8"],
                         "internal": [True] * 6 + [False, False]})
    t = with_traffic_class(flows, ips).to_pandas()
    assert t.traffic_class.tolist() == ["internal_internal"] * 3 + ["internal_external", "external_internal",
                                                                     "internal_internal"]
    ii = with_traffic_class(flows, ips)
    svc = internal_services(ii.filter(ii.traffic_class == "internal_internal"), min_clients=3).to_pandas()
    assert svc[["ip", "proto", "port", "flows", "clients"]].values.tolist() == [["10.0.0.9", "udp", 53, 3, 3]]
