"""cnc rules: command and control over DNS, seen in flow records only (no query names).

Flows do not carry DNS names, so name-based detections (RITA's unique subdomains, DGA scores)
are out of reach. What flows show, and what rules/dns.py learns from the baseline: the network's
resolvers and forwarders, each host's resolvers, hours and share of DNS, the usual query size.

Rules
  cnc.new_resolver    DNS to a resolver neither the host nor the network uses, kept up over
                      several hours. Medium when the evidence is C&C-like: a machine rhythm, or an
                      external resolver no host queried on the baseline day that is no public
                      resolver service, in an organisation the network does not use. A public
                      resolver (Google, Cloudflare, Quad9...) queried at irregular, user-driven
                      times is a policy matter: a low-severity notice. Internal or already-seen
                      resolvers need the rhythm.
  cnc.periodic_dns    a DNS conversation with a RITA-style beacon rhythm whose gaps are too
                      regular for random lookups (Poisson test) and far more regular than the
                      network's other DNS conversations today, new for the host
  cnc.dns_silent_hours  DNS, nearly alone, through a run of hours the host is silent (its own
                      baseline hours; for a host new today, the network's quiet hours and its
                      peers' DNS share): binomial test against its usual DNS share, combined with
                      the rhythm test (Fisher)

Regularity is judged by the gaps' MAD/median ("dispersion"): random lookups give about 0.69 and
user-driven DNS is at least that irregular; a timer with 10 % jitter gives about 0.07. Its chance
under random arrivals comes from seeded simulations (beacon.poisson_dispersion_p).

Several hosts polling the same outside resolver are one C&C channel: each is alerted here, the
others in related_ips (never botnet: the channel decides the family). DNS whose queries are
longer AND whose volume multiplies is tunnelling, left to exfiltration.dns_tunnel.
"""

from __future__ import annotations

import math

from ..alerts import Alert, Evidence
from ..fmt import fmt_duration, fmt_hours
from . import Allowlist, rule
from .beacon import RHYTHM_P_FLOOR
from .common import (DNS_PORT, MAD_TO_SIGMA, binomial_tail, engine_table, familiarity, fisher, is_internal,
                     mad, mean, median, past, past_p, past_share, quantile, runs_of, timestamp, usual_hours,
                     where)
from .dns import (NO_RHYTHM, FROM_INTERNAL, dns_baseline, dns_events_today, dns_rhythm, dns_today, exempt_hosts, followed_share,
                  lonely_events, tunnel_like)

DISPERSION_FLOOR = 1e-3  # gaps identical to within 0.1 %: a perfect timer (log scale needs a floor)


def _regular(bs: dict, spec) -> bool:
    """A C&C rhythm: RITA's beacon score AND gaps too regular to be chance."""
    return bs["score"] >= spec.num("beacon_score") and bs["rhythm_p"] <= spec.num("rhythm_alpha")


def _host_up_today(ctx) -> dict:
    return ctx.cached(("cnc.host_up_today",), lambda: dns_today(ctx).groupby("src_ip").up_bytes.sum().to_dict())


def _shared(found: dict) -> dict:
    """resolver -> hosts alerted for it (several hosts on one outside resolver: one channel)."""
    out: dict = {}
    for host, v in found.items():
        out.setdefault(v["dst"], set()).add(host)
    return out


# --- cnc.new_resolver ----------------------------------------------------------------------------

@rule("cnc.new_resolver")
def new_resolver(ctx, spec) -> list[Alert]:
    b = dns_baseline(ctx, spec)
    cand = _new_resolver_candidates(ctx, spec, b)
    if not len(cand):
        return []
    rhythm = dns_rhythm(ctx, cand)
    cand = cand.assign(rhythm_p=[rhythm.get((s, d), NO_RHYTHM)["rhythm_p"] for s, d in zip(cand.src_ip, cand.dst_ip)])
    # one resolver, one channel: the rhythm evidence of every host querying it, combined
    channel_p = {d: fisher(*g.rhythm_p) for d, g in cand.groupby("dst_ip")}
    judged: dict = {}
    for r in cand.itertuples(index=False):
        v = _judge_new_resolver(ctx, spec, b, r, rhythm.get((r.src_ip, r.dst_ip), NO_RHYTHM), channel_p[r.dst_ip])
        if v:
            judged.setdefault(r.src_ip, []).append(v)
    # a host on a resolver where another host polls like a C&C client is on that channel too; so
    # is one of several hosts whose rhythms, each weak, together pass the bar of one machine rhythm
    # (jittered implants of one campaign: random lookups would agree so 1 in 1/rhythm_alpha times)
    hosts_on = cand.groupby("dst_ip").src_ip.nunique()
    regular_dsts = {v["dst"] for vs in judged.values() for v in vs if v["regular"]}
    regular_dsts |= {d for d, p in channel_p.items() if hosts_on[d] >= 2 and p <= spec.num("rhythm_alpha")}
    for vs in judged.values():
        for v in vs:
            if v["severity"] == "low" and v["dst"] in regular_dsts and v["bs"]["rhythm_p"] <= spec.num("channel_alpha"):
                v["severity"], v["rank"], v["joined"] = None, (True, v["score"]), True
    # lookups followed by the connection they resolved are a person's or an agent's, not C&C
    follow = followed_share(ctx, _pairs([(h, v["dst"]) for h, vs in judged.items() for v in vs]),
                            int(spec.num("follow_window_s")), spec.num("follow_alpha"),
                            int(spec.num("follow_control_windows")))
    for host, vs in judged.items():
        for v in vs:
            v["followed"] = follow.get((host, v["dst"]), 0.0)
            if v["followed"] >= spec.num("followed_share") and v["severity"] is None:
                v["severity"], v["rank"] = "low", (False, v["score"])
    found = {}
    for host, vs in judged.items():  # the strongest new resolver of each host; the others listed
        vs.sort(key=lambda v: v["rank"], reverse=True)
        found[host] = {**vs[0], "others": [v["dst"] for v in vs[1:]]}
    shared = _shared(found)
    return [_explain_new_resolver(ctx, spec, b, host, v, shared) for host, v in found.items()]


def _new_resolver_candidates(ctx, spec, b):
    """(host, resolver) conversations on a resolver that is not the network's nor the host's,
    kept up (flows, hours), from hosts that are not resolvers, not a network-wide change."""
    today = dns_today(ctx)
    exempt = exempt_hosts(ctx, spec, b)
    clients = max(int(today[~today.src_ip.isin(exempt)].src_ip.nunique()), 1)
    users = today.groupby("dst_ip").src_ip.nunique()
    c = today[~today.src_ip.isin(exempt) & ~today.dst_ip.isin(b.established) & (today.src_ip != today.dst_ip)]
    c = c[[d not in b.host_resolvers.get(s, ()) for s, d in zip(c.src_ip, c.dst_ip)]] if len(c) else c
    c = c[(c.flows >= spec.num("min_flows")) & (c.hours >= spec.num("min_hours"))]
    # A resolver most of the network switched to today is a change of configuration, not C&C.
    return c[c.dst_ip.map(users).fillna(0) < spec.num("network_change_share") * clients]


def _public_resolvers(spec) -> Allowlist:
    return Allowlist(spec.t("public_resolvers"))


def _judge_new_resolver(ctx, spec, b, r, bs, channel_p) -> dict | None:
    """Medium when the evidence is C&C-like: the host's own machine rhythm, or an external
    resolver nobody queried before that is no public resolver service (what would answer there
    but its owner's own name server?). Its organisation does not excuse it: hosts browsing a
    cloud's or a CDN's sites make none of its addresses a public resolver, and clouds rent
    machines to anyone. Otherwise a low notice (a public resolver set by hand is a policy
    matter). Internal or already-seen resolvers need the rhythm."""
    internal = is_internal(ctx, r.dst_ip)
    seen = r.dst_ip in b.seen
    regular = _regular(bs, spec)
    if (internal or seen or not b.clients) and not regular:
        return None
    tunnel, q_ratio, _ = tunnel_like(b, r.src_ip, r.up_bytes / max(r.flows, 1), _host_up_today(ctx).get(r.src_ip, 0.0), spec)
    if tunnel:
        return None
    org, org_share = familiarity(ctx, r.dst_ip)
    public = _public_resolvers(spec).matches(r.dst_ip)
    unfamiliar = not internal and not seen and not public
    severity = None if regular or unfamiliar else "low"
    score = mean(past_p(bs["rhythm_p"]), float(unfamiliar), past(r.hours, spec.num("min_hours")))
    return {"dst": r.dst_ip, "row": r, "bs": bs, "internal": internal, "regular": regular, "org": org,
            "org_share": org_share, "public": public, "unfamiliar": unfamiliar, "channel_p": channel_p, "severity": severity,
            "score": score, "q_ratio": q_ratio, "rank": (severity is None, score), "joined": False}


def _explain_new_resolver(ctx, spec, b, host, v, shared) -> Alert:
    r, bs = v["row"], v["bs"]
    own, known = sorted(b.host_resolvers.get(host, ())), sorted(b.established)
    users = b.resolver_users.get(r.dst_ip, 0)
    novelty = ("a resolver no host used on the baseline day" if r.dst_ip not in b.seen
               else f"a resolver only {users} host(s) used on the baseline day" if users
               else "an address only a resolver queried on the baseline day")
    why = (f"; regular, every ~{fmt_duration(bs['gap_median_s'])} (beacon score {bs['score']:.2f}, chance "
           f"{bs['rhythm_p']:.1g} for random lookups)" if v["regular"] else
           f"; irregular (chance {bs['rhythm_p']:.2g} for random lookups)")
    if v["unfamiliar"]:
        why += (f"; no public resolver service ({v['org'] or 'its organisation unknown'}, whose other addresses "
                f"{v['org_share']:.0%} of the hosts used): who answers there but the owner's own name server?")
    if v["joined"]:
        why += (f"; the hosts querying it keep a rhythm together that random lookups would show with chance "
                f"{v['channel_p']:.1g}: one C&C channel")
    if v["followed"] >= spec.num("followed_share"):
        why += f"; {v['followed']:.0%} of its lookups are followed by a connection: name resolution, not C&C"
    elif v["severity"] == "low" and v["public"]:
        why += "; a public resolver service: one used by hand is a policy matter, not C&C"
    others = sorted(shared.get(r.dst_ip, set()) - {host})
    msg = (f"sent {int(r.flows):,} DNS queries over {int(r.hours)} h to {r.dst_ip}{where(ctx, r.dst_ip)}, "
           f"{novelty} (its usual: {', '.join(own) or 'none, new host'}; "
           f"the network's: {', '.join(known[:4]) or 'none'}){why}")
    if others:
        msg += f"; {len(others)} other host(s) query it too ({', '.join(others[:4])})"
    if v["others"]:
        msg += f"; {len(v['others'])} more new resolver(s)"
    ev = [
        Evidence("DNS resolvers used", "addresses", observed=[r.dst_ip, *v["others"]], baseline=own, reference=known),
        Evidence(f"DNS flows to {r.dst_ip}", "flows", observed=int(r.flows), baseline=0, reference=users,
                 threshold=spec.num("min_flows")),
        Evidence("hours with DNS to the new resolver", "hours", observed=int(r.hours), baseline=0,
                 threshold=spec.num("min_hours")),
        Evidence("beacon score of the conversation", "score", observed=round(bs["score"], 3),
                 threshold=spec.num("beacon_score")),
        Evidence("chance of so regular gaps under random arrivals", "probability",
                 observed=float(f"{bs['rhythm_p']:.3g}"), threshold=spec.num("rhythm_alpha")),
        Evidence("share of the internal hosts that used the resolver's organisation on the baseline day", "share",
                 observed=round(v["org_share"], 4)),
        Evidence("chance of the rhythms of all hosts querying it under random lookups (Fisher)", "probability",
                 observed=float(f"{v['channel_p']:.3g}"), threshold=spec.num("channel_alpha")),
        Evidence("internal hosts querying this resolver today (same channel)", "hosts", observed=len(others) + 1,
                 baseline=users),
        Evidence(f"lookups followed within {spec.num('follow_window_s'):g} s by a connection (name resolution, not C&C)",
                 "share", observed=round(v["followed"], 3), threshold=spec.num("followed_share")),
        Evidence("bytes sent per DNS query", "bytes", observed=round(r.up_bytes / max(r.flows, 1), 1),
                 reference=round(b.query_bytes, 1), threshold=round(spec.num("tunnel_query_ratio") * b.query_bytes, 1)),
    ]
    return Alert(
        rule=spec, source_ip=host, destination_ip=r.dst_ip, message=msg, evidence=ev, score=v["score"],
        severity=v["severity"], timestamp=timestamp(r.first_ts), related=others + v["others"], example_port=DNS_PORT,
        details={"beacon": bs, "external": not v["internal"], "seen_on_baseline_day": r.dst_ip in b.seen,
                 "organisation": v["org"], "organisation_host_share": round(v["org_share"], 4),
                 "query_size_ratio": round(v["q_ratio"], 2)},
    )


# --- cnc.periodic_dns -----------------------------------------------------------------------------

@rule("cnc.periodic_dns")
def periodic_dns(ctx, spec) -> list[Alert]:
    b = dns_baseline(ctx, spec)
    today = dns_today(ctx)
    pop = today[~today.src_ip.isin(exempt_hosts(ctx, spec, b)) & (today.flows >= spec.num("min_events"))
                & (today.hours >= spec.num("min_hours"))]
    if not len(pop):
        return []
    # Every sizeable DNS conversation: the peers the candidates are judged against.
    rhythm = dns_rhythm(ctx, pop)
    fence, peer_median = _dispersion_fence(spec, rhythm)
    found = {}
    for r in pop.itertuples(index=False):
        bs = rhythm.get((r.src_ip, r.dst_ip))
        base_pair = b.pair_flows.get((r.src_ip, r.dst_ip), 0)
        if (bs is None or bs["events"] < spec.num("min_events") or r.flows < spec.num("new_ratio") * base_pair
                or not _regular(bs, spec) or bs["gap_dispersion"] > fence):
            continue  # irregular, or the host's usual conversation with its resolver at its usual rate
        tunnel, q_ratio, v_ratio = tunnel_like(b, r.src_ip, r.up_bytes / max(r.flows, 1),
                                               _host_up_today(ctx).get(r.src_ip, 0.0), spec)
        if tunnel:
            continue
        score = mean(past_share(bs["score"], spec.num("beacon_score")),
                     min(1.0, math.log10(max(bs["rhythm_p"], RHYTHM_P_FLOOR)) / math.log10(RHYTHM_P_FLOOR)))
        if r.src_ip not in found or score > found[r.src_ip]["score"]:
            found[r.src_ip] = {"dst": r.dst_ip, "row": r, "bs": bs, "score": score, "base_pair": base_pair,
                               "q_ratio": q_ratio, "v_ratio": v_ratio}
    # polls followed by the connection they resolved are an updater or agent checking in, not C&C
    follow = followed_share(ctx, _pairs([(h, v["dst"]) for h, v in found.items()]), int(spec.num("follow_window_s")),
                            spec.num("follow_alpha"),
                            int(spec.num("follow_control_windows")))
    for host, v in list(found.items()):
        v["followed"] = follow.get((host, v["dst"]), 0.0)
        if v["followed"] >= spec.num("followed_share"):
            del found[host]
    shared = _shared({h: v for h, v in found.items() if v["dst"] not in b.established})
    return [_explain_periodic(ctx, spec, host, v, fence, peer_median, shared) for host, v in found.items()]


def _pairs(pairs: list[tuple[str, str]]):
    import pandas as pd

    return pd.DataFrame(pairs, columns=["src_ip", "dst_ip"])


def _dispersion_fence(spec, rhythm: dict) -> tuple[float, float]:
    """The network's DNS conversations today: a lower fence on their gap dispersion (log scale,
    median - peer_z sigma) and their median; no fence with fewer than min_peers conversations."""
    disps = [math.log(max(v["gap_dispersion"], DISPERSION_FLOOR)) for v in rhythm.values()
             if v["gap_dispersion"] is not None and v["events"] >= spec.num("min_events")]
    if len(disps) < spec.num("min_peers"):
        return math.inf, float("nan")
    return math.exp(median(disps) - spec.num("peer_z") * MAD_TO_SIGMA * mad(disps)), math.exp(median(disps))


def _explain_periodic(ctx, spec, host, v, fence, peer_median, shared) -> Alert:
    r, bs, base_pair = v["row"], v["bs"], v["base_pair"]
    others = sorted(shared.get(r.dst_ip, set()) - {host})
    msg = (f"queried {r.dst_ip}{where(ctx, r.dst_ip)} on port 53 at a regular rhythm: {bs['events']:,} polls "
           f"over {int(r.hours)} h, every ~{fmt_duration(bs['gap_median_s'])} (gap dispersion "
           f"{bs['gap_dispersion']:.2f} vs "
           + (f"{peer_median:.2f} for the network's DNS conversations today and " if peer_median == peer_median
              else "")
           + f"~0.69 for random lookups, chance {bs['rhythm_p']:.1g}; beacon score {bs['score']:.2f}); "
           + ("a conversation absent from its baseline day" if base_pair == 0
              else f"{int(r.flows):,} flows vs {base_pair:,} on its baseline day")
           + (f"; {len(others)} other host(s) poll it too ({', '.join(others[:4])})" if others else ""))
    ev = [
        Evidence("beacon score of the DNS conversation", "score", observed=round(bs["score"], 3),
                 threshold=spec.num("beacon_score")),
        Evidence("gap dispersion (MAD / median gap)", "ratio", observed=round(bs["gap_dispersion"], 3),
                 reference=round(peer_median, 3) if peer_median == peer_median else None,
                 threshold=round(fence, 3) if fence != math.inf else None),
        Evidence("chance of so regular gaps under random arrivals", "probability",
                 observed=float(f"{bs['rhythm_p']:.3g}"), threshold=spec.num("rhythm_alpha")),
        Evidence("timing regularity (RITA)", "score", observed=round(bs["timing"], 3)),
        Evidence("median gap between polls", "seconds",
                 observed=round(bs["gap_median_s"], 1) if bs["gap_median_s"] is not None else None),
        Evidence(f"DNS flows to {r.dst_ip}", "flows", observed=int(r.flows), baseline=int(base_pair),
                 threshold=round(spec.num("new_ratio") * base_pair, 1) if base_pair else spec.num("min_events")),
        Evidence("hours with DNS to it", "hours", observed=int(r.hours), threshold=spec.num("min_hours")),
        Evidence(f"polls followed within {spec.num('follow_window_s'):g} s by a connection (name resolution, not C&C)",
                 "share", observed=round(v["followed"], 3), threshold=spec.num("followed_share")),
    ]
    return Alert(
        rule=spec, source_ip=host, destination_ip=r.dst_ip, message=msg, evidence=ev, score=v["score"],
        timestamp=timestamp(r.first_ts), related=others, example_port=DNS_PORT,
        details={"beacon": bs, "query_size_ratio": round(v["q_ratio"], 2),
                 "dns_upload_ratio": round(v["v_ratio"], 2) if v["v_ratio"] != math.inf else None},
    )


# --- cnc.dns_silent_hours ----------------------------------------------------------------------------

@rule("cnc.dns_silent_hours")
def dns_silent_hours(ctx, spec) -> list[Alert]:
    b = dns_baseline(ctx, spec)
    usual = _usual_hours(ctx, spec)
    if usual is None:
        return []
    silent = _silent_dns(ctx, spec, b, usual)
    cand = _silent_candidates(ctx, spec, b, usual, silent)
    if not cand:
        return []
    # The rhythm of the candidates' lonely DNS in those hours, per (host, resolver), in the engine.
    cells = silent[[(h, q) in {(c["host"], c["period"]) for c in cand} for h, q in zip(silent.src_ip, silent.period)]]
    cells = cells[["src_ip", "hour"]].astype({"hour": "int8"})
    lone = lonely_events(ctx, _dns_in(ctx, cells), int(spec.num("follow_window_s")))
    per_pair = lone.group_by("src_ip", "dst_ip").aggregate(n=lone.count(), first_ts=lone.ts.min(),
                                                           last_ts=lone.ts.max()).to_pandas()
    rhythm = dns_rhythm(ctx, per_pair, lone)
    alerts = []
    for c in cand:
        pairs = per_pair[per_pair.src_ip == c["host"]].sort_values("n", ascending=False)
        if not len(pairs):
            continue
        c["pairs"], c["rhythm"] = pairs, rhythm.get((c["host"], pairs.iloc[0].dst_ip), NO_RHYTHM)
        c["hours"] = sorted(cells[cells.src_ip == c["host"]].hour.astype(int).unique())
        c["span_min"] = (pairs.last_ts.max() - pairs.first_ts.min()).total_seconds() / 60.0
        c["combined"] = fisher(c["p_value"], c["rhythm"]["rhythm_p"])
        tunnel, c["q_ratio"], c["v_ratio"] = tunnel_like(b, c["host"], c["dns_up"] / max(c["dns"], 1),
                                                         _host_up_today(ctx).get(c["host"], 0.0), spec)
        rp = c["rhythm"]["rhythm_p"]
        # Nothing but lookups that lead nowhere, for half an hour or more while the user is away:
        # no person and no agent does that (both connect to what they resolve); a jittered slow
        # poller has too few gaps for a rhythm test, the silence around it is the evidence.
        c["only_dns"] = c["dns"] >= c["flows"]
        evidence = ((c["combined"] <= spec.num("alpha") and (rp <= spec.num("regular_p") or c["only_dns"]))
                    or (rp <= spec.num("rhythm_alpha") and c["rhythm"]["events"] >= spec.num("min_events")))
        if c["span_min"] < spec.num("min_span_minutes") or tunnel or not evidence:
            continue  # one burst of lookups, DNS tunnelling (exfiltration's), or stray lookups without a rhythm
        alerts.append(_explain_silent(ctx, spec, b, usual, c))
    return alerts


def _usual_hours(ctx, spec):
    return usual_hours(ctx, int(spec.num("margin_hours")), spec.num("core_share"))


def _dns_in(ctx, cells):
    """The DNS events of internal hosts in the given (src_ip, hour) cells (an Ibis expression)."""
    return dns_events_today(ctx).semi_join(engine_table(ctx, cells), ["src_ip", "hour"])


def _silent_dns(ctx, spec, b, usual):
    """(host, hour) cells of the test day with DNS at hours the host is away: outside its working
    hours of the baseline day (hosts new today: the network's quiet hours), with the flows, DNS
    flows, DNS bytes and lonely DNS events (not followed by a connection) of each cell, the run of
    such hours it belongs to (`period`), and each new host's flows and DNS flows in its other hours
    (its own mix). A machine left on overnight is away at night even though its agents poll."""
    import pandas as pd

    e = ctx.edge_hours
    e = e.filter(e.traffic_class.isin(list(FROM_INTERNAL)))
    is_dns = e.port == DNS_PORT
    cells = e.group_by("src_ip", "hour").aggregate(
        flows=e.flows.sum(), dns_flows=is_dns.ifelse(e.flows, 0).sum(), dns_up=is_dns.ifelse(e.up_bytes, 0).sum())
    rows = [(h, x) for h, hours in usual["work"].items() for x in hours]
    usual_t = engine_table(ctx, pd.DataFrame(rows, columns=["src_ip", "hour"]).astype({"hour": "int8"}))
    known_t = engine_table(ctx, pd.DataFrame({"src_ip": list(usual["work"])}))
    old = cells.semi_join(known_t, "src_ip").anti_join(usual_t, ["src_ip", "hour"])
    new = cells.anti_join(known_t, "src_ip")
    quiet = usual["quiet"]
    silent_cells = old.union(new.filter(new.hour.isin(quiet))) if quiet else old
    silent = silent_cells.filter(silent_cells.dns_flows > 0).to_pandas()
    silent = silent[~silent.src_ip.isin(exempt_hosts(ctx, spec, b))].copy()
    if not len(silent):
        return silent.assign(period=[], lonely=[])
    lone = lonely_events(ctx, _dns_in(ctx, silent[["src_ip", "hour"]].astype({"hour": "int8"})),
                         int(spec.num("follow_window_s")))
    per = lone.group_by("src_ip", "hour").aggregate(lonely=lone.count()).to_pandas()
    silent = silent.merge(per, on=["src_ip", "hour"], how="left").fillna({"lonely": 0})
    # Each run of consecutive away hours (the night, the evening) is judged on its own: a C&C
    # client polls through one of them, while a machine's few stray lookups are scattered.
    runs = {h: runs_of(set(range(24)) - hours) for h, hours in usual["work"].items()}
    quiet_runs = runs_of(set(quiet))
    silent["period"] = [runs[h].get(int(x), int(x)) if h in runs else quiet_runs.get(int(x), int(x))
                        for h, x in zip(silent.src_ip, silent.hour)]
    new_hosts = sorted(set(silent.src_ip) - set(usual["work"]))
    if new_hosts:  # their mix outside the quiet hours today: their own reference
        rest = new.filter(new.src_ip.isin(new_hosts) & ~new.hour.isin(quiet) if quiet else new.src_ip.isin(new_hosts))
        own = rest.group_by("src_ip").aggregate(n=rest.flows.sum(), d=rest.dns_flows.sum()).to_pandas()
        silent.attrs["new_host_mix"] = {s: (int(n), int(d)) for s, n, d in own.itertuples(index=False)}
    return silent


def _silent_candidates(ctx, spec, b, usual, silent) -> list[dict]:
    """Per host, its most surprising run of away hours: the binomial chance of that many lonely
    DNS events among its flows there at its usual DNS share (an upper bound of its lonely share:
    its own baseline day; a new host: the larger of its peers' new_host_share_quantile and its own
    share in its other hours today)."""
    if not len(silent):
        return []
    per = silent.groupby(["src_ip", "period"]).agg(d=("lonely", "sum"), dns=("dns_flows", "sum"), n=("flows", "sum"),
                                                   dns_up=("dns_up", "sum")).reset_index()
    per = per[per.d >= spec.num("min_flows")]
    peers_share = quantile(list(b.host_dns_share.values()), spec.num("new_host_share_quantile"), b.dns_share)
    mix = silent.attrs.get("new_host_mix", {})
    best: dict = {}
    for r in per.itertuples(index=False):
        known = r.src_ip in usual["work"]
        if known:
            p = b.host_dns_share.get(r.src_ip, b.dns_share)
        else:
            n, d = mix.get(r.src_ip, (0, 0))
            p = max(peers_share, d / n if n else 0.0)
        p = max(p if p == p else b.dns_share, spec.num("min_dns_share"))
        pval = binomial_tail(int(r.d), int(r.n), p)
        # a run of away hours goes on if its lone DNS is surprising, or numerous enough for a rhythm
        # (a machine left on overnight keeps its agents' traffic: the share cannot tell there)
        if not (pval <= spec.num("candidate_p") or r.d >= spec.num("min_events")):
            continue
        if r.src_ip not in best or pval < best[r.src_ip]["p_value"]:
            best[r.src_ip] = {"host": r.src_ip, "period": int(r.period), "dns": int(r.d), "all_dns": int(r.dns),
                              "flows": int(r.n), "dns_up": float(r.dns_up), "share": p, "p_value": pval, "known": known}
    return list(best.values())


def _explain_silent(ctx, spec, b, usual, c) -> Alert:
    host, bs, top = c["host"], c["rhythm"], c["pairs"].iloc[0]
    usual_h = sorted(usual["active"].get(host, ())) if c["known"] else []
    regular = bs["rhythm_p"] <= spec.num("regular_p")
    rhythm = (f", regular every ~{fmt_duration(bs['gap_median_s'])} (chance {bs['rhythm_p']:.1g} for random lookups)"
              if regular else "; nothing else from the host then, not one connection" if c["only_dns"] else "")
    when = (f"active {fmt_hours(usual_h)} on the baseline day" if c["known"]
            else f"a host new today, judged against its peers; the network is quiet {fmt_hours(usual['quiet'])}")
    msg = (f"sent {c['dns']:,} DNS queries followed by no connection to {top.dst_ip}{where(ctx, top.dst_ip)} at "
           f"{fmt_hours(c['hours'])}, hours its user is away ({when}), among {c['flows']:,} flows then "
           f"(share {c['dns'] / c['flows']:.0%} vs {c['share']:.0%} DNS "
           f"{'in its usual traffic' if c['known'] else 'for its peers or its own other hours'}){rhythm}; "
           f"C&C over DNS needs no connection, name lookups are followed by one")
    ev = [
        Evidence(f"DNS queries in the host's away hours followed by no connection within "
                 f"{spec.num('follow_window_s'):g} s", "events", observed=c["dns"], reference=c["all_dns"],
                 threshold=spec.num("min_flows")),
        Evidence("share of those among its flows in those hours (vs its usual DNS share)", "share",
                 observed=round(c["dns"] / c["flows"], 3), baseline=round(c["share"], 3) if c["known"] else None,
                 reference=None if c["known"] else round(c["share"], 3)),
        Evidence("chance of that many DNS flows among them at its usual DNS share", "probability",
                 observed=float(f"{c['p_value']:.3g}"), threshold=spec.num("candidate_p")),
        Evidence("chance of so regular gaps under random lookups", "probability",
                 observed=float(f"{bs['rhythm_p']:.3g}"), threshold=spec.num("regular_p")),
        Evidence("both chances combined (Fisher)", "probability", observed=float(f"{c['combined']:.3g}"),
                 threshold=spec.num("alpha")),
        Evidence("hours with DNS outside its usual hours", "hours", observed=c["hours"], baseline=usual_h,
                 reference=usual["quiet"] if not c["known"] else None),
        Evidence("time from first to last of those DNS flows", "minutes", observed=round(c["span_min"], 1),
                 threshold=spec.num("min_span_minutes")),
        Evidence("timing regularity of that DNS (RITA)", "score", observed=round(bs["timing"], 3)),
        Evidence("bytes sent per DNS query", "bytes", observed=round(c["dns_up"] / max(c["dns"], 1), 1),
                 reference=round(b.query_bytes, 1)),
    ]
    return Alert(
        rule=spec, source_ip=host, destination_ip=top.dst_ip, message=msg, evidence=ev,
        score=mean(past_p(c["combined"]), past_p(bs["rhythm_p"])), timestamp=timestamp(top.first_ts),
        related=list(c["pairs"].dst_ip.iloc[1:]), example_port=DNS_PORT,
        details={"beacon": bs, "p_value": c["p_value"], "rhythm_p": bs["rhythm_p"], "combined_p": c["combined"],
                 "period_start_hour": c["period"], "host_in_baseline": c["known"],
                 "query_size_ratio": round(c["q_ratio"], 2),
                 "dns_upload_ratio": round(c["v_ratio"], 2) if c["v_ratio"] != math.inf else None},
    )
