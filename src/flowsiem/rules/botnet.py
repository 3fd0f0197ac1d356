"""botnet rules: internal hosts that start acting together (see rules.yaml).

A botnet shows in flow records as *new relationships*, judged against the baseline day:

  * bots that talk to each other directly (peer-to-peer C2, internal proxies), on a service the
    network never used host-to-host, between hosts that are not servers, and
  * bots that take up the same NEW external destination with the same machine-like rhythm.

Rules
  botnet.new_internal_peers  a host has new host-to-host links (pair absent from the baseline on
                             that service) on a (proto, port) the baseline did not use
                             host-to-host nor for broadcast/multicast discovery, to hosts that are
                             not internal servers, lasting (flows and hours), plus one more cue:
                             both ends initiate (mutual, as P2P bots do), or the host fans out
                             to several new peers on that service. (One host polling one new
                             peer is left to the group test: alone, a few Poisson flows look
                             periodic too often.)
  botnet.coordinated_group   connected components of hosts linked by mutual new peer links, by
                             beaconing to the same new, rare external destination, or by polling
                             the same new internal peer on a timer: every member that initiates
                             is alerted, the others (and a polled hub) in `related`.
  botnet.common_beacon       >= min_hosts internal hosts beacon to one external destination that
                             no host used on the baseline day and few hosts use today
                             (prevalence, as RITA weighs it): enough connections over enough hours
                             per pair, a RITA-style beacon score (stats.beacon_score) for at least
                             min_hosts of them, and regular gaps ((median - MAD) / median) across
                             all the destination's steady users. Every steady user is alerted.

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
        return f"{proto}"


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


def _port(q) -> int:
    """A port as int (-1 when the record has none, e.g. some ICMP exports)."""
    try:
        return int(q)
    except (TypeError, ValueError):
        return -1


def _baseline_peer_services(ctx, min_pairs: int):
    """What the baseline day says about host-to-host services. Returns (pairs, established):
    pairs: (proto, port) -> number of distinct unordered pairs of non-server unicast hosts that
    used it host-to-host; established: the (proto, port) used so by >= min_pairs pairs, plus
    those the baseline sent to multicast/broadcast addresses (local discovery protocols, whose
    unicast replies between hosts are chatter, not a relationship)."""
    key = ("peer_services", min_pairs)
    c = _cache(ctx)
    if key in c:
        return c[key]
    import ibis

    b = ctx.base("edges")
    pairs: dict = {}
    discovery: set = set()
    if b is not None:
        b = b.filter((b.traffic_class == INTERNAL_INTERNAL) & (b.src_ip != b.dst_ip))
        ips = b.select(ip=b.src_ip).union(b.select(ip=b.dst_ip)).distinct().to_pandas().ip
        groupcast = sorted(set(ips) - _unicast(ctx, ips))  # multicast, broadcast, 0.0.0.0 (few)
        if groupcast:
            d = b.filter(b.dst_ip.isin(groupcast) & ~b.src_ip.isin(groupcast)).select("proto", "port").distinct()
            discovery = {(p, _port(q)) for p, q in d.to_pandas().itertuples(index=False)}
            b = b.filter(~b.src_ip.isin(groupcast) & ~b.dst_ip.isin(groupcast))
        if ctx.server_ips:
            srv = sorted(ctx.server_ips)
            b = b.filter(~b.src_ip.isin(srv) & ~b.dst_ip.isin(srv))
        lo, hi = ibis.least(b.src_ip, b.dst_ip), ibis.greatest(b.src_ip, b.dst_ip)
        b = b.mutate(pair=lo.concat("|", hi))
        per = b.group_by("proto", "port").aggregate(pairs=b.pair.nunique()).to_pandas()
        pairs = {(p, _port(q)): int(n) for p, q, n in per.itertuples(index=False)}
    established = {k for k, n in pairs.items() if n >= min_pairs} | discovery
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
        svc = [(p, _port(q)) for p, q in zip(df.proto, df.port)]
        df = df[[x not in established for x in svc]].reset_index(drop=True)
    if len(df):
        pairs = set(zip(df.src_ip, df.dst_ip))
        df["mutual"] = [(d, s) in pairs for s, d in zip(df.src_ip, df.dst_ip)]
        df["baseline_pairs"] = [pair_counts.get((p, _port(q)), 0) for p, q in zip(df.proto, df.port)]
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


BEACON_KEYS = ("min_hosts", "max_prevalence", "min_connections", "min_active_hours", "min_score",
               "min_gap_regularity", "min_group_regularity", "min_gap_iqr_seconds", "min_size_iqr_bytes")
RHYTHM_KEYS = ("min_connections", "min_active_hours", "min_gap_iqr_seconds", "min_size_iqr_bytes")


def _score_pairs(ctx, cdf, th):
    """Beacon statistics (stats.beacon_stats, in the engine, for these pairs only) and scores of
    candidate (src_ip, dst_ip) pairs; adds score, its sub-scores and gap_regularity."""
    import pyarrow as pa

    pairs_t = ctx.engine.from_arrow(pa.Table.from_pandas(cdf[["src_ip", "dst_ip"]].drop_duplicates(),
                                                         preserve_index=False))
    bs = stats.beacon_stats(ctx.flows, pairs_t, ctx.engine)
    bs = bs.merge(cdf, on=["src_ip", "dst_ip"])
    day = ctx.span[2]
    scores = [stats.beacon_score(r, day, th["min_gap_iqr_seconds"], th["min_size_iqr_bytes"])
              for r in bs.itertuples()]
    for k in ("score", "timing", "size", "histogram", "duration"):
        bs[k] = [s[k] for s in scores]
    med, mad = bs.gap_med.astype(float), bs.gap_mad.astype(float)
    bs["gap_regularity"] = [max(0.0, min(1.0, (m - d) / m)) if m and m > 0 else 0.0 for m, d in zip(med, mad)]
    return bs


def _group_verdict(bs, th) -> dict:
    """Per destination, the group test: at least min_hosts of its candidate pairs are rhythmic
    (score >= min_score and gap regularity >= min_gap_regularity), and the median gap regularity
    of ALL its candidate pairs (rhythmic or not: no selection bias) >= min_group_regularity.
    A destination that passes is a shared beacon target: every host with a candidate pair to it
    (enough connections over enough hours) is a member, its own rhythm in the evidence.
    Sets bs.rhythmic and bs.member; returns {destination: sorted members}."""
    bs["rhythmic"] = (bs.score >= th["min_score"]) & (bs.gap_regularity >= th["min_gap_regularity"])
    groups = {}
    for dst, g in bs.groupby("dst_ip"):
        regular = float(g.gap_regularity.median()) >= th["min_group_regularity"]
        if int(g.rhythmic.sum()) >= th["min_hosts"] and regular:
            groups[dst] = sorted(g.src_ip)
    bs["member"] = [d in groups for d in bs.dst_ip]
    return groups


def _beacons(ctx, spec):
    """Beacons of several hosts to NEW, RARE external destinations: candidate pairs (pandas, one
    row per host->destination pair with enough connections over enough hours) with their beacon
    statistics and scores, and {destination: members} for the destinations that pass the group
    test. Cached by the thresholds used, so rules sharing them share the work."""
    import pandas as pd

    th = {k: spec.t(k) for k in BEACON_KEYS}
    key = ("beacons", tuple(sorted(th.items())))
    c = _cache(ctx)
    if key in c:
        return c[key]
    empty = (pd.DataFrame(columns=["src_ip", "dst_ip", "n", "score", "member"]), {})
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
    if len(cdf):
        cdf = cdf[cdf.src_ip.isin(_unicast(ctx, set(cdf.src_ip)))]
        # only destinations with enough candidate pairs go on to the (costlier) beacon statistics
        ok_dst = cdf.groupby("dst_ip").src_ip.nunique()
        cdf = cdf[cdf.dst_ip.isin(ok_dst[ok_dst >= th["min_hosts"]].index)]
    if not len(cdf):
        c[key] = empty
        return empty
    cols = ["src_ip", "dst_ip", "flows", "up_bytes", "down_bytes", "dst_hosts", "active_hours"]
    bs = _score_pairs(ctx, cdf[cols], th)
    top = ports.sort_values(["flows", "port"], ascending=[False, True]).drop_duplicates(["src_ip", "dst_ip"])
    bs = bs.merge(top[["src_ip", "dst_ip", "proto", "port"]], on=["src_ip", "dst_ip"], how="left")
    bs["prevalence"] = bs.dst_hosts / active
    c[key] = (bs, _group_verdict(bs, th))
    return c[key]


def _internal_rhythm(ctx, spec, th):
    """Beacon statistics of the lasting new host-to-host links (pandas, one row per directed
    pair with enough connections over enough hours): hosts polling a new internal peer on a timer."""
    import pandas as pd

    th = {k: th[k] for k in RHYTHM_KEYS}
    key = ("internal_rhythm", spec.t("peer_service_min_pairs"), spec.t("min_link_flows"),
           spec.t("min_link_hours"), tuple(sorted(th.items())))
    c = _cache(ctx)
    if key in c:
        return c[key]
    links = _lasting(_new_peer_links(ctx, spec.t("peer_service_min_pairs")), spec)
    out = pd.DataFrame(columns=["src_ip", "dst_ip", "proto", "port", "n", "score", "gap_regularity", "dst_hosts"])
    if len(links):
        top = links.sort_values(["flows", "port"], ascending=[False, True]).drop_duplicates(["src_ip", "dst_ip"])
        g = links.groupby(["src_ip", "dst_ip"], as_index=False).agg(
            flows=("flows", "sum"), active_hours=("hours", "max"))
        g = g[(g.flows >= th["min_connections"]) & (g.active_hours >= th["min_active_hours"])]
        if len(g):
            g = g.merge(top[["src_ip", "dst_ip", "proto", "port"]], on=["src_ip", "dst_ip"])
            users = _new_peer_links(ctx, spec.t("peer_service_min_pairs")).groupby("dst_ip").src_ip.nunique()
            g["dst_hosts"] = g.dst_ip.map(users).fillna(1).astype(int)  # every host with a new link to it
            out = _score_pairs(ctx, g, th)
            out["prevalence"] = out.dst_hosts / _active_hosts(ctx)
    c[key] = out
    return out


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
        is_fan = np.asarray([(p, q) in fan_svcs for p, q in zip(g.proto, g.port)], dtype=bool)
        hit = g[g.mutual.to_numpy(dtype=bool) | is_fan]
        if not len(hit):
            continue
        peers = sorted(set(hit.dst_ip))
        mutual_peers = sorted(set(hit[hit.mutual].dst_ip))
        both = links[links.pair.isin(set(hit.pair))]
        flows = int(both.flows.sum())
        hours = int(hit.pair_hours.max())
        svc_rows = hit.groupby(["proto", "port"]).agg(f=("flows", "sum"), bp=("baseline_pairs", "max"))
        (proto, port), top = max(svc_rows.iterrows(), key=lambda kv: kv[1].f)
        svcs = [_svc(p, q) for p, q in svc_rows.index]
        today_pairs = int(links[(links.proto == proto) & (links.port == port)].pair.nunique())
        own = base_peers.get(host) if host in known_hosts else None
        why = []
        if mutual_peers:
            why.append(f"both ways with {len(mutual_peers)} of them")
        if fan_svcs:
            why.append(f"fanning out on {', '.join(sorted(_svc(*x) for x in fan_svcs))}")
        message = (f"talks directly to {len(peers)} internal host(s) it never talked to on the baseline day "
                   f"({_list(peers)}) on {', '.join(svcs)}: {flows} flows over {hours} h, {'; '.join(why)}; "
                   f"baseline: {'new host' if own is None else f'{own} internal peer(s)'}, "
                   f"{int(top.bp)} host pair(s) used {_svc(proto, port)} host-to-host "
                   f"(peers' 99th percentile: {peers_p99:.0f} internal peers)")
        evidence = [
            Evidence("new internal peers (non-server hosts, pair unseen on the baseline day)", "hosts",
                     observed=len(peers), baseline=own, reference=round(peers_p99, 1),
                     threshold=min_fan if fan_svcs and not mutual_peers else 1),
            Evidence("peers that also open connections back to the host (mutual links)", "hosts",
                     observed=len(mutual_peers), baseline=0),
            Evidence(f"host pairs using {_svc(proto, port)} host-to-host (an established peer service from "
                     f"{spec.t('peer_service_min_pairs')} pairs on the baseline day)", "host pairs",
                     observed=today_pairs, baseline=int(top.bp), threshold=spec.t("peer_service_min_pairs")),
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
            related=peers, example_port=_port(top_peer.port) if _port(top_peer.port) >= 0 else None,
            details={"services": svcs, "mutual_peers": mutual_peers,
                     "fanout_services": sorted(_svc(*x) for x in fan_svcs),
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
        n_rhythmic = int(g.rhythmic.sum())
        group_reg = float(g.gap_regularity.median())
        where = _where(ctx, dst)
        for r in g.itertuples():
            others = [m for m in members if m != r.src_ip]
            o = g[g.src_ip != r.src_ip]
            span_s = (r.last_ts - r.first_ts).total_seconds()
            verb = "beacons to" if r.rhythmic else "keeps connecting to"
            message = (f"{verb} {dst}{where}, a destination no host used on the baseline day, on "
                       f"{_svc(r.proto, r.port)} every ~{_dur(r.gap_med)} ({int(r.n)} connections over "
                       f"{int(r.active_hours)} h, beacon score {r.score:.2f}), like {len(others)} other internal "
                       f"host(s) ({_list(others)}; {n_rhythmic} of the {len(members)} on a regular rhythm, "
                       f"median gap ~{_dur(g.gap_med.median())}); baseline day: 0 flows to it from any host, "
                       f"today {int(r.dst_hosts)} of {active} active hosts use it")
            evidence = [
                Evidence("connections to the destination", "flows", observed=int(r.n), baseline=0,
                         threshold=spec.t("min_connections")),
                Evidence("internal hosts beaconing to the destination on a regular rhythm", "hosts",
                         observed=n_rhythmic, baseline=0, reference=len(members), threshold=spec.t("min_hosts")),
                Evidence("share of today's active internal hosts using the destination (prevalence)", "share",
                         observed=round(float(r.prevalence), 4), baseline=0.0, threshold=spec.t("max_prevalence")),
                Evidence("beacon score (RITA-style: timing, size, hourly histogram, duration)", "score",
                         observed=round(float(r.score), 3), reference=round(float(o.score.median()), 3),
                         threshold=spec.t("min_score")),
                Evidence("regularity of the gaps ((median - MAD) / median), the group's median as reference",
                         "score", observed=round(float(r.gap_regularity), 3), reference=round(group_reg, 3),
                         threshold=spec.t("min_group_regularity")),
                Evidence("median gap between connections", "seconds", observed=round(float(r.gap_med), 1),
                         reference=round(float(o.gap_med.median()), 1)),
                Evidence("hours with connections", "hours", observed=int(r.active_hours), baseline=0,
                         threshold=spec.t("min_active_hours")),
            ]
            score = (0.5 * _sat(max(r.score, group_reg), spec.t("min_score"), 1.0) + 0.25 * _sat(len(members), 1, 6)
                     + 0.25 * _sat(r.gap_regularity, spec.t("min_gap_regularity"), 1.0))
            alerts.append(Alert(
                rule=spec, source_ip=r.src_ip, message=message, evidence=evidence, score=score,
                destination_ip=dst, timestamp=r.first_ts, related=others,
                example_port=_port(r.port) if _port(r.port) >= 0 else None,
                details={"beacon": {k: round(float(getattr(r, k)), 3)
                                    for k in ("score", "timing", "size", "histogram", "duration", "gap_regularity")},
                         "rhythmic": bool(r.rhythmic),
                         "gap_median_seconds": round(float(r.gap_med), 1),
                         "bytes_up_median": round(float(r.size_med), 1),
                         "span_seconds": round(span_s, 1),
                         "hosts_using_destination_today": int(r.dst_hosts)},
            ))
    return alerts


# --- botnet.coordinated_group --------------------------------------------------------------------

@rule("botnet.coordinated_group")
def coordinated_group(ctx, spec) -> list[Alert]:
    """Connected components of the graph whose edges are (a) mutual new peer links, (b) beaconing
    to the same new, rare external destination, (c) polling the same new internal peer on a
    timer; every host that takes part actively (initiates) is alerted, the others in related."""
    links = _lasting(_new_peer_links(ctx, spec.t("peer_service_min_pairs")), spec)
    mutual = links[links.mutual] if len(links) else links
    th = {k: spec.t(k) for k in BEACON_KEYS}
    bs, ext_groups = _beacons(ctx, spec)
    rh = _internal_rhythm(ctx, spec, th)
    int_groups = {}
    if len(rh):
        max_hosts = max(spec.t("max_prevalence") * _active_hosts(ctx), spec.t("min_hosts"))
        rh = rh.copy()
        int_groups = {d: m for d, m in _group_verdict(rh, th).items()
                      if int(rh[rh.dst_ip == d].dst_hosts.iloc[0]) <= max_hosts}
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
    for members in list(ext_groups.values()) + list(int_groups.values()):
        for m in members:
            union(members[0], m)
    comps: dict = {}
    for x in list(parent):
        comps.setdefault(find(x), set()).add(x)
    alerts = []
    min_size = spec.t("min_group_size")
    for members in comps.values():
        if len(members) < min_size:
            continue
        members = sorted(members)
        mset = set(members)
        ml = mutual[mutual.src_ip.isin(mset)]
        dsts = {d: m for d, m in ext_groups.items() if mset & set(m)}
        hubs = {d: m for d, m in int_groups.items() if mset & set(m)}
        n_links = int(ml.pair.nunique()) if len(ml) else 0
        link_flows = int(ml.flows.sum()) if len(ml) else 0
        svcs = sorted({_svc(p, q) for p, q in zip(ml.proto, ml.port)})
        hub_rows = rh[rh.dst_ip.isin(list(hubs)) & rh.src_ip.isin(mset) & rh.member] if hubs else rh.iloc[:0]
        svcs_all = sorted(set(svcs) | {_svc(p, q) for p, q in zip(hub_rows.proto, hub_rows.port)})
        for host in members:
            hl = ml[(ml.src_ip == host) | (ml.dst_ip == host)]
            hb = bs[(bs.src_ip == host) & bs.dst_ip.isin(list(dsts)) & bs.member] if len(dsts) else bs.iloc[:0]
            hh = hub_rows[hub_rows.src_ip == host]
            others = [m for m in members if m != host]
            related = others + sorted(set(hubs) - mset)
            cues = []
            if len(hl):
                hs = sorted({_svc(p, q) for p, q in zip(hl.proto, hl.port)})
                cues.append(f"{hl.pair.nunique()} mutual new peer link(s) on {', '.join(hs)} "
                            f"({int(hl.flows.sum())} flows)")
            if len(hb):
                r0 = hb.sort_values("score").iloc[-1]
                cues.append(f"beacons to new destination {r0.dst_ip}{_where(ctx, r0.dst_ip)} every ~{_dur(r0.gap_med)} "
                            f"like {len(dsts[r0.dst_ip]) - 1} other member(s)")
            if len(hh):
                r0 = hh.sort_values("score").iloc[-1]
                cues.append(f"polls new internal peer {r0.dst_ip} on {_svc(r0.proto, r0.port)} "
                            f"every ~{_dur(r0.gap_med)} "
                            f"like {len(hubs[r0.dst_ip]) - 1} other member(s)")
            if not cues:
                continue  # only receives connections inside the group (e.g. the hub): listed, not alerted
            base = []
            if svcs:
                base.append("no link among them on " + ", ".join(svcs))
            if hubs:
                base.append("none of them talked to " + ", ".join(
                    f"{d} on {', '.join(sorted({_svc(p, q) for p, q in zip(g.proto, g.port)}))}"
                    for d, g in hub_rows.groupby("dst_ip")))
            if dsts:
                base.append("no host used " + ", ".join(sorted(dsts)))
            message = (f"member of a group of {len(members)} internal hosts acting together "
                       f"(with {_list(others)}): {'; '.join(cues)}; baseline day: {' and '.join(base)}")
            evidence = [
                Evidence("hosts in the group (new mutual links, a shared new beacon destination or internal peer)",
                         "hosts", observed=len(members), baseline=0, threshold=min_size),
                Evidence("mutual new peer links inside the group", "links", observed=n_links, baseline=0),
                Evidence("flows on the group's new peer links", "flows", observed=link_flows, baseline=0,
                         threshold=spec.t("min_link_flows")),
                Evidence("new external destinations the group beacons to", "destinations", observed=len(dsts),
                         baseline=0),
                Evidence("new internal peers the group polls on a timer", "hosts", observed=len(hubs), baseline=0),
            ]
            rhythm = [float(x) for x in list(hb.score) + list(hh.score)]
            if rhythm:
                evidence.append(Evidence("the host's beacon score to the shared destination (RITA-style)", "score",
                                         observed=round(max(rhythm), 3), threshold=spec.t("min_score")))
            score = (_sat(len(members), 1, 6) + min(1.0, 0.4 + 0.3 * len(cues))
                     + (max(rhythm) if rhythm else _sat(max(link_flows, 1), spec.t("min_link_flows"),
                                                         50 * spec.t("min_link_flows")))) / 3
            own = hl[hl.src_ip == host].sort_values("flows")
            if len(own):
                dst, port = str(own.iloc[-1].dst_ip), _port(own.iloc[-1].port)
            else:
                r0 = (hb if len(hb) else hh).iloc[0]
                dst = str(r0.dst_ip)
                port = _port(r0.port)
            ts = [t for t in (hl.first_ts.min() if len(hl) else None, hb.first_ts.min() if len(hb) else None,
                              hh.first_ts.min() if len(hh) else None) if t is not None and t == t]
            alerts.append(Alert(
                rule=spec, source_ip=host, message=message, evidence=evidence, score=min(1.0, score),
                destination_ip=dst, timestamp=min(ts) if ts else None, related=related,
                example_port=port if port is not None and port >= 0 else None,
                details={"group": members, "peer_services": svcs_all, "beacon_destinations": sorted(dsts),
                         "polled_internal_peers": sorted(hubs)},
            ))
    return alerts
