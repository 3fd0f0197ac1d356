"""`flowsiem hunt`: the rules on one capture, with no clean day to compare against.

The same rule set as `detect`: every rule says in rules.yaml what it judges against. Rules with
`reference: capture` take their reference from the analysed flows themselves -- the population
of hosts (a destination most hosts use is not one host's beacon) and each host's own time course
(a rhythm, a run of failed attempts) -- and run here and in `detect`. Rules with
`reference: baseline` judge change from a clean day and are skipped (and named) here.

With no profile, the network model comes from the capture: `--internal`, or the private source
networks, or -- a capture taken at one host with a public address -- the addresses that take
part in at least half of the flows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .console import info
from .detect import DetectOptions, DetectResult, classified_context, finish, read_inputs
from .errors import UsageError
from .network import NetworkModel, infer_internal_networks, parse_cidrs

SENSOR_SHARE = 0.5     # an address in at least half of the flows is the host the capture was taken at


@dataclass
class HuntOptions(DetectOptions):
    internal: str | None = None


def capture_networks(raw) -> NetworkModel:
    """The internal networks of a capture without --internal: the prefixes of its private
    sources; else of its private destinations (a sensor in front of a private server that only
    outsiders talk to); else -- a host on a public address, seen from its own interface -- the
    addresses taking part in at least SENSOR_SHARE of the flows."""
    import ipaddress

    import ibis

    both = raw.select(ip=raw.src_ip, side=ibis.literal("src")).union(
        raw.select(ip=raw.dst_ip, side=ibis.literal("dst")), distinct=False)
    counts = both.group_by("ip", "side").aggregate(n=both.count()).to_pandas()

    def private(ip):
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return a.is_private and not (a.is_link_local or a.is_multicast or a.is_loopback or a.is_unspecified)

    counts["private"] = counts.ip.map(private)
    src = counts[counts.side == "src"]
    dst = counts[counts.side == "dst"]
    if src.private.any():
        nets = infer_internal_networks(src.ip.tolist())
    elif dst.private.any():
        nets = infer_internal_networks(dst.ip[dst.private].tolist())
    else:
        total = int(src.n.sum())
        per_ip = counts.groupby("ip").n.sum()
        sensors = sorted(per_ip.index[per_ip >= SENSOR_SHARE * total])
        nets = [str(ipaddress.ip_network(ip)) for ip in sensors] or infer_internal_networks(src.ip.tolist())
    return NetworkModel(networks=[ipaddress.ip_network(n) for n in nets], inferred=True)


def build_hunt_context(data, servers=None, options: HuntOptions | None = None):
    opts = options or HuntOptions()
    parse_cidrs(opts.internal)  # validate before reading
    engine, read, srv_read = read_inputs(data, servers, opts)
    raw = read.table
    if opts.internal:
        model = NetworkModel(networks=parse_cidrs(opts.internal), inferred=False)
    else:
        model = capture_networks(raw)
    if not model.networks:
        raise UsageError("could not infer the internal networks from the capture; give --internal CIDR,...")
    info(f"internal networks ({'inferred from the capture' if model.inferred else '--internal'}): "
         f"{', '.join(model.cidrs)}")
    profile = {"internal_networks": model.cidrs, "internal_servers": [], "reference": "capture"}
    return classified_context(engine, read, srv_read, model, opts, None, profile)


def hunt(data, out: Path, servers=None, options: HuntOptions | None = None) -> DetectResult:
    from .rules import load_rules

    opts = options or HuntOptions()
    t0 = time.perf_counter()
    specs = load_rules(opts.rules_file, opts.disable)
    skipped = [s.id for s in specs.values() if s.enabled and s.reference == "baseline"]
    ctx = build_hunt_context(data, servers, opts)
    if skipped:
        info(f"{len(skipped)} rules judge change from a clean day and are skipped "
             f"(use `flowsiem run` when you have one)")
    return finish(ctx, specs, opts, out, t0)
