"""C&C seen in the analysed flows themselves (reference: capture): a host checking in with one
destination on a timer, a host that keeps trying a destination that never answers, and a burst
of DNS lookups that lead nowhere (a DGA walk).

They judge a host's own time course against chance (a timer against random, human-driven use)
and the capture's population (a destination most hosts use is a shared service, not one host's
C2), so they need no clean day and run in `hunt` and `detect` alike.
"""

from __future__ import annotations

from ..alerts import Alert, Evidence
from ..fmt import fmt_duration
from ..network import EXTERNAL_EXTERNAL, EXTERNAL_INTERNAL
from . import rule
from .beacon import beacon_score, beacon_stats, capture_slice, rhythm_p
from .common import (DNS_PORT, brand, busiest_service, company_share, engine_table, is_internal, known_channels, mean, median, org_of, past, past_p,
                     past_share, shared_destination, timestamp, unanswered, unicast, where, with_service)


def _periodic_by_design(spec, proto, port) -> bool:
    return f"{proto}/{port}" in {str(x) for x in spec.t("periodic_protocols")}


# --- beacons -----------------------------------------------------------------------------------

@rule("cnc.beacon")
def beacon(ctx, spec) -> list[Alert]:
    cand = _beacon_candidates(ctx, spec)
    if cand.empty:
        return []
    stats = beacon_stats(ctx.flows, engine_table(ctx, cand, ["src_ip", "dst_ip"]), ctx.engine, span=ctx.span)
    stats = stats.merge(cand, on=["src_ip", "dst_ip"])
    found = [(r, v) for r in stats.itertuples() for v in [_judge_beacon(ctx, spec, r)] if v]
    found = _not_name_resolution(ctx, spec, found)
    if ctx.has_baseline:
        found = _single_outbound(ctx, spec, found)
    fan, fleet = _fan_out(found), _fleets(ctx, spec, found)
    alerts = []
    for r, v in found:
        a = _explain_beacon(ctx, spec, r, v)
        peers = fan[(r.src_ip, r.proto, r.port)]
        mates = fleet.get(id(r), [])
        if len(peers) >= spec.num("poller_min_destinations"):
            a.severity, a.related = "low", sorted(set(peers) - {r.dst_ip})
            a.message += (f"; the same timer with {len(peers)} destinations on this service: a poller or "
                          f"an announcement, not one implant's check-in")
        elif len(mates) + 1 >= spec.num("fleet_min_hosts"):
            a.related = sorted(mates)
            resolved = _fleet_resolved(ctx, spec, found, [r.src_ip, *mates], fleet_key(ctx, r))
            if resolved is not None and resolved < spec.num("resolved_share"):
                a.message += (f"; {len(mates)} other host(s) keep the same timer with this company's service, "
                              f"but {resolved:.0%} of their check-ins follow a DNS lookup: deployed software "
                              f"finds its servers by name, this polls an address written into it")
            else:
                a.severity = "low"
                a.message += (f"; {len(mates)} other host(s) keep the same timer with this company's service: "
                              f"software deployed on several machines")
        alerts.append(a)
    return alerts


def fleet_key(ctx, r) -> tuple:
    """What a fleet shares: the destination's company (or its address) and the service."""
    return (brand(org_of(ctx, r.dst_ip)) or r.dst_ip, r.proto, r.port)


def _fleet_resolved(ctx, spec, found, members, key) -> float | None:
    """dns.resolved_share of a fleet's check-ins with its company's service, computed once for
    every beacon found."""
    from .dns import resolved_share

    dsts = {r.dst_ip for r, _ in found if fleet_key(ctx, r) == key}
    return resolved_share(ctx, [(r.src_ip, r.dst_ip) for r, _ in found], members, dsts,
                          spec.num("follow_window_s"))


def _not_name_resolution(ctx, spec, found):
    """DNS on a timer is C&C only when the lookups lead nowhere: an updater resolving its server
    before each check-in is followed by the connection. With a clean day the DNS rules judge
    DNS against it (cnc.periodic_dns and co.); without one, this rule does."""
    import pandas as pd

    from .dns import followed_share

    dns = [(r, v) for r, v in found if r.port == DNS_PORT]
    if not dns:
        return found
    if ctx.has_baseline:
        return [(r, v) for r, v in found if r.port != DNS_PORT]
    pairs = pd.DataFrame({"src_ip": [r.src_ip for r, _ in dns], "dst_ip": [r.dst_ip for r, _ in dns]})
    share = followed_share(ctx, pairs, int(spec.num("follow_window_s")), spec.num("follow_alpha"),
                            int(spec.num("follow_control_windows")))
    return [(r, v) for r, v in found
            if r.port != DNS_PORT or share.get((r.src_ip, r.dst_ip), 0.0) < spec.num("followed_share")]


def _single_outbound(ctx, spec, found):
    """With a clean day, east-west beacons and destinations other hosts reach too are the botnet
    rules' (judged against that day: botnet.common_beacon, coordinated_group): the channel
    decides the family. This rule keeps one host's beacon to an outside address only it uses."""
    return [(r, v) for r, v in found
            if not is_internal(ctx, r.dst_ip) and shared_destination(ctx, spec, r.dst_ip)[1] <= 1]


def _fan_out(found) -> dict:
    """(src, proto, port) -> the destinations one source beacons to on that service. One source
    keeping the same timer with many hosts is a poller or a service announcing itself
    (monitoring, NetBIOS browser, inventory): a notice. An implant checks in with one place."""
    fan = {}
    for r, _ in found:
        fan.setdefault((r.src_ip, r.proto, r.port), []).append(r.dst_ip)
    return fan


def _fleets(ctx, spec, found) -> dict:
    """id(row) -> the other hosts beaconing to the same company (or address) and service with a
    median gap within fleet_gap_ratio of this one's: the same agent deployed on several machines
    (an updater, telemetry, endpoint protection). A botnet sharing one C2 looks alike; with a
    clean day the botnet rules judge it, without one it stays a notice naming every member."""
    groups = {}
    for r, _ in found:
        groups.setdefault(fleet_key(ctx, r), []).append(r)
    out, ratio = {}, spec.num("fleet_gap_ratio")
    for rows_ in groups.values():
        for r in rows_:
            out[id(r)] = sorted({o.src_ip for o in rows_ if o.src_ip != r.src_ip
                                 and 1 / ratio <= float(o.gap_med) / max(float(r.gap_med), 1e-9) <= ratio})
    return out


def _beacon_candidates(ctx, spec):
    """Internal source -> unicast destination pairs with enough connections for a rhythm, on a
    channel not periodic by design, to a destination that is not shared by most hosts."""
    e = ctx.edges
    e = e.filter(~e.traffic_class.isin([EXTERNAL_INTERNAL, EXTERNAL_EXTERNAL]))
    g = with_service(e.group_by("src_ip", "dst_ip").aggregate(
        flows=e.flows.sum(), svc=busiest_service(e, e.flows),
        up_bytes=e.up_bytes.sum(), down_bytes=e.down_bytes.sum()))
    df = g.filter(g.flows >= spec.num("min_connections")).to_pandas()
    if df.empty:
        return df
    df = df[df.port.notna()]
    keep = [s in unicast(ctx, [s]) and d in unicast(ctx, [d]) and not _periodic_by_design(spec, p, q)
            and not shared_destination(ctx, spec, d)[0]
            for s, d, p, q in zip(df.src_ip, df.dst_ip, df.proto, df.port)]
    df = df[keep]
    return df[[not k for k in known_channels(ctx, df)]]


def _judge_beacon(ctx, spec, r) -> dict | None:
    bs = beacon_score(r, ctx.span[2], spec.num("min_gap_iqr_seconds"), spec.num("min_size_iqr_bytes"))
    p = rhythm_p(r)
    if bs["score"] < spec.num("min_score") or p > spec.num("rhythm_alpha"):
        return None
    return {**bs, "rhythm_p": p, "risk": mean(past_share(bs["score"], spec.num("min_score")), past_p(p))}


def _explain_beacon(ctx, spec, r, v) -> Alert:
    _, k, n = shared_destination(ctx, spec, r.dst_ip)
    port = None if r.port != r.port else int(r.port)
    gap = float(r.gap_med)
    disp = float(r.gap_mad) / gap if gap > 0 else None
    msg = (f"checks in with {r.dst_ip}{where(ctx, r.dst_ip)} on {r.proto}/{port} on a timer: {int(r.n):,} "
           f"connections every ~{fmt_duration(gap)} (gap dispersion {disp:.2f} vs ~0.69 for random use, "
           f"chance {v['rhythm_p']:.1g}); beacon score {v['score']:.2f}; "
           f"{k} of {n} active internal host(s) reach this destination")
    ev = [
        Evidence("beacon score (RITA-style: timing, size, spread, duration)", "score",
                 observed=round(v["score"], 3), threshold=spec.num("min_score")),
        Evidence("gap dispersion (MAD / median gap)", "ratio",
                 observed=round(disp, 3) if disp is not None else None, reference=0.69),
        Evidence("chance of so regular gaps under random arrivals", "probability",
                 observed=float(f"{v['rhythm_p']:.3g}"), threshold=spec.num("rhythm_alpha")),
        Evidence("median gap between connections", "seconds", observed=round(gap, 1)),
        Evidence("connections", "flows", observed=int(r.n), threshold=spec.num("min_connections")),
        Evidence("internal hosts reaching the destination", "share", observed=round(k / n, 3),
                 threshold=spec.num("max_prevalence")),
    ]
    return Alert(rule=spec, source_ip=r.src_ip, destination_ip=r.dst_ip, message=msg, evidence=ev,
                 score=v["risk"], timestamp=timestamp(r.first_ts), example_port=port,
                 details={"beacon": {x: round(v[x], 3) for x in ("score", "timing", "size", "histogram", "duration")}})


# --- C2 that never answers ---------------------------------------------------------------------

@rule("cnc.unanswered")
def unanswered_c2(ctx, spec) -> list[Alert]:
    df = _unanswered_pairs(ctx, spec)
    alerts = []
    for r in df.itertuples():
        v = _judge_unanswered(ctx, spec, r)
        if v:
            alerts.append(_explain_unanswered(ctx, spec, r, v))
    return alerts


def _unanswered_pairs(ctx, spec):
    """Per internal source -> outside (proto, port): attempts, those that got no answer, and over
    how many 24ths of the capture the unanswered ones are spread."""
    f = ctx.flows
    f = f.filter(f.src_internal & ~f.dst_internal)
    f = f.mutate(failed=unanswered(f, spec.t("no_reply_states")).cast("int64"), bin=capture_slice(f.ts, ctx.span))
    g = f.group_by("src_ip", "dst_ip", "proto", "port").aggregate(
        attempts=f.count(), failed=f.failed.sum(), bins=f.bin.nunique(where=f.failed == 1),
        first_ts=f.ts.min(), last_ts=f.ts.max())
    df = g.filter(g.failed >= spec.num("min_attempts")).to_pandas()
    df = df[df.port.notna()]
    return df[[not k for k in known_channels(ctx, df)]]


def _judge_unanswered(ctx, spec, r) -> dict | None:
    share = r.failed / max(r.attempts, 1)
    coverage = r.bins / 24.0
    if share < spec.num("min_failed_share") or coverage < spec.num("min_coverage"):
        return None
    if r.dst_ip not in unicast(ctx, [r.dst_ip]) or shared_destination(ctx, spec, r.dst_ip)[0]:
        return None
    return {"share": share, "coverage": coverage,
            "risk": mean(past_share(share, spec.num("min_failed_share")),
                         past_share(coverage, spec.num("min_coverage")))}


def _explain_unanswered(ctx, spec, r, v) -> Alert:
    port = None if r.port != r.port else int(r.port)
    span_s = (r.last_ts - r.first_ts).total_seconds()
    msg = (f"kept trying {r.dst_ip}{where(ctx, r.dst_ip)} on {r.proto}/{port}: {int(r.attempts):,} attempts over "
           f"{fmt_duration(span_s)}, {int(r.failed):,} without an answer ({v['share']:.0%}), in "
           f"{int(r.bins)} of the capture's 24 time slices (a dead or blocked C2 keeps retrying)")
    ev = [
        Evidence("attempts without an answer", "flows", observed=int(r.failed), threshold=spec.num("min_attempts")),
        Evidence("share of attempts without an answer", "share", observed=round(v["share"], 3),
                 threshold=spec.num("min_failed_share")),
        Evidence("share of the capture's 24 time slices with unanswered attempts", "share",
                 observed=round(v["coverage"], 3), threshold=spec.num("min_coverage")),
    ]
    return Alert(rule=spec, source_ip=r.src_ip, destination_ip=r.dst_ip, message=msg, evidence=ev,
                 score=v["risk"], timestamp=timestamp(r.first_ts), example_port=port)


# --- DGA-like bursts of lookups ----------------------------------------------------------------

@rule("cnc.dns_burst")
def dns_burst(ctx, spec) -> list[Alert]:
    per_min = _dns_minutes(ctx, spec)
    if per_min is None:
        return []
    skip = _long_queries(ctx, spec) | _resolvers(ctx)
    alerts = []
    for host, g in per_min.groupby("src_ip"):
        v = None if host in skip else _judge_burst(spec, g)
        if v:
            alerts.append(_explain_burst(ctx, spec, host, v))
    return alerts


def _resolvers(ctx) -> set:
    """The network's own DNS servers: hosts that several internal hosts send DNS to. Their
    lookups upstream are other hosts' lookups, forwarded: no connection of their own follows."""
    from ..profile import ProfileOptions
    from .dns import dns_flows

    d = dns_flows(ctx)
    g = d.group_by("dst_ip").aggregate(clients=d.src_ip.nunique())
    return set(g.filter(g.clients >= ProfileOptions.min_clients).dst_ip.to_pandas())


def _long_queries(ctx, spec) -> set:
    """Hosts whose median DNS query is tunnel_query_ratio times the hosts' typical one: names
    that carry data (a tunnel: exfiltration.dns_tunnel's business), not a DGA's short guesses."""
    from .dns import dns_flows

    d = dns_flows(ctx)
    q = d.group_by("src_ip").aggregate(q=d.up_bytes.quantile(0.5)).to_pandas()
    typical = median(q.q)
    if not len(q) or typical != typical or typical <= 0:
        return set()
    return set(q.src_ip[q.q >= spec.num("tunnel_query_ratio") * typical])


def _dns_minutes(ctx, spec):
    """Per internal host and minute: DNS lookups (flows: each query has its own source port),
    the seconds with lookups, and those seconds not followed within follow_window_s by a
    connection of the same host (the names led nowhere) -- for the hosts that reach min_lookups
    in some window_minutes (None when none does: the costly follow-up test is for those only)."""
    import ibis

    from .dns import dns_events_today, dns_flows, lonely_events

    def per_minute(t, **agg):
        t = t.mutate(minute=(t.ts.epoch_seconds() / 60).floor().cast("int64"))
        return t.group_by("src_ip", "minute").aggregate(**{k: f(t) for k, f in agg.items()})

    a = per_minute(dns_flows(ctx), lookups=lambda t: t.count())
    win = ibis.window(group_by=a.src_ip, order_by=a.minute, range=(-(int(spec.num("window_minutes")) - 1), 0))
    r = a.mutate(in_window=a.lookups.sum().over(win))
    busy = r.filter(r.in_window >= spec.num("min_lookups")).select("src_ip").distinct().to_pandas()
    if not len(busy):
        return None
    busy = engine_table(ctx, busy)
    ev = dns_events_today(ctx).semi_join(busy, "src_ip")
    lone = lonely_events(ctx, ev, int(spec.num("follow_window_s")))
    a = a.semi_join(busy, "src_ip")
    b = per_minute(ev, seconds=lambda t: t.count())
    c = per_minute(lone, lonely=lambda t: t.count())
    j = a.left_join(b, ["src_ip", "minute"]).select("src_ip", "minute", "lookups", "seconds")
    j = j.left_join(c, ["src_ip", "minute"]).select("src_ip", "minute", "lookups", "seconds", "lonely")
    return j.to_pandas().fillna({"seconds": 0, "lonely": 0})


def _judge_burst(spec, g) -> dict | None:
    """The host's busiest window of `window_minutes`: enough lookups, most leading nowhere."""
    import pandas as pd

    w = int(spec.num("window_minutes"))
    s = g.set_index("minute").sort_index()
    idx = pd.RangeIndex(int(s.index.min()), int(s.index.max()) + 1)
    full = s.reindex(idx, fill_value=0)
    look = full.lookups.rolling(w, min_periods=1).sum()
    end = int(look.idxmax())
    n = float(look.max())
    secs = float(full.seconds.rolling(w, min_periods=1).sum().loc[end])
    lonely = float(full.lonely.rolling(w, min_periods=1).sum().loc[end])
    share = lonely / secs if secs else 0.0
    if n < spec.num("min_lookups") or share < spec.num("min_lonely_share"):
        return None
    return {"lookups": int(n), "lonely": int(lonely), "share": share, "end_minute": end,
            "total": int(g.lookups.sum()),
            "risk": mean(past(n, spec.num("min_lookups")), past_share(share, spec.num("min_lonely_share")))}


def _explain_burst(ctx, spec, host, v) -> Alert:
    import pandas as pd

    w = int(spec.num("window_minutes"))
    start = pd.Timestamp((v["end_minute"] - w + 1) * 60, unit="s")
    msg = (f"{v['lookups']:,} DNS lookups within {w} min from {start:%H:%M}, {v['share']:.0%} of them not followed "
           f"by any connection within seconds (names that lead nowhere: DGA-like); {v['total']:,} lookups in the capture")
    ev = [
        Evidence(f"DNS lookups in the busiest {w} minutes", "lookups", observed=v["lookups"],
                 threshold=spec.num("min_lookups")),
        Evidence(f"share of their seconds not followed within {spec.num('follow_window_s'):g} s by a connection", "share",
                 observed=round(v["share"], 3), threshold=spec.num("min_lonely_share")),
    ]
    return Alert(rule=spec, source_ip=host, message=msg, evidence=ev, score=v["risk"],
                 timestamp=start.to_pydatetime(), example_port=53)


# --- resolvers few hosts use ------------------------------------------------------------------------

@rule("cnc.rare_resolver")
def rare_resolver(ctx, spec) -> list[Alert]:
    if ctx.has_baseline:
        return []  # with a clean day, cnc.new_resolver and cnc.periodic_dns judge resolvers against it
    df, dns_hosts = _outside_resolvers(ctx)
    if dns_hosts < spec.num("prevalence_min_hosts"):
        return []  # with a handful of hosts, "few hosts use it" means nothing
    from .dns import dns_rhythm, followed_share

    rare = df[df.hosts <= spec.num("max_hosts_share") * dns_hosts]
    pairs = rare[["src_ip", "dst_ip"]]
    followed = followed_share(ctx, pairs, int(spec.num("follow_window_s")), spec.num("follow_alpha"),
                            int(spec.num("follow_control_windows")))
    rhythm = dns_rhythm(ctx, pairs)
    judged = {}
    for r in rare.itertuples():
        share, n = company_share(ctx, r.dst_ip)
        fol = followed.get((r.src_ip, r.dst_ip), 0.0)
        p = rhythm.get((r.src_ip, r.dst_ip), {}).get("rhythm_p", 1.0)
        # A resolver set by hand (Quad9, a company's own DNS) answers a person's lookups at
        # random times, or resolves names the host then connects to: a policy matter. C&C over
        # DNS polls on a timer and its lookups lead nowhere.
        notice = share >= spec.num("familiar_host_share") or fol >= spec.num("followed_share") \
            or p > spec.num("rhythm_alpha")
        judged.setdefault(r.src_ip, []).append((notice, p, -r.lookups, r, share, n, fol))
    alerts = []
    for host_rows in judged.values():  # one alert per host: its most telling resolver, the others related
        host_rows.sort(key=lambda x: x[:3])
        (notice, p, _, r, share, n, fol), others = host_rows[0], host_rows[1:]
        a = _explain_resolver(ctx, spec, r, dns_hosts, share, n, fol, p)
        if notice:
            a.severity = "low"
        if others:
            a.related = [x[3].dst_ip for x in others]
            a.message += f"; {len(others):,} other outside resolver(s) few hosts use, each judged the same way"
        alerts.append(a)
    return alerts


def _outside_resolvers(ctx):
    """(per internal host -> outside resolver: lookups, and how many hosts use that resolver;
    how many internal hosts send DNS at all)."""
    from .dns import dns_flows

    d = dns_flows(ctx)
    n = int(d.aggregate(n=d.src_ip.nunique()).to_pandas().n.iloc[0] or 0)
    o = d.filter(~d.dst_internal)
    per = o.group_by("src_ip", "dst_ip").aggregate(lookups=o.count(), first_ts=o.ts.min())
    users = o.group_by("dst_ip").aggregate(hosts=o.src_ip.nunique())
    return per.join(users, "dst_ip").to_pandas(), n


def _explain_resolver(ctx, spec, r, dns_hosts, share, n, fol, p) -> Alert:
    msg = (f"sent {int(r.lookups):,} DNS lookups to {r.dst_ip}{where(ctx, r.dst_ip)}, a resolver outside the network "
           f"that {int(r.hosts)} of the {dns_hosts} hosts sending DNS use; {share:.0%} of the {n} active hosts "
           f"reach its company at all; {fol:.0%} of the lookups lead to a connection within "
           f"{spec.num('follow_window_s'):g} s (beyond chance); chance of their rhythm under random use {p:.1g}")
    ev = [
        Evidence("hosts using this resolver", "hosts", observed=int(r.hosts),
                 reference=dns_hosts, threshold=round(spec.num("max_hosts_share") * dns_hosts, 1)),
        Evidence("share of the active hosts reaching the resolver's company", "share", observed=round(share, 3),
                 threshold=spec.num("familiar_host_share")),
        Evidence("lookups followed by a connection (name resolution), beyond chance", "share",
                 observed=round(fol, 3), threshold=spec.num("followed_share")),
        Evidence("chance of so regular lookups under random (human) use", "probability",
                 observed=float(f"{p:.3g}"), threshold=spec.num("rhythm_alpha")),
        Evidence("DNS lookups to it", "lookups", observed=int(r.lookups)),
    ]
    return Alert(rule=spec, source_ip=r.src_ip, destination_ip=r.dst_ip, message=msg, evidence=ev,
                 score=1.0 - share, timestamp=timestamp(r.first_ts), example_port=DNS_PORT)
