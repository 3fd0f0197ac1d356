"""botnet rules: internal hosts that start acting together (see rules.yaml).

A botnet shows in flow records as *new relationships*, judged against the baseline day:

  * bots that talk to each other directly (peer-to-peer C2, internal proxies and relays), between
    hosts that are not servers, and
  * bots that take up the same NEW external destination with the same machine-like rhythm.

The channel decides the family: DNS (port 53) is the cnc family's (C&C over DNS) even when
several hosts share it; botnet is east-west links and shared non-DNS channels.

Rules
  botnet.new_internal_peers  new host-to-host links (pair unseen on the baseline day on that
                             service) on a (proto, port) the baseline did not use host-to-host nor
                             for broadcast/multicast discovery, lasting, plus one more cue: a
                             peer-to-peer overlay (mutual links, or a ring or chain of hosts that
                             both open and receive new links) or a fan-out to several new peers (a
                             fan-out on one shared timer is a monitoring poller: a notice).
  botnet.coordinated_group   connected components of hosts linked by a peer-to-peer overlay, by
                             beaconing to the same new, rare external destination, or by polling
                             the same new internal peer on a timer (on any service: a timer is
                             evidence even on a port colleagues share files on). Every member is
                             alerted, the polled hub too: it is the group's relay.
  botnet.common_beacon       >= min_hosts internal hosts beacon to one external destination that
                             no host used on the baseline day and few hosts use today.

What is learned, not fixed: which (proto, port) hosts use host-to-host (baseline edges), which
hosts are servers (the profile), which external destinations exist (baseline edges), how many
hosts are active today (prevalence denominator). Heavy work is Ibis over ctx.edges and the
baseline edges, and beacon statistics on candidate pairs only; Python scores the small results.
"""

from __future__ import annotations

import math

from ..alerts import Alert, Evidence
from ..fmt import fmt_duration, fmt_list, fmt_service
from ..network import INTERNAL_EXTERNAL, INTERNAL_INTERNAL, addresses
from . import rule
from .beacon import beacon_score, beacon_stats, rhythm_p
from .common import (DNS_PORT, active_hosts, company_service_users, engine_table, familiarity, mean, overlap_tail,
                     past, past_share, row_mask, unicast, where)
from .dns import resolved_share

BEACON_KEYS = ("min_hosts", "max_prevalence", "min_connections", "min_active_hours", "min_score",
               "min_gap_regularity", "min_group_regularity", "min_gap_iqr_seconds", "min_size_iqr_bytes")
LINK_KEYS = ("peer_service_min_pairs", "min_link_flows", "min_link_hours")


def _port(q) -> int:
    """A port as int (-1 when the record has none, e.g. some ICMP exports)."""
    try:
        return int(q)
    except (TypeError, ValueError):
        return -1


def _not_dns(t):
    """Not DNS (a record without a port, e.g. ICMP, is not DNS either): DNS is the cnc family's."""
    return (t.port != DNS_PORT).fill_null(True)


# --- what the baseline says about host-to-host services --------------------------------------------

def peer_services(ctx, min_pairs: int):
    """(pairs, established): pairs maps (proto, port) to the number of distinct unordered pairs of
    non-server unicast hosts that used it host-to-host on the baseline day; established holds the
    (proto, port) used so by >= min_pairs pairs, plus those the baseline sent to multicast or
    broadcast addresses (local discovery protocols, whose unicast replies are chatter)."""
    def build():
        import ibis

        b = ctx.base("edges")
        if b is None:
            return {}, set()
        b = b.filter((b.traffic_class == INTERNAL_INTERNAL) & (b.src_ip != b.dst_ip))
        ips = addresses(b)
        groupcast = sorted(set(ips) - unicast(ctx, ips))  # multicast, broadcast, 0.0.0.0 (few)
        discovery = set()
        if groupcast:
            d = b.filter(b.dst_ip.isin(groupcast) & ~b.src_ip.isin(groupcast)).select("proto", "port").distinct()
            discovery = {(p, _port(q)) for p, q in d.to_pandas().itertuples(index=False)}
            b = b.filter(~b.src_ip.isin(groupcast) & ~b.dst_ip.isin(groupcast))
        if ctx.server_ips:
            srv = sorted(ctx.server_ips)
            b = b.filter(~b.src_ip.isin(srv) & ~b.dst_ip.isin(srv))
        b = b.mutate(pair=ibis.least(b.src_ip, b.dst_ip).concat("|", ibis.greatest(b.src_ip, b.dst_ip)))
        per = b.group_by("proto", "port").aggregate(pairs=b.pair.nunique()).to_pandas()
        pairs = {(p, _port(q)): int(n) for p, q, n in per.itertuples(index=False)}
        return pairs, {k for k, n in pairs.items() if n >= min_pairs} | discovery
    return ctx.cached(("botnet.peer_services", min_pairs), build)


def new_links(ctx, min_pairs: int):
    """The test day's new host-to-host links (pandas, one row per directed edge): internal ->
    internal, both ends unicast and not internal servers, not DNS, for a host pair that did not
    use that (proto, port) in either direction on the baseline day. `established` marks links on
    an established peer service; `mutual` that the peer also opens new links to the host on a
    service that is not established; pair_flows / pair_hours sum both directions."""
    def build():
        import pandas as pd

        pair_counts, established = peer_services(ctx, min_pairs)
        e = ctx.edges
        t = e.filter((e.traffic_class == INTERNAL_INTERNAL) & (e.src_ip != e.dst_ip) & _not_dns(e))
        if ctx.server_ips:
            srv = sorted(ctx.server_ips)
            t = t.filter(~t.src_ip.isin(srv) & ~t.dst_ip.isin(srv))
        b = ctx.base("edges")
        if b is not None:
            b = b.filter(b.traffic_class == INTERNAL_INTERNAL)
            known = b.select("src_ip", "dst_ip", "proto", "port").union(
                b.select(src_ip=b.dst_ip, dst_ip=b.src_ip, proto=b.proto, port=b.port)).distinct()
            t = t.anti_join(known, ["src_ip", "dst_ip", "proto", "port"])
        # in a fixed order: the engine returns groups in any order, and ties (the link shown first,
        # the order of the listed links) must not change from one run to the next
        df = t.select("src_ip", "dst_ip", "proto", "port", "flows", "up_bytes", "down_bytes",
                      "first_ts", "last_ts", "hours").to_pandas().sort_values(["src_ip", "dst_ip", "proto", "port"])
        uni = unicast(ctx, set(df.src_ip) | set(df.dst_ip))
        df = df[df.src_ip.isin(uni) & df.dst_ip.isin(uni)].reset_index(drop=True)
        df["established"] = row_mask(df, ((p, _port(q)) in established for p, q in zip(df.proto, df.port)))
        df["baseline_pairs"] = [pair_counts.get((p, _port(q)), 0) for p, q in zip(df.proto, df.port)]
        fresh = set(zip(df.src_ip[~df.established], df.dst_ip[~df.established]))
        df["mutual"] = row_mask(df, (not est and (d, s) in fresh for s, d, est in zip(df.src_ip, df.dst_ip, df.established)))
        lo, hi = df[["src_ip", "dst_ip"]].min(axis=1), df[["src_ip", "dst_ip"]].max(axis=1)
        df["pair"] = (lo + "|" + hi) if len(df) else pd.Series(dtype=object)
        g = df.groupby(["pair", "established"])
        df["pair_flows"] = g.flows.transform("sum")
        df["pair_hours"] = g.hours.transform("max")
        return df
    return ctx.cached(("botnet.new_links", min_pairs), build)


def lasting(links, spec):
    """Links whose host pair has enough flows (both directions) over enough hours."""
    return links[(links.pair_flows >= spec.t("min_link_flows")) & (links.pair_hours >= spec.t("min_link_hours"))]


def p2p_links(links, min_relays: int):
    """The links (new, on a service that is not established) that belong to a peer-to-peer
    overlay: on one (proto, port), a connected component of new links holding at least
    min_relays hosts that both open and receive new links. A mutual pair is the smallest overlay;
    a ring or chain of bots is one too. A new shared service is a star: only its hub receives."""
    import numpy as np

    keep = np.zeros(len(links), bool)
    links = links.reset_index(drop=True)
    for _, g in links[~links.established].groupby(["proto", "port"]):
        relays = set(g.src_ip) & set(g.dst_ip)
        if len(relays) < min_relays:
            continue
        for comp in _components(g, {}):
            if len(relays & set(comp)) >= min_relays:
                keep[g.index[g.src_ip.isin(comp).to_numpy()]] = True
    return links[keep]


def baseline_internal_peers(ctx):
    """(host -> its baseline count of internal peers, the population's 99th percentile, hosts)."""
    def build():
        h = ctx.base_df("hosts")
        if h is None or "internal_peers" not in h:
            return {}, 0.0, set()
        v = h.internal_peers.fillna(0)
        return dict(zip(h.ip, v.astype(int))), float(v.quantile(0.99)) if len(v) else 0.0, set(h.ip)
    return ctx.cached(("botnet.baseline_internal_peers",), build)


# --- rhythms -----------------------------------------------------------------------------------------

def score_pairs(ctx, cdf, th):
    """Beacon statistics (in the engine, for these pairs only) and RITA-style scores of candidate
    (src_ip, dst_ip) pairs; adds score, its sub-scores and gap_regularity ((median - MAD) / median
    of the gaps, RITA's dispersion term)."""
    bs = beacon_stats(ctx.flows, engine_table(ctx, cdf, ["src_ip", "dst_ip"]), ctx.engine)
    bs = bs.merge(cdf, on=["src_ip", "dst_ip"])
    day = ctx.span[2]
    scores = [beacon_score(r, day, th["min_gap_iqr_seconds"], th["min_size_iqr_bytes"]) for r in bs.itertuples()]
    for k in ("score", "timing", "size", "histogram", "duration"):
        bs[k] = [s[k] for s in scores]
    bs["gap_regularity"] = [max(0.0, min(1.0, (m - d) / m)) if m and m > 0 else 0.0
                            for m, d in zip(bs.gap_med.astype(float), bs.gap_mad.astype(float))]
    return bs


def group_verdict(bs, th) -> dict:
    """Per destination, the group test: at least min_hosts of its candidate pairs are rhythmic
    (score >= min_score and gap regularity >= min_gap_regularity), and the median gap regularity
    of ALL its candidate pairs (no selection bias) >= min_group_regularity. A destination that
    passes is shared: every host with a candidate pair to it is a member. Sets bs.rhythmic and
    bs.member; returns {destination: sorted members}."""
    bs["rhythmic"] = (bs.score >= th["min_score"]) & (bs.gap_regularity >= th["min_gap_regularity"])
    groups = {}
    for dst, g in bs.groupby("dst_ip"):
        if int(g.rhythmic.sum()) >= th["min_hosts"] and float(g.gap_regularity.median()) >= th["min_group_regularity"]:
            groups[dst] = sorted(g.src_ip)
    bs["member"] = [d in groups for d in bs.dst_ip]
    return groups


def _empty_pairs():
    import pandas as pd

    return pd.DataFrame(columns=["src_ip", "dst_ip", "proto", "port", "n", "score", "gap_regularity", "gap_med",
                                 "dst_hosts", "prevalence", "rhythmic", "member", "first_ts"])


def external_beacons(ctx, spec):
    """(pairs, groups): host -> NEW, RARE external destination pairs with enough connections over
    enough hours (not DNS), their beacon scores, and {destination: members} for the destinations
    that pass the group test. Cached by the thresholds, so rules sharing them share the work."""
    th = {k: spec.t(k) for k in BEACON_KEYS}

    def build():
        e = ctx.edges
        ie = e.filter((e.traffic_class == INTERNAL_EXTERNAL) & _not_dns(e))
        b = ctx.base("edges")
        if b is not None:
            ie = ie.anti_join(b.filter(b.traffic_class == INTERNAL_EXTERNAL).select("dst_ip").distinct(), "dst_ip")
        # per pair over all its ports (a beacon may hop ports; the rhythm is the pair's)
        pair = ie.group_by("src_ip", "dst_ip").aggregate(flows=ie.flows.sum())
        per_dst = pair.group_by("dst_ip").aggregate(dst_hosts=pair.src_ip.nunique())
        max_hosts = max(th["max_prevalence"] * active_hosts(ctx), th["min_hosts"])
        per_dst = per_dst.filter((per_dst.dst_hosts >= th["min_hosts"]) & (per_dst.dst_hosts <= max_hosts))
        eh = ctx.edge_hours
        eh = eh.filter((eh.traffic_class == INTERNAL_EXTERNAL) & _not_dns(eh))
        hrs = eh.group_by("src_ip", "dst_ip").aggregate(active_hours=eh.hour.nunique())
        cand = pair.join(per_dst, "dst_ip").join(hrs, ["src_ip", "dst_ip"])
        cand = cand.filter((cand.flows >= th["min_connections"]) & (cand.active_hours >= th["min_active_hours"]))
        ports = ie.join(cand.select("src_ip", "dst_ip"), ["src_ip", "dst_ip"]).select(
            "src_ip", "dst_ip", "proto", "port", "flows").to_pandas()
        cdf = cand.to_pandas()
        cdf = cdf[cdf.src_ip.isin(unicast(ctx, set(cdf.src_ip)))]
        ok_dst = cdf.groupby("dst_ip").src_ip.nunique()  # only these go on to the (costlier) statistics
        cdf = cdf[cdf.dst_ip.isin(ok_dst[ok_dst >= th["min_hosts"]].index)]
        if not len(cdf):
            return _empty_pairs(), {}
        bs = score_pairs(ctx, cdf[["src_ip", "dst_ip", "flows", "dst_hosts", "active_hours"]], th)
        top = ports.sort_values(["flows", "port"], ascending=[False, True]).drop_duplicates(["src_ip", "dst_ip"])
        bs = bs.merge(top[["src_ip", "dst_ip", "proto", "port"]], on=["src_ip", "dst_ip"], how="left")
        bs["prevalence"] = bs.dst_hosts / active_hosts(ctx)
        return bs, group_verdict(bs, th)
    return ctx.cached(("botnet.external_beacons", tuple(sorted(th.items()))), build)


def internal_hubs(ctx, spec):
    """(pairs, hubs): lasting new host-to-host links polled often enough over enough hours, with
    their beacon scores, and {hub: pollers} for the internal peers that several hosts poll on a
    shared timer (a relay). Links on established peer services count here: a timer is evidence
    whatever the port (colleagues share files by hand, not every 20 minutes)."""
    th = {k: spec.t(k) for k in BEACON_KEYS}
    lk = {k: spec.t(k) for k in LINK_KEYS}

    fanout = spec.num("min_fanout_peers")

    def build():
        links = lasting(new_links(ctx, lk["peer_service_min_pairs"]), spec)
        # a host polling many new peers on one service is a monitoring or management poller, not a
        # member polling the group's relay
        spread = links.groupby(["src_ip", "proto", "port"]).dst_ip.transform("nunique")
        links = links[spread < fanout]
        top = links.sort_values(["flows", "port"], ascending=[False, True]).drop_duplicates(["src_ip", "dst_ip"])
        pairs = links.groupby(["src_ip", "dst_ip"], as_index=False).agg(flows=("flows", "sum"),
                                                                         active_hours=("hours", "max"))
        pairs["dst_hosts"] = pairs.dst_ip.map(links.groupby("dst_ip").src_ip.nunique()).fillna(1).astype(int)
        pairs = pairs.merge(top[["src_ip", "dst_ip", "proto", "port"]], on=["src_ip", "dst_ip"])
        max_hosts = max(th["max_prevalence"] * active_hosts(ctx), th["min_hosts"])
        pairs = pairs[(pairs.dst_hosts >= th["min_hosts"]) & (pairs.dst_hosts <= max_hosts)]
        if not ((pairs.flows >= th["min_connections"]) & (pairs.active_hours >= th["min_active_hours"])).any():
            return _empty_pairs(), {}
        # every pair polling a candidate hub in one pass over the flows; those long enough prove a group
        scored = score_pairs(ctx, pairs[["src_ip", "dst_ip", "flows", "dst_hosts", "active_hours"]], th)
        scored = scored.merge(pairs[["src_ip", "dst_ip", "proto", "port"]], on=["src_ip", "dst_ip"])
        scored["prevalence"] = scored.dst_hosts / active_hosts(ctx)
        long = (scored.flows >= th["min_connections"]) & (scored.active_hours >= th["min_active_hours"])
        bs = scored[long].reset_index(drop=True)
        hubs = group_verdict(bs, th)
        return _late_pollers(spec, scored[~long], bs, hubs)
    return ctx.cached(("botnet.internal_hubs", tuple(sorted(th.items())), tuple(sorted(lk.items())), fanout), build)


def _late_pollers(spec, short, bs, hubs):
    """Add to each proven relay the hosts (of `short`: pairs with too few hours to prove a rhythm
    on their own, a machine switched off early) that poll it on the group's service with gaps too
    regular for chance (join_alpha): joining a channel others have proven needs less than proving
    it. -> (bs, hubs)"""
    import pandas as pd

    services = bs.loc[bs.member, ["dst_ip", "proto", "port"]].drop_duplicates()
    late = short.merge(services, on=["dst_ip", "proto", "port"])
    late = late[[rhythm_p(r) <= spec.num("join_alpha") for r in late.itertuples()]]
    if not len(late):
        return bs, hubs
    late = late.assign(rhythmic=False, member=True)
    for d, m in late.groupby("dst_ip").src_ip:
        hubs[d] = sorted(hubs[d] + list(m))
    return pd.concat([bs, late], ignore_index=True), hubs


# --- botnet.new_internal_peers -----------------------------------------------------------------------

@rule("botnet.new_internal_peers")
def new_internal_peers(ctx, spec) -> list[Alert]:
    links = lasting(new_links(ctx, spec.t("peer_service_min_pairs")), spec)
    links = links[~links.established].reset_index(drop=True)
    overlay = set(p2p_links(links, int(spec.num("min_relays"))).pair)
    links["overlay"] = links.pair.isin(overlay)
    found = []
    for host, g in links.groupby("src_ip"):
        fan = g.groupby(["proto", "port"]).dst_ip.nunique()
        fan_svcs = {k for k, n in fan.items() if n >= spec.t("min_fanout_peers")}
        on_fan = [(p, q) in fan_svcs for p, q in zip(g.proto, g.port)]
        hit = g[g.overlay.to_numpy(dtype=bool) | on_fan]
        if len(hit):
            found.append((host, hit, fan_svcs, g[on_fan]))
    pollers = _fanout_pollers(ctx, spec, [fan for *_, fan in found])
    return [_explain_peers(ctx, spec, host, hit, links, fan_svcs, pollers.get(host))
            for host, hit, fan_svcs, _ in found]


def _fanout_pollers(ctx, spec, fans) -> dict:
    """host -> its fan-out's timer when its links poll on one shared timer (median gap regularity
    of its links at least poller_regularity): a monitoring or management system, not a spreading
    host. The links of every host scored in one engine query."""
    import pandas as pd

    fans = [f for f in fans if len(f)]
    if not fans:
        return {}
    th = {"min_gap_iqr_seconds": spec.num("min_gap_iqr_seconds"), "min_size_iqr_bytes": spec.num("min_size_iqr_bytes")}
    bs = score_pairs(ctx, pd.concat(fans).groupby(["src_ip", "dst_ip"], as_index=False).flows.sum(), th)
    out = {}
    for host, g in bs.groupby("src_ip"):
        reg = float(g.gap_regularity.median())
        if reg >= spec.num("poller_regularity"):
            out[host] = {"regularity": reg, "gap": float(g.gap_med.median())}
    return out


def _explain_peers(ctx, spec, host, hit, links, fan_svcs, poller) -> Alert:
    base_peers, peers_p99, known_hosts = baseline_internal_peers(ctx)
    peers = sorted(set(hit.dst_ip))
    mutual_peers = sorted(set(hit[hit.mutual].dst_ip))
    overlay_peers = sorted(set(hit[hit.overlay].dst_ip))
    flows = int(links[links.pair.isin(set(hit.pair))].flows.sum())
    hours = int(hit.pair_hours.max())
    svc_rows = hit.groupby(["proto", "port"]).agg(f=("flows", "sum"), bp=("baseline_pairs", "max"))
    (proto, port), top = max(svc_rows.iterrows(), key=lambda kv: kv[1].f)
    svcs = [fmt_service(p, q) for p, q in svc_rows.index]
    today_pairs = int(links[(links.proto == proto) & (links.port == port)].pair.nunique())
    own = base_peers.get(host) if host in known_hosts else None
    why = ([f"both ways with {len(mutual_peers)} of them"] if mutual_peers else []) + \
          ([f"relaying: its peers on the same service also open links to others ({len(overlay_peers)} peer(s) "
            f"in a peer-to-peer overlay)"] if set(overlay_peers) - set(mutual_peers) else []) + \
          ([f"fanning out on {', '.join(sorted(fmt_service(*x) for x in fan_svcs))}"] if fan_svcs else [])
    notice = poller is not None and not overlay_peers
    if notice:
        why.append(f"polling them on one timer (every ~{fmt_duration(poller['gap'])}, gap regularity "
                   f"{poller['regularity']:.2f}): a monitoring or management system looks like this")
    message = (f"talks directly to {len(peers)} internal host(s) it never talked to on the baseline day "
               f"({fmt_list(peers)}) on {', '.join(svcs)}: {flows} flows over {hours} h, {'; '.join(why)}; "
               f"baseline: {'new host' if own is None else f'{own} internal peer(s)'}, "
               f"{int(top.bp)} host pair(s) used {fmt_service(proto, port)} host-to-host "
               f"(peers' 99th percentile: {peers_p99:.0f} internal peers)")
    evidence = [
        Evidence("new internal peers (non-server hosts, pair unseen on the baseline day)", "hosts",
                 observed=len(peers), baseline=own, reference=round(peers_p99, 1),
                 threshold=spec.t("min_fanout_peers") if fan_svcs and not mutual_peers else 1),
        Evidence("peers that also open connections back to the host (mutual links)", "hosts",
                 observed=len(mutual_peers), baseline=0),
        Evidence("peers in a peer-to-peer overlay with the host (hosts that open and receive new links)", "hosts",
                 observed=len(overlay_peers), baseline=0, threshold=spec.num("min_relays")),
        Evidence(f"host pairs using {fmt_service(proto, port)} host-to-host (an established peer service from "
                 f"{spec.t('peer_service_min_pairs')} pairs on the baseline day)", "host pairs",
                 observed=today_pairs, baseline=int(top.bp), threshold=spec.t("peer_service_min_pairs")),
        Evidence("flows on the new peer links (both directions)", "flows", observed=flows, baseline=0,
                 threshold=spec.t("min_link_flows")),
        Evidence("hours with traffic on the new peer links", "hours", observed=hours, baseline=0,
                 threshold=spec.t("min_link_hours")),
    ]
    if poller is not None:
        evidence.append(Evidence("regularity of the fan-out's gaps (median over its links; a shared timer is a poller)",
                                 "score", observed=round(poller["regularity"], 3), threshold=spec.num("poller_regularity")))
    score = mean(past(len(peers), 1), past(flows, spec.t("min_link_flows")), past(hours, spec.t("min_link_hours")),
                 float(bool(overlay_peers and fan_svcs)))
    top_peer = hit.sort_values("flows", ascending=False).iloc[0]
    return Alert(
        rule=spec, source_ip=host, message=message, evidence=evidence, score=score, severity="low" if notice else None,
        destination_ip=str(top_peer.dst_ip), timestamp=hit.first_ts.min(), related=peers,
        example_port=_port(top_peer.port) if _port(top_peer.port) >= 0 else None,
        details={"services": svcs, "mutual_peers": mutual_peers, "overlay_peers": overlay_peers,
                 "poller": poller is not None,
                 "fanout_services": sorted(fmt_service(*x) for x in fan_svcs),
                 "links": [{"dst_ip": r.dst_ip, "service": fmt_service(r.proto, r.port), "flows": int(r.flows),
                            "hours": int(r.hours), "mutual": bool(r.mutual)} for r in hit.itertuples()][:20]},
    )


# --- botnet.common_beacon ----------------------------------------------------------------------------

@rule("botnet.common_beacon")
def common_beacon(ctx, spec) -> list[Alert]:
    bs, groups = external_beacons(ctx, spec)
    alerts = []
    for dst, members in groups.items():
        g = bs[(bs.dst_ip == dst) & bs.member]
        alerts.extend(_explain_beacon(ctx, spec, dst, members, g, r) for r in g.itertuples())
    return alerts


def deployed_software(ctx, spec, dst, members, proto, port) -> dict:
    """Is a shared beacon to new address `dst` software the network runs? Either its company is
    one many hosts reach daily on this very service (familiar_host_share: software talks to its
    vendor on the vendor's service, so a port nobody used with that company is not the vendor's
    agent, however popular the company's websites), or the beaconing hosts are, beyond chance
    (routine_alpha) and mostly (routine_share), the hosts that reached that company on the same
    service on the baseline day: the same routine answering from a new address."""
    org, org_share = familiarity(ctx, dst)
    users, hosts = company_service_users(ctx, org, proto, port) if org else (frozenset(), 0)
    share = len(users) / hosts if hosts else 0.0
    k = len(set(members) & users)
    p = overlap_tail(k, len(members), len(users), hosts)
    routine = k >= spec.num("routine_share") * len(members) and p <= spec.num("routine_alpha")
    # Software finds its vendor's servers by name (cloud addresses rotate): no lookup before the
    # check-ins means an address written into the program, which deployed software does not do.
    resolved = _resolved_share(ctx, spec, dst, members)
    hard_coded = resolved is not None and resolved < spec.num("resolved_share")
    vendor = share >= spec.num("familiar_host_share") or routine
    return {"org": org, "share": share, "org_share": org_share, "routine_hosts": k, "company_users": len(users),
            "hosts": hosts, "p": p, "routine": routine, "resolved": resolved, "hard_coded": vendor and hard_coded,
            "familiar": vendor and not hard_coded}


def _resolved_share(ctx, spec, dst, members) -> float | None:
    """dns.resolved_share of the members' check-ins with `dst`, computed once for every shared
    beacon destination."""
    _, groups = external_beacons(ctx, spec)
    pairs = [(m, d) for d, ms in groups.items() for m in ms]
    return resolved_share(ctx, pairs, members, [dst], spec.num("resolve_window_s"))


def _deployed_words(d, proto, port, n) -> str:
    if d["hard_coded"]:
        return (f"; {d['org']} is a company the network uses, but {d['resolved']:.0%} of these check-ins follow a "
                f"DNS lookup: deployed software finds its servers by name, this polls an address written into it")
    if d["routine"]:
        return (f"; {d['routine_hosts']} of these {n} hosts already reached {d['org']} on "
                f"{fmt_service(proto, port)} on the baseline day (of {d['company_users']} of {d['hosts']} hosts, "
                f"chance {d['p']:.1g}): the same software answering from a new address")
    if d["familiar"]:
        return (f"; {d['org']} is a company {d['share']:.0%} of the hosts reach on {fmt_service(proto, port)} daily: "
                f"new software deployed on several machines (an agent, an updater) polls like this")
    return ""


def _explain_beacon(ctx, spec, dst, members, g, r) -> Alert:
    dep = deployed_software(ctx, spec, dst, members, r.proto, r.port)
    org, share, familiar = dep["org"], dep["share"], dep["familiar"]
    n_rhythmic = int(g.rhythmic.sum())
    group_reg = float(g.gap_regularity.median())
    others = [m for m in members if m != r.src_ip]
    o = g[g.src_ip != r.src_ip]
    verb = "beacons to" if r.rhythmic else "keeps connecting to"
    message = (f"{verb} {dst}{where(ctx, dst)}, a destination no host used on the baseline day, on "
               f"{fmt_service(r.proto, r.port)} every ~{fmt_duration(r.gap_med)} ({int(r.n)} connections over "
               f"{int(r.active_hours)} h, beacon score {r.score:.2f}), like {len(others)} other internal "
               f"host(s) ({fmt_list(others)}; {n_rhythmic} of the {len(members)} on a regular rhythm, "
               f"median gap ~{fmt_duration(g.gap_med.median())}); baseline day: 0 flows to it from any host, "
               f"today {int(r.dst_hosts)} of {active_hosts(ctx)} active hosts use it"
               + _deployed_words(dep, r.proto, r.port, len(members)))
    evidence = [
        Evidence("share of the internal hosts that reached the destination's company on the same service on the "
                 "baseline day",
                 "share", observed=round(share, 4), threshold=spec.num("familiar_host_share")),
        Evidence("beaconing hosts that reached the destination's company on the same service on the baseline day",
                 "hosts", observed=dep["routine_hosts"], reference=len(members),
                 threshold=math.ceil(spec.num("routine_share") * len(members))),
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
    if dep["resolved"] is not None:
        evidence.append(Evidence("share of the group's connections to it that a DNS lookup precedes, beyond chance "
                                 "(software resolves its vendor's names)", "share",
                                 observed=round(dep["resolved"], 3), threshold=spec.num("resolved_share")))
    score = mean(past_share(max(r.score, group_reg), spec.t("min_score")), past(len(members), spec.t("min_hosts")),
                 past_share(r.gap_regularity, spec.t("min_gap_regularity")))
    return Alert(
        rule=spec, source_ip=r.src_ip, message=message, evidence=evidence, score=score,
        severity="low" if familiar else None, destination_ip=dst, timestamp=r.first_ts, related=others,
        example_port=_port(r.port) if _port(r.port) >= 0 else None,
        details={"beacon": {k: round(float(getattr(r, k)), 3)
                            for k in ("score", "timing", "size", "histogram", "duration", "gap_regularity")},
                 "rhythmic": bool(r.rhythmic), "gap_median_seconds": round(float(r.gap_med), 1),
                 "bytes_up_median": round(float(r.size_med), 1),
                 "span_seconds": round((r.last_ts - r.first_ts).total_seconds(), 1),
                 "hosts_using_destination_today": int(r.dst_hosts), "organisation": org,
                 "organisation_host_share": round(dep["org_share"], 4), "service_host_share": round(share, 4),
                 "known_routine": dep["routine"],
                 "known_routine_chance": dep["p"], "resolved_share": dep["resolved"]},
    )


# --- botnet.coordinated_group ------------------------------------------------------------------------

@rule("botnet.coordinated_group")
def coordinated_group(ctx, spec) -> list[Alert]:
    """Connected components of the graph whose edges are new peer links of a peer-to-peer overlay,
    beaconing to the same new, rare external destination, and polling the same new internal peer
    on a timer. Every member is alerted with its own part; a polled hub as the relay."""
    links = lasting(new_links(ctx, spec.t("peer_service_min_pairs")), spec)
    overlay = p2p_links(links, int(spec.num("min_relays")))
    bs, ext_groups = external_beacons(ctx, spec)
    rh, hub_groups = internal_hubs(ctx, spec)
    alerts = []
    for members in _components(overlay, {**ext_groups, **{h: m + [h] for h, m in hub_groups.items()}}):
        if len(members) < spec.t("min_group_size"):
            continue
        mset = set(members)
        group = {"members": members, "overlay": overlay[overlay.src_ip.isin(mset)],
                 "dsts": {d: m for d, m in ext_groups.items() if mset & set(m)},
                 "hubs": {d: m for d, m in hub_groups.items() if d in mset}}
        group["hub_rows"] = rh[rh.dst_ip.isin(list(group["hubs"])) & rh.src_ip.isin(mset) & rh.member]
        # A quarter of the network acting together today is a change of the network (an agent
        # rolled out, a new monitoring system), as a destination that popular is not a C2.
        group["share"] = len(members) / active_hosts(ctx)
        group["network_wide"] = group["share"] >= spec.num("max_group_share")
        for host in members:
            m = _member_part(ctx, spec, host, group, bs)
            if m is not None:
                alerts.append(_explain_member(ctx, spec, host, group, m))
    return alerts


def _components(links, shared: dict) -> list[list[str]]:
    """Connected components (union-find) of links (undirected) and of each shared destination's members."""
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

    for a, b in zip(links.src_ip, links.dst_ip):
        union(a, b)
    for members in shared.values():
        for m in members:
            union(members[0], m)
    comps: dict = {}
    for x in list(parent):
        comps.setdefault(find(x), set()).add(x)
    return [sorted(c) for c in comps.values()]


def _member_part(ctx, spec, host, group, bs) -> dict | None:
    """What `host` itself does in its group: its overlay links, its beacons to the shared
    destinations, its polls of the group's relay, or being the relay; the cues in words, and
    whether its only cue is a shared timer to a company most of the network uses (a notice)."""
    ml, dsts, hubs, hub_rows = (group[k] for k in ("overlay", "dsts", "hubs", "hub_rows"))
    m = {"links": ml[(ml.src_ip == host) | (ml.dst_ip == host)],
         "beacons": bs[(bs.src_ip == host) & bs.dst_ip.isin(list(dsts)) & bs.member] if dsts else bs.iloc[:0],
         "polls": hub_rows[hub_rows.src_ip == host], "polled": hub_rows[hub_rows.dst_ip == host], "cues": []}
    hl, hb, hh, polled = m["links"], m["beacons"], m["polls"], m["polled"]
    if len(hl):
        m["cues"].append(f"{hl.pair.nunique()} new peer link(s) in a peer-to-peer overlay on "
                         f"{', '.join(sorted({fmt_service(p, q) for p, q in zip(hl.proto, hl.port)}))} "
                         f"({int(hl.flows.sum())} flows)")
    if len(hb):
        r0 = hb.sort_values("score").iloc[-1]
        m["cues"].append(f"beacons to new destination {r0.dst_ip}{where(ctx, r0.dst_ip)} every "
                         f"~{fmt_duration(r0.gap_med)} like {len(dsts[r0.dst_ip]) - 1} other member(s)")
    if len(hh):
        r0 = hh.sort_values("score").iloc[-1]
        m["cues"].append(f"polls new internal peer {r0.dst_ip} on {fmt_service(r0.proto, r0.port)} every "
                         f"~{fmt_duration(r0.gap_med)} like {len(hubs[r0.dst_ip]) - 1} other member(s)")
    if len(polled):
        m["cues"].append(f"is polled on a timer by {polled.src_ip.nunique()} internal host(s) it never talked to on "
                         f"{', '.join(sorted({fmt_service(p, q) for p, q in zip(polled.proto, polled.port)}))} "
                         f"(every ~{fmt_duration(polled.gap_med.median())}): the group's relay")
    if not m["cues"]:
        return None
    deps = [(deployed_software(ctx, spec, r.dst_ip, dsts[r.dst_ip], r.proto, r.port), r) for r in hb.itertuples()]
    m["familiar"] = not len(hl) and not len(hh) and not len(polled) and all(d["familiar"] for d, _ in deps)
    shown = next(((d, r) for d, r in deps if d["familiar"] or d["hard_coded"]), None)
    if shown is not None and (m["familiar"] or shown[0]["hard_coded"]):
        d, r = shown
        m["cues"].append(_deployed_words(d, r.proto, r.port, len(dsts[r.dst_ip])).lstrip("; "))
    m["rhythm"] = [float(x) for x in list(hb.score) + list(hh.score) + list(polled.score)]
    return m


def _explain_member(ctx, spec, host, group, m) -> Alert:
    members, ml, dsts, hubs, hub_rows = (group[k] for k in ("members", "overlay", "dsts", "hubs", "hub_rows"))
    hl, hb, hh, polled, cues, rhythm = (m[k] for k in ("links", "beacons", "polls", "polled", "cues", "rhythm"))
    others = [x for x in members if x != host]
    base = []
    svcs = sorted({fmt_service(p, q) for p, q in zip(ml.proto, ml.port)})
    if svcs:
        base.append("no link among them on " + ", ".join(svcs))
    if hubs:
        base.append("none of them talked to " + ", ".join(
            f"{d} on {', '.join(sorted({fmt_service(p, q) for p, q in zip(g.proto, g.port)}))}"
            for d, g in hub_rows.groupby("dst_ip")))
    if dsts:
        base.append("no host used " + ", ".join(sorted(dsts)))
    message = (f"member of a group of {len(members)} internal hosts acting together "
               f"(with {fmt_list(others)}): {'; '.join(cues)}; baseline day: {' and '.join(base)}")
    # ... unless the host is itself the relay several members poll on a timer: its own evidence
    rollout = group["network_wide"] and not len(polled)
    if rollout:
        message += (f"; {group['share']:.0%} of today's active hosts acting together is a change of the network "
                    f"(an agent rolled out, a new monitoring system), not a botnet")
    link_flows = int(ml.flows.sum())
    evidence = [
        Evidence("hosts in the group (new mutual links, a shared new beacon destination or internal peer)",
                 "hosts", observed=len(members), baseline=0, threshold=spec.t("min_group_size")),
        Evidence("share of today's active internal hosts in the group (a change of the network at or above)",
                 "share", observed=round(group["share"], 4), threshold=spec.num("max_group_share")),
        Evidence("new peer links inside the group (a peer-to-peer overlay: mutual, ring or chain)", "links",
                 observed=int(ml.pair.nunique()), baseline=0),
        Evidence("flows on the group's new peer links", "flows", observed=link_flows, baseline=0,
                 threshold=spec.t("min_link_flows")),
        Evidence("new external destinations the group beacons to", "destinations", observed=len(dsts), baseline=0),
        Evidence("new internal peers the group polls on a timer", "hosts", observed=len(hubs), baseline=0),
    ]
    if len(polled):
        evidence.append(Evidence("internal hosts polling this host on a timer", "hosts",
                                 observed=int(polled.src_ip.nunique()), baseline=0, threshold=spec.t("min_hosts")))
    if rhythm:
        evidence.append(Evidence("the host's beacon score to the shared destination (RITA-style)", "score",
                                 observed=round(max(rhythm), 3), threshold=spec.t("min_score")))
    score = mean(past(len(members), spec.t("min_group_size")), past(len(cues), 1),
                 max(rhythm) if rhythm else past(link_flows, spec.t("min_link_flows")))
    own = hl[hl.src_ip == host].sort_values("flows")
    first = own if len(own) else hb if len(hb) else hh if len(hh) else None
    if first is None:  # the relay only receives: its pollers are in related_ips
        dst, port = None, -1
    else:
        r0 = first.iloc[-1] if first is own else first.iloc[0]
        dst, port = str(r0.dst_ip), _port(r0.port)
    ts = [t for t in (x.first_ts.min() for x in (hl, hb, hh, polled) if len(x)) if t is not None and t == t]
    return Alert(
        rule=spec, source_ip=host, message=message, evidence=evidence, score=min(1.0, score),
        severity="low" if m["familiar"] or rollout else None, destination_ip=dst,
        timestamp=min(ts) if ts else None,
        related=others + sorted(set(hubs) - set(members)),
        example_port=port if port >= 0 else None,
        details={"group": members, "peer_services": sorted(set(svcs) | {fmt_service(p, q) for p, q in
                                                                           zip(hub_rows.proto, hub_rows.port)}),
                 "beacon_destinations": sorted(dsts), "polled_internal_peers": sorted(hubs),
                 "relay": bool(len(polled))},
    )
