"""botnet rules: internal hosts that start acting together (see rules.yaml).

A botnet shows in flow records as *new relationships*, judged against the baseline day:

  * bots that talk to each other directly (peer-to-peer C2, internal proxies), on a service the
    network never used host-to-host, between hosts that are not servers, and
  * bots that take up the same NEW external destination with the same machine-like rhythm.

Rules
  botnet.new_internal_peers  a host has new host-to-host links (pair absent from the baseline on
                             that service) on a (proto, port) the baseline did not use
                             host-to-host, to hosts that are not internal servers, lasting (flows
                             and hours), and either both ends initiate (mutual, as P2P bots do) or
                             the host fans out to several new peers on that service.
  botnet.coordinated_group   connected components of hosts linked by mutual new peer links or by
                             beaconing to the same new, rare external destination: every member
                             of a group of >= min_group_size is alerted, the others in `related`.
  botnet.common_beacon       >= min_hosts internal hosts beacon to one external destination that
                             no host used on the baseline day and few hosts use today
                             (prevalence, as RITA weighs it): each pair has enough connections
                             over enough hours, a RITA-style beacon score (stats.beacon_score),
                             and the group's gaps are regular ((median - MAD) / median).

What is learned, not fixed: which (proto, port) hosts use host-to-host (baseline edges), which
hosts are servers (the profile's internal servers), which external destinations exist (baseline
edges), how many hosts are active today (prevalence denominator), the hosts' own and their peers'
baseline internal peer counts (evidence). Multicast and broadcast addresses are never peers.

Heavy work is Ibis over ctx.edges (the test day's per-edge aggregate), the baseline edges, and
stats.beacon_stats on candidate pairs only; Python scores the small per-link / per-pair results.
"""

from __future__ import annotations

import math

import numpy as np

from ..alerts import Alert, Evidence
from ..network import INTERNAL_EXTERNAL, INTERNAL_INTERNAL
from . import rule, stats


# --- formatting --------------------------------------------------------------------------------

def _svc(proto, port) -> str:
    try:
        return f"{proto}/{int(port)}"
    except (TypeError, ValueError):
        return f"{proto}/?"


def _list(ips, n: int = 4) -> str:
    ips = list(ips)
    head = ", ".join(ips[:n])
    return head + (f" and {len(ips) - n} more" if len(ips) > n else "")


def _where(ctx, ip: str) -> str:
    g = ctx.geo(ip)
    parts = [p for p in (g.get("as_org"), g.get("country")) if p and p == p and p != "private"]
    return f" ({', '.join(str(p) for p in parts)})" if parts else ""


def _dur(seconds) -> str:
    s = float(seconds)
    if s != s:
        return "?"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _sat(x: float, lo: float, hi: float) -> float:
    """0 at lo, 1 at hi, log-scaled in between (how far past a threshold a count is)."""
    if x <= lo or hi <= lo:
        return 0.0 if x <= lo else 1.0
    return min(1.0, math.log(x / lo) / math.log(hi / lo)) if lo > 0 else 1.0


# --- shared building blocks ----------------------------------------------------------------------

def _cache(ctx) -> dict:
    c = getattr(ctx, "_botnet_cache", None)
    if c is None:
        c = ctx._botnet_cache = {}
    return c


def _baseline_peer_services(ctx, min_pairs: int):
    """(proto, port) -> number of distinct unordered host pairs that used it host-to-host on the
    baseline day (non-server, unicast hosts only); and the set of established peer services."""
    key = ("peer_services", min_pairs)
    c = _cache(ctx)
    if key in c:
        return c[key]
    b = ctx.base("edges")
    pairs: dict = {}
    if b is not None:
        b = b.filter((b.traffic_class == INTERNAL_INTERNAL) & (b.src_ip != b.dst_ip))
        if ctx.server_ips:
            srv = sorted(ctx.server_ips)
            b = b.filter(~b.src_ip.isin(srv) & ~b.dst_ip.isin(srv))
        df = b.select("src_ip", "dst_ip", "proto", "port").distinct().to_pandas()
        if len(df):
            uni = _unicast(ctx, set(df.src_ip) | set(df.dst_ip))
            df = df[df.src_ip.isin(uni) & df.dst_ip.isin(uni)]
            lo = df[["src_ip", "dst_ip"]].min(axis=1)
            hi = df[["src_ip", "dst_ip"]].max(axis=1)
            df = df.assign(pair=lo + "|" + hi)
            pairs = {(p, int(q)): int(n) for (p, q), n in df.groupby(["proto", "port"]).pair.nunique().items()}
    established = {k for k, n in pairs.items() if n >= min_pairs}
    c[key] = (pairs, established)
    return c[key]


def _unicast(ctx, ips) -> set:
    return {ip for ip in ips if isinstance(ip, str) and ctx.model.is_unicast_host(ip)}


def _new_peer_links(ctx, min_pairs: int):
    """The test day's new host-to-host links (pandas, one row per directed edge):
    internal -> internal, both ends unicast and not internal servers, on a (proto, port) that is
    not an established peer service of the baseline, for a host pair that did not use that
    (proto, port) in either direction on the baseline day. Adds `mutual` (the peer also opens
    new links to the host, on any such service)."""
    import pandas as pd

    key = ("links", min_pairs)
    c = _cache(ctx)
    if key in c:
        return c[key]
    pair_counts, established = _baseline_peer_services(ctx, min_pairs)
    e = ctx.edges
    t = e.filter((e.traffic_class == INTERNAL_INTERNAL) & (e.src_ip != e.dst_ip))
    if ctx.server_ips:
        srv = sorted(ctx.server_ips)
        t = t.filter(~t.src_ip.isin(srv) & ~t.dst_ip.isin(srv))
    b = ctx.base("edges")
    if b is not None:
        b = b.filter(b.traffic_class == INTERNAL_INTERNAL)
        fwd = b.select("src_ip", "dst_ip", "proto", "port")
        rev = b.select(src_ip=b.dst_ip, dst_ip=b.src_ip, proto=b.proto, port=b.port)
        known = fwd.union(rev).distinct()
        t = t.anti_join(known, ["src_ip", "dst_ip", "proto", "port"])
    df = t.select("src_ip", "dst_ip", "proto", "port", "flows", "up_bytes", "down_bytes",
                  "first_ts", "last_ts", "hours").to_pandas()
    if len(df):
        uni = _unicast(ctx, set(df.src_ip) | set(df.dst_ip))
        df = df[df.src_ip.isin(uni) & df.dst_ip.isin(uni)]
        svc = list(zip(df.proto, df.port.astype(int)))
        df = df[[s not in established for s in svc]].reset_index(drop=True)
    if len(df):
        pairs = set(zip(df.src_ip, df.dst_ip))
        df["mutual"] = [(d, s) in pairs for s, d in zip(df.src_ip, df.dst_ip)]
        df["baseline_pairs"] = [pair_counts.get((p, int(q)), 0) for p, q in zip(df.proto, df.port)]
        lo = df[["src_ip", "dst_ip"]].min(axis=1)
        hi = df[["src_ip", "dst_ip"]].max(axis=1)
        df["pair"] = lo + "|" + hi
        # the pair's traffic in both directions (all new non-peer services): persistence cues
        g = df.groupby("pair")
        df["pair_flows"] = g.flows.transform("sum")
        df["pair_hours"] = g.hours.transform("max")
    else:
        df = pd.DataFrame(columns=["src_ip", "dst_ip", "proto", "port", "flows", "up_bytes", "down_bytes",
                                   "first_ts", "last_ts", "hours", "mutual", "baseline_pairs", "pair",
                                   "pair_flows", "pair_hours"])
    c[key] = df
    return df


def _lasting(links, spec):
    """Links whose host pair has enough flows (both directions) over enough hours."""
    if not len(links):
        return links
    return links[(links.pair_flows >= spec.t("min_link_flows")) & (links.pair_hours >= spec.t("min_link_hours"))]


def _baseline_internal_peers(ctx):
    """Per host: its baseline count of internal (non-server) peers, and the population's p99."""
    c = _cache(ctx)
    if "hosts_peers" not in c:
        h = ctx.base_df("hosts")
        if h is None or "internal_peers" not in h:
            c["hosts_peers"] = ({}, 0.0, set())
        else:
            v = h.internal_peers.fillna(0)
            c["hosts_peers"] = (dict(zip(h.ip, v.astype(int))), float(v.quantile(0.99)) if len(v) else 0.0,
                                set(h.ip))
    return c["hosts_peers"]


def _active_hosts(ctx) -> int:
    """Internal hosts with outgoing traffic today: the denominator of a destination's prevalence."""
    c = _cache(ctx)
    if "active_hosts" not in c:
        e = ctx.edges
        t = e.filter(e.traffic_class.isin([INTERNAL_INTERNAL, INTERNAL_EXTERNAL]))
        ips = t.select("src_ip").distinct().to_pandas().src_ip
        c["active_hosts"] = max(len(_unicast(ctx, ips)), 1)
    return c["active_hosts"]


def _beacons(ctx, spec):
    """Candidate beacons to NEW, RARE external destinations (pandas, one row per host->destination
    pair that passes the per-pair gates) with their beacon statistics and scores, and the
    per-destination group verdict. Keyed by the thresholds used, so rules sharing them share it."""
    import pandas as pd

    keys = ("min_hosts", "max_prevalence", "min_connections", "min_active_hours", "min_score",
            "min_gap_regularity", "min_group_regularity", "min_gap_iqr_seconds", "min_size_iqr_bytes")
    th = {k: spec.t(k) for k in keys}
    key = ("beacons", tuple(sorted(th.items())))
    c = _cache(ctx)
    if key in c:
        return c[key]
    empty = pd.DataFrame(columns=["src_ip", "dst_ip", "n", "score"])
    b = ctx.base("edges")
    e = ctx.edges
    ie = e.filter(e.traffic_class == INTERNAL_EXTERNAL)
    if b is not None:
        known = b.filter(b.traffic_class == INTERNAL_EXTERNAL).select("dst_ip").distinct()
        ie = ie.anti_join(known, "dst_ip")
    # per pair over all its ports (a beacon may hop ports; the rhythm is the pair's)
    pair = ie.group_by("src_ip", "dst_ip").aggregate(
        flows=ie.flows.sum(), up_bytes=ie.up_bytes.sum(), down_bytes=ie.down_bytes.sum())
    per_dst = pair.group_by("dst_ip").aggregate(dst_hosts=pair.src_ip.nunique())
    active = _active_hosts(ctx)
    max_hosts = max(th["max_prevalence"] * active, th["min_hosts"])
    per_dst = per_dst.filter((per_dst.dst_hosts >= th["min_hosts"]) & (per_dst.dst_hosts <= max_hosts))
    # hours: distinct clock hours of the pair (edge_hours), not summed over ports
    eh = ctx.edge_hours
    eh = eh.filter(eh.traffic_class == INTERNAL_EXTERNAL)
    hrs = eh.group_by("src_ip", "dst_ip").aggregate(active_hours=eh.hour.nunique())
    cand = pair.join(per_dst, "dst_ip").join(hrs, ["src_ip", "dst_ip"])
    cand = cand.filter((cand.flows >= th["min_connections"]) & (cand.active_hours >= th["min_active_hours"]))
    # main port of each candidate pair (for the message and the example flows)
    ports = ie.join(cand.select("src_ip", "dst_ip"), ["src_ip", "dst_ip"]).select(
        "src_ip", "dst_ip", "proto", "port", "flows").to_pandas()
    cdf = cand.to_pandas()
    if not len(cdf):
        c[key] = (empty, {})
        return c[key]
    # only destinations with enough candidate pairs go on to the (costlier) beacon statistics
    ok_dst = cdf.groupby("dst_ip").src_ip.nunique()
    cdf = cdf[cdf.dst_ip.isin(ok_dst[ok_dst >= th["min_hosts"]].index)]
    cdf = cdf[cdf.src_ip.isin(_unicast(ctx, set(cdf.src_ip)))]
    if not len(cdf):
        c[key] = (empty, {})
        return c[key]
    import pyarrow as pa

    pairs_t = ctx.engine.from_arrow(pa.Table.from_pandas(cdf[["src_ip", "dst_ip"]], preserve_index=False))
    bs = stats.beacon_stats(ctx.flows, pairs_t, ctx.engine)
    bs = bs.merge(cdf[["src_ip", "dst_ip", "flows", "up_bytes", "down_bytes", "dst_hosts", "active_hours"]],
                  on=["src_ip", "dst_ip"])
    day = ctx.span[2]
    scores = [stats.beacon_score(r, day, th["min_gap_iqr_seconds"], th["min_size_iqr_bytes"])
              for r in bs.itertuples()]
    for k in ("score", "timing", "size", "histogram", "duration"):
        bs[k] = [s[k] for s in scores]
    med, mad = bs.gap_med.astype(float), bs.gap_mad.astype(float)
    bs["gap_regularity"] = [max(0.0, min(1.0, (m - d) / m)) if m and m > 0 else 0.0 for m, d in zip(med, mad)]
    top = ports.sort_values(["flows", "port"], ascending=[False, True]).drop_duplicates(["src_ip", "dst_ip"])
    bs = bs.merge(top[["src_ip", "dst_ip", "proto", "port"]], on=["src_ip", "dst_ip"], how="left")
    bs["member"] = (bs.score >= th["min_score"]) & (bs.gap_regularity >= th["min_gap_regularity"])
    groups = {}
    for dst, g in bs[bs.member].groupby("dst_ip"):
        if len(g) >= th["min_hosts"] and float(g.gap_regularity.median()) >= th["min_group_regularity"]:
            groups[dst] = sorted(g.src_ip)
    bs["prevalence"] = bs.dst_hosts / active
    c[key] = (bs, groups)
    return c[key]


# --- botnet.new_internal_peers -------------------------------------------------------------------

@rule("botnet.new_internal_peers")
def new_internal_peers(ctx, spec) -> list[Alert]:
    links = _lasting(_new_peer_links(ctx, spec.t("peer_service_min_pairs")), spec)
    if not len(links):
        return []
    min_fan = spec.t("min_fanout_peers")
    base_peers, peers_p99, known_hosts = _baseline_internal_peers(ctx)
    alerts = []
    for host, g in links.groupby("src_ip"):
        fan = g.groupby(["proto", "port"]).dst_ip.nunique()
        fan_svcs = {k for k, n in fan.items() if n >= min_fan}
        fan_hit = [(p, q) in fan_svcs for p, q in zip(g.proto, g.port)]
        hit = g[g.mutual.to_numpy(dtype=bool) | np.asarray(fan_hit, dtype=bool)]
        if not len(hit):
            continue
        peers = sorted(set(hit.dst_ip))
        mutual_peers = sorted(set(hit[hit.mutual].dst_ip))
        flows = int(links[(links.src_ip == host) | (links.dst_ip == host)]
                    .loc[lambda d: d.pair.isin(set(hit.pair))].flows.sum())
        hours = int(hit.pair_hours.max())
        svc_rows = hit.groupby(["proto", "port"]).agg(f=("flows", "sum"), bp=("baseline_pairs", "max"))
        (proto, port), top = max(svc_rows.iterrows(), key=lambda kv: kv[1].f)
        svcs = [_svc(p, q) for p, q in svc_rows.index]
        today_pairs = int(links[(links.proto == proto) & (links.port == port)].pair.nunique())
        own = base_peers.get(host) if host in known_hosts else None
        why = (f"both ways with {len(mutual_peers)}" if mutual_peers else
               f"fanning out to {len(peers)}")
        message = (f"talks directly to {len(peers)} internal host(s) it never talked to on the baseline day "
                   f"({_list(peers)}) on {', '.join(svcs)}: {flows} flows over {hours} h, {why}; "
                   f"baseline: {'new host' if own is None else f'{own} internal peer(s)'}, "
                   f"{int(top.bp)} host pair(s) used {_svc(proto, port)} host-to-host "
                   f"(peers' 99th percentile: {peers_p99:.0f} internal peers)")
        evidence = [
            Evidence("new internal peers (non-server hosts, pair unseen on the baseline day)", "hosts",
                     observed=len(peers), baseline=own, reference=round(peers_p99, 1),
                     threshold=1 if mutual_peers else min_fan),
            Evidence("peers that also open connections back to the host (mutual links)", "hosts",
                     observed=len(mutual_peers), baseline=0, threshold=1 if not fan_svcs else None),
            Evidence(f"host pairs using {_svc(proto, port)} host-to-host", "host pairs", observed=today_pairs,
                     baseline=int(top.bp), threshold=spec.t("peer_service_min_pairs")),
            Evidence("flows on the new peer links (both directions)", "flows", observed=flows, baseline=0,
                     threshold=spec.t("min_link_flows")),
            Evidence("hours with traffic on the new peer links", "hours", observed=hours, baseline=0,
                     threshold=spec.t("min_link_hours")),
        ]
        score = (_sat(len(peers), 0.5, 5) + _sat(flows, spec.t("min_link_flows"), 50 * spec.t("min_link_flows"))
                 + _sat(hours, spec.t("min_link_hours"), 24) + (1.0 if mutual_peers and fan_svcs else 0.5)) / 4
        top_peer = hit.sort_values("flows", ascending=False).iloc[0]
        alerts.append(Alert(
            rule=spec, source_ip=host, message=message, evidence=evidence, score=score,
            destination_ip=str(top_peer.dst_ip), timestamp=g.first_ts.min(),
            related=peers, example_port=int(top_peer.port),
            details={"services": svcs, "mutual_peers": mutual_peers, "fanout_services": sorted(_svc(*s) for s in fan_svcs),
                     "links": [{"dst_ip": r.dst_ip, "service": _svc(r.proto, r.port), "flows": int(r.flows),
                                "hours": int(r.hours), "mutual": bool(r.mutual)} for r in hit.itertuples()][:20]},
        ))
    return alerts


# --- botnet.common_beacon ------------------------------------------------------------------------

@rule("botnet.common_beacon")
def common_beacon(ctx, spec) -> list[Alert]:
    bs, groups = _beacons(ctx, spec)
    if not groups:
        return []
    active = _active_hosts(ctx)
    alerts = []
    for dst, members in groups.items():
        g = bs[(bs.dst_ip == dst) & bs.member]
        others_all = sorted(set(bs[bs.dst_ip == dst].src_ip) - set(members))
        group_reg = float(g.gap_regularity.median())
        where = _where(ctx, dst)
        for r in g.itertuples():
            others = [m for m in members if m != r.src_ip]
            o = g[g.src_ip != r.src_ip]
            span_s = (r.last_ts - r.first_ts).total_seconds()
            message = (f"beacons to {dst}{where}, a destination no host used on the baseline day, on "
                       f"{_svc(r.proto, r.port)} every ~{_dur(r.gap_med)} ({int(r.n)} connections over "
                       f"{int(r.active_hours)} h, beacon score {r.score:.2f}), like {len(others)} other internal "
                       f"host(s) ({_list(others)}); baseline day: 0 flows to it from any host, today "
                       f"{int(r.dst_hosts)} of {active} active hosts use it")
            evidence = [
                Evidence("connections to the destination", "flows", observed=int(r.n), baseline=0,
                         threshold=spec.t("min_connections")),
                Evidence("internal hosts beaconing to the destination", "hosts", observed=len(members), baseline=0,
                         reference=int(r.dst_hosts), threshold=spec.t("min_hosts")),
                Evidence("share of today's active internal hosts using the destination (prevalence)", "share",
                         observed=round(float(r.prevalence), 4), baseline=0.0, threshold=spec.t("max_prevalence")),
                Evidence("beacon score (RITA-style: timing, size, hourly histogram, duration)", "score",
                         observed=round(float(r.score), 3), reference=round(float(o.score.median()), 3),
                         threshold=spec.t("min_score")),
                Evidence("regularity of the gaps ((median - MAD) / median)", "score",
                         observed=round(float(r.gap_regularity), 3), reference=round(group_reg, 3),
                         threshold=spec.t("min_group_regularity")),
                Evidence("median gap between connections", "seconds", observed=round(float(r.gap_med), 1),
                         reference=round(float(o.gap_med.median()), 1)),
                Evidence("hours with connections", "hours", observed=int(r.active_hours), baseline=0,
                         threshold=spec.t("min_active_hours")),
            ]
            score = (0.5 * _sat(r.score, spec.t("min_score"), 1.0) + 0.25 * _sat(len(members), 1, 6)
                     + 0.25 * _sat(r.gap_regularity, spec.t("min_gap_regularity"), 1.0))
            alerts.append(Alert(
                rule=spec, source_ip=r.src_ip, message=message, evidence=evidence, score=score,
                destination_ip=dst, timestamp=r.first_ts, related=others,
                example_port=None if r.port != r.port else int(r.port),
                details={"beacon": {k: round(float(getattr(r, k)), 3)
                                    for k in ("score", "timing", "size", "histogram", "duration", "gap_regularity")},
                         "gap_median_seconds": round(float(r.gap_med), 1),
                         "bytes_up_median": round(float(r.size_med), 1),
                         "span_seconds": round(span_s, 1),
                         "other_hosts_not_beaconing": others_all[:20]},
            ))
    return alerts


# --- botnet.coordinated_group --------------------------------------------------------------------

@rule("botnet.coordinated_group")
def coordinated_group(ctx, spec) -> list[Alert]:
    """Components of the graph whose edges are mutual new peer links and co-beaconing to a new,
    rare destination; every member that takes part actively is alerted."""
    links = _lasting(_new_peer_links(ctx, spec.t("peer_service_min_pairs")), spec)
    mutual = links[links.mutual] if len(links) else links
    bs, groups = _beacons(ctx, spec)
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for a, b in zip(mutual.src_ip, mutual.dst_ip):
        union(a, b)
    for members in groups.values():
        for m in members[1:]:
            union(members[0], m)
    comps: dict = {}
    for x in list(parent):
        comps.setdefault(find(x), set()).add(x)
    alerts = []
    min_size = spec.t("min_group_size")
    for root, members in comps.items():
        if len(members) < min_size:
            continue
        members = sorted(members)
        mset = set(members)
        ml = mutual[mutual.src_ip.isin(mset)]
        dsts = {d: m for d, m in groups.items() if mset & set(m)}
        n_links = int(ml.pair.nunique()) if len(ml) else 0
        link_flows = int(ml.flows.sum()) if len(ml) else 0
        svcs = sorted({_svc(p, q) for p, q in zip(ml.proto, ml.port)})
        for host in members:
            hl = ml[(ml.src_ip == host) | (ml.dst_ip == host)]
            hb = bs[(bs.src_ip == host) & bs.dst_ip.isin(list(dsts)) & bs.member] if len(bs) else bs
            others = [m for m in members if m != host]
            cues = []
            if len(hl):
                cues.append(f"{hl.pair.nunique()} mutual new peer link(s) on {', '.join(sorted({_svc(p, q) for p, q in zip(hl.proto, hl.port)}))} "
                            f"({int(hl.flows.sum())} flows)")
            if len(hb):
                cues.append(f"beacons to new destination(s) {', '.join(sorted(hb.dst_ip))} shared with the group")
            message = (f"member of a group of {len(members)} internal hosts acting together "
                       f"({_list(others)} and this one): {'; '.join(cues)}; baseline day: no link among "
                       f"them on these services and no host used {'these destinations' if dsts else 'them'}")
            evidence = [
                Evidence("hosts in the group (connected by new mutual links or a shared new beacon destination)",
                         "hosts", observed=len(members), baseline=0, threshold=min_size),
                Evidence("mutual new peer links inside the group", "links", observed=n_links, baseline=0),
                Evidence("flows on the group's new peer links", "flows", observed=link_flows, baseline=0,
                         threshold=spec.t("min_link_flows")),
                Evidence("new external destinations the group beacons to", "destinations", observed=len(dsts),
                         baseline=0),
            ]
            if len(hb):
                evidence.append(Evidence("the host's beacon score to the shared destination", "score",
                                         observed=round(float(hb.score.max()), 3), threshold=spec.t("min_score")))
            score = (_sat(len(members), 1, 6) + (1.0 if len(dsts) and n_links else 0.6)
                     + _sat(max(link_flows, 1), spec.t("min_link_flows"), 50 * spec.t("min_link_flows"))
                     * (1 if n_links else 0) + (float(hb.score.max()) if len(hb) else 0.0)) / 3
            own = hl[hl.src_ip == host].sort_values("flows")
            if len(own):
                dst, port = str(own.iloc[-1].dst_ip), int(own.iloc[-1].port)
            elif len(hb):
                dst = str(hb.iloc[0].dst_ip)
                port = int(hb.iloc[0].port) if hb.iloc[0].port == hb.iloc[0].port else None
            else:
                dst, port = None, None
            ts = min([t for t in (hl.first_ts.min() if len(hl) else None, hb.first_ts.min() if len(hb) else None)
                      if t is not None and t == t], default=None)
            alerts.append(Alert(
                rule=spec, source_ip=host, message=message, evidence=evidence, score=min(1.0, score),
                destination_ip=dst, timestamp=ts, related=others, example_port=port,
                details={"group": members, "peer_services": svcs, "beacon_destinations": sorted(dsts)},
            ))
    return alerts
