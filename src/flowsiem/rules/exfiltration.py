"""exfiltration rules: data leaving the network, seen in flow records (see rules.yaml).

A host is judged against its OWN baseline day and its PEERS (the baseline population of internal
hosts: robust quantiles and medians). Exfiltration evidence is volume together with where it goes
and when: a big upload to an organisation the host never used, or at hours it is otherwise
silent, or so big that nothing ordinary explains it. A bulk upload to a service the host already
uses, in its working hours (backup, sync, sharing), is a low notice.

Rules
  exfiltration.upload_volume  one destination (an address, or the addresses of one AS
                              organisation) receives today far more than the host uploaded to the
                              whole internet on its baseline day and far more than peers send to
                              one destination; high when the organisation is new for the host (for
                              a host new today: not one the network uses) or the volume is extreme,
                              medium when most of it left at hours the host is silent, else low.
  exfiltration.dns_tunnel     data in DNS queries: a host's DNS upload is a multiple of its own
                              baseline, the added volume alone exceeds what nearly every host
                              sends over DNS in a whole day, and its queries are clearly longer
                              than the network's; or the volume alone is extreme. A low-rate DNS
                              rhythm of modest volume is C&C polling (the cnc family's).
"""

from __future__ import annotations

from ..alerts import Alert, Evidence
from ..fmt import fmt_bytes
from ..network import INTERNAL_EXTERNAL
from . import rule
from .common import (DNS_PORT, active_hosts, engine_table, familiarity, mean, median, num, orgs_of, past, quantile,
                     timestamp, usual_hours, where)
from .dns import dns_baseline, dns_flows, dns_rhythm, dns_today, exempt_hosts


# --- exfiltration.upload_volume -----------------------------------------------------------------------

@rule("exfiltration.upload_volume")
def upload_volume(ctx, spec) -> list[Alert]:
    """Uploads to one destination far above the host's own baseline and its peers'."""
    ref = _upload_reference(ctx, spec)
    if ref is None:
        return []
    judged = [v for v in (_judge_upload(ctx, spec, ref, u) for u in _upload_units(ctx, spec, ref)) if v]
    _crowds(ctx, spec, judged)
    best: dict = {}
    for v in judged:
        if v["src_ip"] not in best or v["rank"] > best[v["src_ip"]]["rank"]:
            best[v["src_ip"]] = v
    return [_explain_upload(ctx, spec, ref, v) for _, v in sorted(best.items())]


def _crowds(ctx, spec, judged: list[dict]) -> None:
    """Several hosts sending far beyond their day to the same organisation (or address) today are
    doing something together -- a meeting, a sync, a shared service: data leaving through one
    compromised host is individual. Their uploads there become notices, the crowd named."""
    need = max(spec.num("crowd_min_hosts"), spec.num("crowd_share") * active_hosts(ctx))
    senders: dict = {}
    for v in judged:
        senders.setdefault(v["org"] or v["dst_ip"], set()).add(v["src_ip"])
    for v in judged:
        crowd = senders[v["org"] or v["dst_ip"]]
        v["crowd"] = len(crowd)
        if len(crowd) >= need and not v["extreme"]:
            v["severity"], v["rank"] = "low", (0, v["score"])


def _upload_reference(ctx, spec):
    """The peers' yardsticks and each host's totals (small pandas tables), or None when the
    baseline has no upload byte counts."""
    b = ctx.base("edges")
    hosts_df = ctx.base_df("hosts")
    if b is None or hosts_df is None:
        return None
    # DNS is left out: its volume is dns_tunnel's, which knows the resolvers forwarding everyone's queries
    b = b.filter((b.traffic_class == INTERNAL_EXTERNAL) & (b.port != DNS_PORT))
    base = b.group_by("src_ip", "dst_ip").aggregate(base_up=b.up_bytes.sum().fill_null(0))
    base_df = base.to_pandas()
    totals = base_df.groupby("src_ip").base_up.sum()
    whole_day = hosts_df[["ip"]].merge(totals.rename("t"), left_on="ip", right_index=True, how="left").t.fillna(0)
    uploaders = whole_day[whole_day > 0]  # peers: hosts that upload at all (not printers, sensors)
    ref = {"base": base_df, "totals": totals.to_dict(), "known": set(hosts_df.ip), "n_hosts": max(len(hosts_df), 1),
           "peer_median": median(uploaders, 0.0), "peer_day_q": quantile(uploaders, spec.num("new_host_quantile")),
           "pair_q": quantile(base_df.base_up, spec.num("peer_quantile"))}
    if ref["pair_q"] <= 0 or ref["peer_day_q"] <= 0:
        return None
    base_df["org"] = orgs_of(ctx, base_df.dst_ip).to_numpy()
    per_org = base_df.dropna(subset=["org"]).groupby(["src_ip", "org"]).base_up.sum()
    ref["org_pair_q"] = quantile(per_org, spec.num("peer_quantile"), ref["pair_q"])
    ref["host_orgs"] = per_org.to_dict()                                  # (host, org) -> bytes
    ref["host_dsts"] = dict(zip(zip(base_df.src_ip, base_df.dst_ip), base_df.base_up))
    ref["sources"] = base_df.groupby("dst_ip").src_ip.nunique().to_dict()
    ref["org_sources"] = base_df.dropna(subset=["org"]).groupby("org").src_ip.nunique().to_dict()
    ref["extreme"] = spec.num("extreme_ratio") * ref["peer_day_q"]
    return ref


def _upload_units(ctx, spec, ref) -> list[dict]:
    """Candidate (host, destination) and (host, organisation) uploads today, with how much of each
    left while the host was otherwise idle. Only hosts whose whole day could pass the own-baseline cue."""
    eh = ctx.edge_hours
    t = eh.filter((eh.traffic_class == INTERNAL_EXTERNAL) & (eh.port != DNS_PORT))
    today = t.group_by("src_ip", "dst_ip", "hour").aggregate(up=t.up_bytes.sum(), down=t.down_bytes.sum(),
                                                            flows=t.flows.sum(), first_ts=t.first_ts.min())
    per_host = today.group_by("src_ip").aggregate(total=today.up.sum()).to_pandas()
    floor = spec.num("min_excess_peer_median") * ref["peer_median"]
    own = per_host.src_ip.map(ref["totals"]).fillna(0.0)
    known = per_host.src_ip.isin(ref["known"])
    ok = (per_host.total >= floor) & ((known & (per_host.total >= spec.num("own_ratio") * own))
                                      | (~known & (per_host.total >= ref["peer_day_q"])))
    cand = per_host[ok]
    if not len(cand):
        return []
    df = today.semi_join(engine_table(ctx, cand, ["src_ip"]), "src_ip").to_pandas()
    df["silent"] = _silent(ctx, spec, df, cand)
    df["silent_up"] = df.up.where(df.silent, 0)
    df["org"] = orgs_of(ctx, df.dst_ip).to_numpy()
    users_today = df.groupby("dst_ip").src_ip.nunique()
    total = dict(zip(cand.src_ip, cand.total))
    units = []
    for (src, dst), g in df.groupby(["src_ip", "dst_ip"]):
        base_up = ref["host_dsts"].get((src, dst), 0.0)
        units.append(_unit(src, dst, "address", g, total[src], base_up, base_up, ref["sources"].get(dst, 0),
                           ref["pair_q"], org=g.org.iloc[0], users=users_today.get(dst, 1)))
    if spec.t("by_organisation"):
        for (src, org), g in df.dropna(subset=["org"]).groupby(["src_ip", "org"]):
            if g.dst_ip.nunique() > 1:  # a single address is already judged at address level
                top = g.groupby("dst_ip").up.sum().idxmax()  # the address an analyst looks at first
                addr_base = sum(ref["host_dsts"].get((src, d), 0.0) for d in g.dst_ip.unique())
                units.append(_unit(src, top, "organisation", g, total[src], ref["host_orgs"].get((src, org), 0.0),
                                   addr_base, ref["org_sources"].get(org, 0), ref["org_pair_q"], org=org,
                                   users=int(users_today.reindex(g.dst_ip.unique()).max())))
    return units


def _silent(ctx, spec, df, cand):
    """Per (host, destination, hour) row: is the host otherwise idle then? Outside its working hours
    of the baseline day AND its other traffic that hour today below its working-hours level (a late
    or night worker is at the machine; a machine left on only runs its agents)."""
    import numpy as np

    uh = usual_hours(ctx, int(spec.num("margin_hours")), spec.num("core_share"))
    if uh is None or not len(df):
        return np.zeros(len(df), bool)
    e = ctx.edge_hours
    per_hour = e.semi_join(engine_table(ctx, cand, ["src_ip"]), "src_ip").group_by("src_ip", "hour").aggregate(
        flows=e.flows.sum()).to_pandas()
    hour_flows = {(s_, int(h)): int(n) for s_, h, n in per_hour.itertuples(index=False)}
    other = np.array([hour_flows.get((s_, int(h)), 0) - int(n) for s_, h, n in zip(df.src_ip, df.hour, df.flows)])
    away = np.array([s_ in uh["work"] and int(h) not in uh["work"][s_] for s_, h in zip(df.src_ip, df.hour)])
    level = df.src_ip.map(uh["level"]).fillna(np.inf).to_numpy()
    return away & (other < level)


def _unit(src, dst, level, g, total, base_up, addr_base_up, sources, pair_q, org, users) -> dict:
    """One candidate: base_up is the host's baseline upload to the unit (address or organisation),
    addr_base_up to the unit's addresses of today."""
    return {"src_ip": src, "dst_ip": dst, "level": level, "org": org, "up": float(g.up.sum()),
            "down": float(g.down.sum()), "addr_base_up": float(addr_base_up),
            "silent_up": float(g.silent_up.sum()), "flows": int(g.flows.sum()), "hours": int(g.hour.nunique()),
            "first_ts": g.first_ts.min(), "total": float(total), "base_up": float(base_up), "sources": int(sources),
            "pair_q": float(pair_q), "users_today": int(users), "addresses": int(g.dst_ip.nunique())}


def _judge_upload(ctx, spec, ref, u) -> dict | None:
    """Volume cues first (the host's own day, the peers' per-destination uploads), then where
    and when decide the severity."""
    known = u["src_ip"] in ref["known"]
    base_total = ref["totals"].get(u["src_ip"], 0.0)
    floor = spec.num("min_excess_peer_median") * ref["peer_median"]
    excess = u["up"] - u["base_up"]
    own_thr = max(spec.num("own_ratio") * base_total, floor) if known else max(ref["peer_day_q"], floor)
    peer_thr = spec.num("peer_ratio") * u["pair_q"]
    if excess <= 0 or excess < own_thr or u["up"] < peer_thr:
        return None
    org = u["org"]
    if known:  # where: an organisation the host never sent anything to; else an address it never used
        new_org = ((u["src_ip"], org) not in ref["host_orgs"]) if org else u["addr_base_up"] <= 0
        new_addr = u["addr_base_up"] <= 0
        # its sync or backup company: it already sent that company more than nearly any host
        # sends one destination in a day (providers rotate addresses: a new one is no news)
        bulk_org = bool(org) and ref["host_orgs"].get((u["src_ip"], org), 0.0) >= u["pair_q"]
    else:      # a host new today has no history: an organisation the network does not use
        new_org = familiarity(ctx, u["dst_ip"])[1] < spec.num("familiar_host_share")
        new_addr = bulk_org = False
    extreme = u["up"] >= ref["extreme"]
    off_hours = known and u["silent_up"] >= spec.num("silent_share") * u["up"]
    # a conversation that receives about as much as it sends is interactive (a video call, a
    # stream, remote work): data leaving is one-way
    one_way = u["up"] >= spec.num("one_way_ratio") * max(u["down"], 1.0)
    # High: an organisation new for the host, or an extreme volume. Medium: a new address of an
    # organisation it uses (big providers rotate addresses: weaker), or mostly at hours it is silent.
    # Low: an address -- or the company -- it already sends data to in bulk (its backup, sync or
    # sharing service), in its hours, or a two-way conversation.
    if not one_way and not extreme:
        severity = "low"
    else:
        severity = (None if (new_org or extreme) else
                    "medium" if ((new_addr and not bulk_org) or off_hours) else "low")
    score = mean(past(excess, own_thr), past(u["up"], peer_thr), float(new_org), past(u["up"], ref["extreme"]))
    return {**u, "known": known, "base_total": base_total, "excess": excess, "own_thr": own_thr,
            "peer_thr": peer_thr, "new_for_host": new_org, "new_address": new_addr, "extreme": extreme,
            "bulk_org": bulk_org,
            "off_hours": off_hours, "one_way": one_way,
            "severity": severity, "score": score,
            "rank": ({None: 2, "medium": 1, "low": 0}[severity], score)}


def _explain_upload(ctx, spec, ref, v) -> Alert:
    dst, org_unit = v["dst_ip"], v["level"] == "organisation"
    geo = ctx.geo(dst)
    target = (f"{v['addresses']} addresses of {v['org']}" + (f" ({geo['country']})" if geo.get("country") else "")
              if org_unit else f"{dst}{where(ctx, dst)}")
    new_net, rare = v["sources"] == 0, 0 < v["sources"] <= max(1.0, spec.num("rare_share") * ref["n_hosts"])
    why = []
    if v["new_for_host"]:
        why.append(f"{'an organisation' if v['org'] else 'a destination'} the host never sent anything to"
                   if v["known"] else "an organisation the network does not use (a host new today)")
    elif v["new_address"]:
        why.append(f"a new address of {v['org']}, an organisation the host "
                   f"{'already sends data to in bulk' if v['bulk_org'] else 'uses'} "
                   f"({fmt_bytes(ref['host_orgs'].get((v['src_ip'], v['org']), 0))} on its baseline day"
                   + (f", beyond the peers' {int(round(spec.num('peer_quantile') * 100))}th percentile to one "
                      f"destination: its sync or backup service)" if v["bulk_org"] else ")"))
    else:
        why.append(f"an address the host already sent data to ({fmt_bytes(v['addr_base_up'])} on its baseline day)"
                   if v["known"] else f"{v['org']}, an organisation the network uses")
    why.append("new for the network" if new_net else f"rare: {v['sources']} host(s) on the baseline day" if rare
               else f"used by {v['sources']} hosts on the baseline day")
    if not v["one_way"]:
        why.append(f"two-way: {fmt_bytes(v['down'])} came back (a call, a stream or remote work looks like this)")
    if v.get("crowd", 1) > 1:
        why.append(f"{v['crowd']} hosts uploaded far beyond their day to it today")
    if v["off_hours"]:
        why.append(f"{fmt_bytes(v['silent_up'])} of it while the host was otherwise idle, outside its working hours")
    if v["extreme"]:
        why.append(f"beyond {spec.num('extreme_ratio'):g}x what nearly any host uploads in a whole day")
    elif v["severity"] == "low":
        why.append("in its working hours: a backup or sync looks like this")
    base_txt = (f"its baseline day: {fmt_bytes(v['base_total'])} to all external destinations "
                f"({fmt_bytes(v['base_up'])} to this one)" if v["known"]
                else "a host absent from the baseline (judged against its peers only)")
    msg = (f"uploaded {fmt_bytes(v['up'])} to {target} today [{'; '.join(why)}]; {base_txt}, "
           f"peers' median {fmt_bytes(ref['peer_median'])} per day, peers' "
           f"{int(round(spec.num('peer_quantile') * 100))}th percentile to one destination {fmt_bytes(v['pair_q'])}")
    ev = [
        Evidence(f"upload to {'the organisation' if org_unit else 'the destination'} today", "bytes",
                 observed=int(v["up"]), baseline=int(v["base_up"]) if v["known"] else None,
                 reference=v["pair_q"], threshold=v["peer_thr"]),
        Evidence("upload above the host's baseline to this destination vs its whole-day external upload",
                 "bytes", observed=int(v["excess"]), baseline=int(v["base_total"]) if v["known"] else None,
                 reference=ref["peer_median"] if v["known"] else ref["peer_day_q"], threshold=v["own_thr"]),
        Evidence("destination's organisation new for the host", "flag", observed=bool(v["new_for_host"]),
                 baseline=None if not v["known"] else not v["new_for_host"]),
        Evidence("upload to these addresses today vs on the baseline day (already used: its backup, sync or "
                 "sharing service)", "bytes", observed=int(v["up"]), baseline=int(v["addr_base_up"]) if v["known"] else None),
        Evidence("upload while the host is otherwise idle, outside its working hours", "bytes", observed=int(v["silent_up"]),
                 threshold=round(spec.num("silent_share") * v["up"])),
        Evidence("upload vs what nearly any host uploads in a whole day", "bytes", observed=int(v["up"]),
                 reference=ref["peer_day_q"], threshold=ref["extreme"]),
        Evidence("hosts that used this destination", "hosts", observed=v["users_today"], baseline=v["sources"],
                 reference=ref["n_hosts"]),
        Evidence("hosts uploading far beyond their day to it today (a crowd: a meeting, a sync, a shared service)",
                 "hosts", observed=v.get("crowd", 1), threshold=spec.num("crowd_min_hosts")),
        Evidence("bytes received back from it today (data leaving is one-way)", "bytes", observed=int(v["down"]),
                 threshold=round(v["up"] / spec.num("one_way_ratio"))),
        Evidence("host's total external upload", "bytes", observed=int(v["total"]),
                 baseline=int(v["base_total"]) if v["known"] else None, reference=ref["peer_day_q"]),
        Evidence("hours with upload to this destination", "hours", observed=v["hours"]),
    ]
    return Alert(
        rule=spec, source_ip=v["src_ip"], message=msg, evidence=ev, score=v["score"], severity=v["severity"],
        destination_ip=dst, timestamp=timestamp(v["first_ts"]),
        details={"destination_level": v["level"], "destination": v["org"] if org_unit else dst, "as_org": geo.get("as_org"),
                 "country": geo.get("country"), "new_for_host": bool(v["new_for_host"]),
                 "new_address_for_host": bool(v["new_address"]), "one_way": bool(v["one_way"]),
                 "crowd_hosts": v.get("crowd", 1),
                 "new_for_network": bool(new_net), "rare_for_network": bool(rare), "off_hours": bool(v["off_hours"]),
                 "extreme": bool(v["extreme"]), "baseline_sources": v["sources"], "host_in_baseline": v["known"],
                 "flows": v["flows"]},
    )


# --- exfiltration.dns_tunnel -------------------------------------------------------------------------

@rule("exfiltration.dns_tunnel")
def dns_tunnel(ctx, spec) -> list[Alert]:
    """DNS upload far above the host's own baseline and its peers', in long queries."""
    b = dns_baseline(ctx, spec)
    hosts = _dns_per_host(ctx, spec, b)
    if hosts is None:
        return []
    peer = {"up_median": median(b.host_dns_up.values(), 0.0), "up_q": quantile(list(b.host_dns_up.values()),
                                                                                 spec.num("peer_quantile")),
            "flows_median": median(b.host_dns_flows.values(), 0.0), "query": median(hosts.q50, 0.0)}
    if peer["up_q"] <= 0:
        return []  # the baseline has no DNS byte counts (e.g. a capture without orig_bytes)
    cands = [c for c in (_judge_tunnel(spec, b, peer, r) for r in hosts.itertuples(index=False)) if c]
    cands = _not_polling(ctx, spec, cands)
    return [_explain_tunnel(ctx, spec, b, peer, c) for c in cands]


def _dns_per_host(ctx, spec, b):
    """Today, per internal host that is not a resolver: DNS flows, bytes sent, median query."""
    d = dns_flows(ctx)
    today = d.group_by("src_ip").aggregate(flows=d.count(), up=d.up_bytes.sum().fill_null(0),
                                           q50=d.up_bytes.quantile(0.5), resolvers=d.dst_ip.nunique(),
                                           first_ts=d.ts.min()).to_pandas()
    today = today[~today.src_ip.isin(exempt_hosts(ctx, spec, b))]
    return today if len(today) and b.host_dns_up else None


def _judge_tunnel(spec, b, peer, r) -> dict | None:
    """Long queries AND a multiplied volume whose excess is more than a typical host's whole day
    of DNS; or, whatever the query size, an extreme volume."""
    up, q50 = float(r.up), num(r.q50)
    own = b.host_dns_up.get(r.src_ip)
    has_base = own is not None and b.host_dns_flows.get(r.src_ip, 0) > 0
    base_up = own if has_base else peer["up_median"]
    vol_thr = max(spec.num("own_ratio") * base_up, base_up + spec.num("peer_excess") * peer["up_median"])
    size_thr = spec.num("size_ratio") * peer["query"]
    long_and_many = q50 >= size_thr and up >= vol_thr > 0
    extreme_thr = max(spec.num("volume_only_ratio") * base_up, peer["up_q"])
    extreme = up >= extreme_thr > 0
    if up <= 0 or not (long_and_many or extreme):
        return None
    # volume alone is the weaker path: half the score
    score = mean(past(up, vol_thr), past(q50, size_thr)) if long_and_many else mean(past(up, extreme_thr), 0.0)
    return {"row": r, "has_base": has_base, "base_up": base_up, "vol_thr": vol_thr if long_and_many else extreme_thr,
            "size_thr": size_thr, "score": score, "long": long_and_many, "extreme": extreme,
            "cues": "long queries, many more of them" if long_and_many else "DNS volume alone"}


def _not_polling(ctx, spec, cands) -> list[dict]:
    """Drop candidates whose DNS is a timer of modest volume: C&C polling, not data. A tunnel is
    driven by the data it carries; its queries come in bursts, not on a clock -- unless it paces
    them, and then its extreme volume still says data."""
    if not cands:
        return []
    import pandas as pd

    ips = sorted(c["row"].src_ip for c in cands)
    today = dns_today(ctx)
    top = today[today.src_ip.isin(ips)].sort_values("up_bytes").drop_duplicates("src_ip", keep="last")
    rhythm = dns_rhythm(ctx, pd.DataFrame(top[["src_ip", "dst_ip"]]))
    out = []
    for c in cands:
        pair = top[top.src_ip == c["row"].src_ip]
        bs = rhythm.get((c["row"].src_ip, pair.dst_ip.iloc[0])) if len(pair) else None
        c["rhythm_p"] = bs["rhythm_p"] if bs else 1.0
        if c["rhythm_p"] > spec.num("polling_alpha") or not c["long"] or c["extreme"]:
            out.append(c)
    return out


def _explain_tunnel(ctx, spec, b, peer, c) -> Alert:
    r = c["row"]
    e = ctx.edges
    q = e.filter((e.port == DNS_PORT) & (e.src_ip == r.src_ip))
    mine = q.group_by("dst_ip").aggregate(up=q.up_bytes.sum()).to_pandas().sort_values("up", ascending=False)
    res_txt = []
    for x in mine.head(3).itertuples(index=False):
        kind = ("company DNS server" if x.dst_ip in b.dns_servers else "a resolver of the network"
                if x.dst_ip in b.established else "not a resolver of the network")
        if x.dst_ip not in b.host_resolvers.get(r.src_ip, ()):
            kind += ", new for the host"
        res_txt.append(f"{x.dst_ip}{where(ctx, x.dst_ip)} [{kind}] {fmt_bytes(x.up)}")
    base_flows = b.host_dns_flows.get(r.src_ip, 0)
    base_txt = (f"its baseline day: {fmt_bytes(c['base_up'])} in {base_flows:,} queries "
                f"(today {r.up / max(c['base_up'], 1):.1f}x that)" if c["has_base"]
                else "no DNS from it on the baseline day (judged against its peers only)")
    msg = (f"sent {fmt_bytes(r.up)} in {int(r.flows):,} DNS queries (median {fmt_bytes(r.q50)} each) "
           f"via {'; '.join(res_txt) or 'port 53'} today; {base_txt}; peers' median "
           f"{fmt_bytes(peer['up_median'])} per day, median query {fmt_bytes(peer['query'])}")
    ev = [
        Evidence("DNS bytes sent (port 53, all resolvers)", "bytes", observed=int(r.up),
                 baseline=int(c["base_up"]) if c["has_base"] else None, reference=peer["up_median"],
                 threshold=c["vol_thr"]),
        Evidence("DNS flows", "flows", observed=int(r.flows), baseline=base_flows if c["has_base"] else None,
                 reference=peer["flows_median"]),
        Evidence("DNS query size: today's median bytes sent per query (reference: the network's median today)",
                 "bytes", observed=num(r.q50), baseline=round(c["base_up"] / base_flows, 1) if base_flows else None,
                 reference=peer["query"], threshold=c["size_thr"]),
        Evidence("chance of so regular query times under random lookups (C&C polling, not data)", "probability",
                 observed=float(f"{c['rhythm_p']:.3g}"), threshold=spec.num("polling_alpha")),
        Evidence("resolvers used today", "addresses", observed=int(r.resolvers)),
    ]
    return Alert(
        rule=spec, source_ip=r.src_ip, message=msg, evidence=ev, score=c["score"],
        destination_ip=mine.dst_ip.iloc[0] if len(mine) else None, timestamp=timestamp(r.first_ts),
        example_port=DNS_PORT,
        details={"resolvers": mine.head(5).dst_ip.tolist(), "host_in_baseline": c["has_base"], "cues": c["cues"]},
    )
