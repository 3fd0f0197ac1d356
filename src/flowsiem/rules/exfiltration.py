"""exfiltration rules: data leaving the network, seen in flow records (see rules.yaml).

Both rules judge a host against two yardsticks learned from the baseline day, and alert only
when several independent cues agree:

  * its OWN baseline day (how much it uploaded, to where, how much DNS it sent), and
  * its PEERS: the population of internal hosts (robust quantiles and medians of their daily
    uploads, of one host's daily upload to one destination, of their DNS traffic and query size).

Rules
  exfiltration.upload_volume  one destination (an address, or the addresses of one AS
                              organisation) receives today far more than the host uploaded to the
                              whole internet on its baseline day, far more than peers send to one
                              destination, and the destination is new or rare for the network, or
                              received more than any host ever sent it.
  exfiltration.dns_tunnel     a host's DNS upload (port 53, through any resolver) is a multiple of
                              its own baseline, the added volume alone exceeds a typical host's
                              whole day of DNS, and its queries are clearly longer than the
                              network's (a tunnel encodes data in the query names). The network's
                              own DNS servers and forwarders are never judged.

Heavy work is a handful of Ibis aggregations over ctx.edge_hours / ctx.flows and the baseline
tables; the scoring loops run over the (small) per-host and per-candidate-destination results.
"""

from __future__ import annotations

import math

from ..alerts import Alert, Evidence
from ..network import INTERNAL_EXTERNAL, INTERNAL_INTERNAL
from . import rule

DNS_PORT = 53  # a protocol fact: DNS is port 53 (UDP and TCP)


# --- small helpers -------------------------------------------------------------------------------

def fmt_bytes(n) -> str:
    """1234567 -> '1.2 MB' (decimal units, as network tools print them)."""
    try:
        n = float(n)
    except (TypeError, ValueError):
        return "?"
    if n != n:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n}"


def _ratio_score(observed: float, threshold: float, span: float = 10.0) -> float:
    """0 at the threshold, 1 at `span` times it (log scale); how far past a threshold we are."""
    if threshold is None or threshold <= 0 or observed is None or observed != observed:
        return 1.0 if observed and observed > 0 else 0.0
    if observed <= threshold:
        return 0.0
    return min(1.0, math.log(observed / threshold) / math.log(span))


def _num(v, default=0.0) -> float:
    """A pandas/numpy scalar as float, NaN/None -> default."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return default if f != f else f


def _quantile(values, q: float) -> float:
    import numpy as np

    v = np.asarray(list(values), dtype=float)
    v = v[~np.isnan(v)]
    return float(np.quantile(v, q)) if v.size else 0.0


def _median(values) -> float:
    return _quantile(values, 0.5)


def _where(ctx, ip: str) -> str:
    """'142.250.184.243 (GOOGLE, US)' -- as much as enrichment knows."""
    g = ctx.geo(ip)
    parts = [str(x) for x in (g.get("as_org"), g.get("country"))
             if x is not None and x == x and str(x) and str(x) not in ("private", "unknown")]
    return f"{ip} ({', '.join(parts)})" if parts else ip


def _org_of(ctx, ip: str):
    g = ctx.geo(ip)
    org = g.get("as_org")
    if org is not None and org == org and str(org):
        return str(org)
    asn = g.get("asn")
    if asn is not None and asn == asn:
        return f"AS{int(asn)}"
    return None


def _ip_org_table(ctx):
    """Engine table ip -> org (AS organisation, else 'AS<n>'); None without any enrichment."""
    import pandas as pd
    import pyarrow as pa

    info = ctx.ip_info
    if info is None or len(info) == 0 or "as_org" not in info.columns:
        return None
    org = info["as_org"].astype(object).where(info["as_org"].notna(), None)
    if "asn" in info.columns:
        asn = info["asn"].map(lambda a: f"AS{int(a)}" if a is not None and a == a else None)
        org = org.where(org.notna(), asn)
    df = pd.DataFrame({"ip": info.index.astype(str), "org": org.values}).dropna()
    if len(df) == 0:
        return None
    return ctx.engine.from_arrow(pa.Table.from_pandas(df, preserve_index=False))


# --- exfiltration.upload_volume ----------------------------------------------------------------------

@rule("exfiltration.upload_volume")
def upload_volume(ctx, spec) -> list[Alert]:
    """Uploads to one destination far above the host's own baseline and its peers'."""
    base_edges = ctx.base("edges")
    hosts_df = ctx.base_df("hosts")
    if base_edges is None or hosts_df is None:
        return []
    own_ratio = float(spec.t("own_ratio"))
    floor_ratio = float(spec.t("min_excess_peer_median"))
    peer_q = float(spec.t("peer_quantile"))
    peer_ratio = float(spec.t("peer_ratio"))
    dest_ratio = float(spec.t("dest_ratio"))
    rare_share = float(spec.t("rare_share"))
    new_host_q = float(spec.t("new_host_quantile"))
    by_org = bool(spec.t("by_organisation"))

    # Today: per (host, destination) over the day, from the per-(edge, hour) aggregate.
    # DNS (port 53) is left out: its volume is dns_tunnel's, which knows the resolvers that
    # forward everyone's queries and must not be judged on it.
    eh = ctx.edge_hours
    t = eh.filter((eh.traffic_class == INTERNAL_EXTERNAL) & (eh.port != DNS_PORT))
    today = t.group_by("src_ip", "dst_ip").aggregate(
        up=t.up_bytes.sum(), flows=t.flows.sum(), hours=t.hour.nunique(),
        first_ts=t.first_ts.min(), last_ts=t.last_ts.max())
    # Baseline: per (host, destination).
    b = base_edges.filter((base_edges.traffic_class == INTERNAL_EXTERNAL) & (base_edges.port != DNS_PORT))
    base = b.group_by("src_ip", "dst_ip").aggregate(base_up=b.up_bytes.sum().fill_null(0), base_flows=b.flows.sum())

    # Per host: today's and the baseline's total external upload (one small table).
    th = today.group_by("src_ip").aggregate(total=today.up.sum())
    bh = base.group_by(src=base.src_ip).aggregate(base_total=base.base_up.sum())
    hosts = th.left_join(bh, th.src_ip == bh.src).select("src_ip", "total", "base_total").to_pandas()
    if len(hosts) == 0:
        return []
    known = set(hosts_df.ip)
    base_totals = hosts_df[["ip"]].merge(
        bh.to_pandas().rename(columns={"src": "ip"}), on="ip", how="left").base_total.fillna(0)
    n_hosts = max(len(known), 1)
    uploaders = base_totals[base_totals > 0]            # peers: hosts that upload at all (not printers, sensors)
    peer_median = _median(uploaders)                    # a typical host's whole day of external upload
    peer_host_q = _quantile(uploaders, new_host_q)      # nearly every host's whole day
    pair_q = _num(base.aggregate(q=base.base_up.quantile(peer_q)).to_pandas().q.iloc[0])
    rare_hosts = max(1.0, rare_share * n_hosts)
    if pair_q <= 0 or peer_host_q <= 0:
        return []  # the baseline has no upload byte counts: nothing to judge by

    hosts["base_total"] = hosts.base_total.fillna(0).astype(float)
    hosts["known"] = hosts.src_ip.isin(known)
    floor = floor_ratio * peer_median
    # A necessary condition for any destination's excess to pass (excess <= today's total):
    cand = hosts[(hosts.total >= floor)
                 & ((hosts.known & (hosts.total >= own_ratio * hosts.base_total))
                    | (~hosts.known & (hosts.total >= peer_host_q)))]
    if len(cand) == 0:
        return []
    cand_ips = sorted(cand.src_ip)
    host_row = hosts.set_index("src_ip")

    # Candidate hosts' destinations today, with their baseline and the destination's popularity.
    tc = today.filter(today.src_ip.isin(cand_ips))
    pairs = tc.left_join(base, (tc.src_ip == base.src_ip) & (tc.dst_ip == base.dst_ip))
    pairs = pairs.select(tc.src_ip, tc.dst_ip, tc.up, tc.flows, tc.hours, tc.first_ts, tc.last_ts,
                         base_up=base.base_up.fill_null(0))
    dest = b.group_by(ip=b.dst_ip).aggregate(sources=b.src_ip.nunique())
    dest_max = base.group_by(ip=base.dst_ip).aggregate(max_host_up=base.base_up.max())
    dest = dest.join(dest_max, "ip")
    pairs = pairs.left_join(dest, pairs.dst_ip == dest.ip).drop("ip")
    # Hosts using each destination today (popularity today, e.g. a CDN's new address).
    users_today = today.group_by(ip=today.dst_ip).aggregate(users_today=today.src_ip.nunique())
    pairs = pairs.left_join(users_today, pairs.dst_ip == users_today.ip).drop("ip")
    pdf = pairs.to_pandas()
    if len(pdf) == 0:
        return []
    pdf["base_up"] = pdf.base_up.fillna(0).astype(float)
    pdf["sources"] = pdf.sources.fillna(0).astype(int)
    pdf["max_host_up"] = pdf.max_host_up.fillna(0).astype(float)
    pdf["unit"] = pdf.dst_ip
    pdf["level"] = "address"
    units = [pdf]

    if by_org:
        org_t = _ip_org_table(ctx)
        if org_t is not None:
            bo = base.join(org_t, base.dst_ip == org_t.ip)
            per = bo.group_by("src_ip", "org").aggregate(base_up=bo.base_up.sum())
            org_stats = per.group_by("org").aggregate(sources=per.src_ip.nunique(), max_host_up=per.base_up.max())
            org_pair_q = _num(per.aggregate(q=per.base_up.quantile(peer_q)).to_pandas().q.iloc[0])
            pdf["org"] = [_org_of(ctx, ip) for ip in pdf.dst_ip]
            orgs = sorted({o for o in pdf.org if o})
            if orgs:
                ostats = org_stats.filter(org_stats.org.isin(orgs)).to_pandas().set_index("org")
                own = per.filter(per.src_ip.isin(cand_ips) & per.org.isin(orgs)).to_pandas()
                own = own.set_index(["src_ip", "org"]).base_up
                g = pdf[pdf.org.notna()].groupby(["src_ip", "org"], as_index=False).agg(
                    up=("up", "sum"), flows=("flows", "sum"), hours=("hours", "max"),
                    first_ts=("first_ts", "min"), last_ts=("last_ts", "max"),
                    addresses=("dst_ip", "nunique"), users_today=("users_today", "max"),
                    dst_ip=("dst_ip", lambda s: s.iloc[0]))
                g = g[g.addresses > 1]  # a single address is already judged at address level
                if len(g):
                    # the address that received the most is the one an analyst looks at first
                    top = pdf[pdf.org.notna()].sort_values("up", ascending=False).drop_duplicates(["src_ip", "org"])
                    g = g.drop(columns="dst_ip").merge(top[["src_ip", "org", "dst_ip"]], on=["src_ip", "org"])
                    g["base_up"] = [_num(own.get((s, o), 0.0)) for s, o in zip(g.src_ip, g.org)]
                    g["sources"] = [int(_num(ostats.sources.get(o, 0))) for o in g.org]
                    g["max_host_up"] = [_num(ostats.max_host_up.get(o, 0.0)) for o in g.org]
                    g["unit"] = g.org
                    g["level"] = "organisation"
                    g["pair_q"] = org_pair_q
                    units.append(g)
    import pandas as pd

    allu = pd.concat(units, ignore_index=True)
    if "pair_q" not in allu.columns:
        allu["pair_q"] = pair_q
    allu["pair_q"] = allu.pair_q.fillna(pair_q)

    # Score every (host, unit); keep the strongest per host.
    best: dict[str, tuple] = {}
    for r in allu.itertuples(index=False):
        h = host_row.loc[r.src_ip]
        base_total = float(h.base_total)
        is_known = bool(h.known)
        up = float(r.up)
        excess = up - float(r.base_up)
        # cue 1: own baseline (or, for a new host, nearly every peer's whole day)
        own_thr = max(own_ratio * base_total, floor) if is_known else max(peer_host_q, floor)
        if excess < own_thr or excess <= 0:
            continue
        # cue 2: peers' uploads to one destination
        peer_thr = peer_ratio * float(r.pair_q)
        if up < peer_thr or peer_thr <= 0:
            continue
        # cue 3: the destination -- new or rare for the network, or more than any host ever sent it
        new_net = r.sources == 0
        rare = 0 < r.sources <= rare_hosts
        dest_thr = dest_ratio * float(r.max_host_up)
        beyond_any = up >= dest_thr and r.max_host_up > 0
        if not (new_net or rare or beyond_any):
            continue
        score = (_ratio_score(excess, own_thr) + _ratio_score(up, peer_thr)
                 + (1.0 if new_net else 0.7 if rare else _ratio_score(up, dest_thr))) / 3
        key = r.src_ip
        if key not in best or score > best[key][0]:
            best[key] = (score, r, own_thr, peer_thr, dest_thr, new_net, rare, excess)

    alerts = []
    for src, (score, r, own_thr, peer_thr, dest_thr, new_net, rare, excess) in sorted(best.items()):
        h = host_row.loc[src]
        base_total, is_known = float(h.base_total), bool(h.known)
        dst = r.dst_ip
        geo = ctx.geo(dst)
        org_unit = r.level == "organisation"
        if org_unit:
            target = f"{int(r.addresses)} addresses of {r.unit}"
            if geo.get("country"):
                target += f" ({geo['country']})"
        else:
            target = _where(ctx, dst)
        novelty = []
        if r.base_up <= 0:
            novelty.append("new for the host")
        if new_net:
            novelty.append("new for the network")
        elif rare:
            novelty.append(f"rare: {int(r.sources)} host(s) on the baseline day")
        else:
            novelty.append(f"used by {int(r.sources)} hosts on the baseline day, none sent more than "
                           f"{fmt_bytes(r.max_host_up)}")
        if is_known:
            base_txt = (f"its baseline day: {fmt_bytes(base_total)} to all external destinations "
                        f"({fmt_bytes(r.base_up)} to this one)")
        else:
            base_txt = "a host absent from the baseline (judged against its peers only)"
        msg = (f"uploaded {fmt_bytes(r.up)} to {target} today [{'; '.join(novelty)}]; {base_txt}, "
               f"peers' median {fmt_bytes(peer_median)} per day, peers' {int(round(peer_q * 100))}th "
               f"percentile to one destination {fmt_bytes(r.pair_q)}")
        ev = [
            Evidence(f"upload to {'the organisation' if org_unit else 'the destination'} today", "bytes",
                     observed=int(r.up), baseline=int(r.base_up) if is_known else None,
                     reference=float(r.pair_q), threshold=float(peer_thr)),
            Evidence("upload above the host's baseline to this destination vs its whole-day external upload",
                     "bytes", observed=int(excess), baseline=int(base_total) if is_known else None,
                     reference=float(peer_median if is_known else peer_host_q), threshold=float(own_thr)),
            Evidence("upload to this destination today vs the largest one host sent it on the baseline day",
                     "bytes", observed=int(r.up), baseline=int(r.max_host_up),
                     threshold=float(dest_thr) if r.max_host_up > 0 else None),
            Evidence("hosts that used this destination", "hosts", observed=int(_num(r.users_today, 1)),
                     baseline=int(r.sources), reference=n_hosts, threshold=float(rare_hosts)),
            Evidence("host's total external upload", "bytes", observed=int(h.total),
                     baseline=int(base_total) if is_known else None, reference=float(peer_host_q)),
            Evidence("hours with upload to this destination", "hours", observed=int(r.hours)),
        ]
        alerts.append(Alert(
            rule=spec, source_ip=src, message=msg, evidence=ev, score=score, destination_ip=dst,
            timestamp=r.first_ts if r.first_ts == r.first_ts else None,
            details={"destination_level": r.level, "destination": r.unit, "as_org": geo.get("as_org"),
                     "country": geo.get("country"), "new_for_host": bool(r.base_up <= 0),
                     "new_for_network": bool(new_net), "rare_for_network": bool(rare),
                     "baseline_sources": int(r.sources), "host_in_baseline": is_known,
                     "first_ts": r.first_ts, "last_ts": r.last_ts, "flows": int(r.flows)},
        ))
    return alerts


# --- exfiltration.dns_tunnel ---------------------------------------------------------------------

def _resolver_hosts(ctx) -> set:
    """Internal addresses that act as DNS servers: internal servers offering port 53, internal
    resolvers of the baseline, and internal hosts other internal hosts query on port 53 today."""
    out = {ip for ip, _proto, port in ctx.server_services if port == DNS_PORT}
    res = (ctx.profile.get("hosts") or {}).get("resolvers") or []
    info = ctx.ip_info
    for ip in res:
        if ip in info.index and bool(info.loc[ip, "internal"]):
            out.add(ip)
    e = ctx.edges
    q = e.filter((e.port == DNS_PORT) & (e.traffic_class == INTERNAL_INTERNAL))
    served = q.group_by(ip=q.dst_ip).aggregate(clients=q.src_ip.nunique()).to_pandas()
    out.update(served[served.clients >= 2].ip)
    return out


@rule("exfiltration.dns_tunnel")
def dns_tunnel(ctx, spec) -> list[Alert]:
    """DNS upload far above the host's own baseline and its peers', in long queries."""
    own_ratio = float(spec.t("own_ratio"))
    peer_excess = float(spec.t("peer_excess"))
    size_ratio = float(spec.t("size_ratio"))
    new_host_q = float(spec.t("new_host_quantile"))
    volume_only_ratio = float(spec.t("volume_only_ratio"))
    base_edges = ctx.base("edges")
    if base_edges is None:
        return []
    exempt = _resolver_hosts(ctx)

    # Today, per internal host: DNS flows, bytes sent and the median query size (flow level).
    f = ctx.flows
    d = f.filter((f.port == DNS_PORT) & f.src_internal)
    today = d.group_by("src_ip").aggregate(
        flows=d.count(), up=d.up_bytes.sum().fill_null(0), q50=d.up_bytes.quantile(0.5),
        resolvers=d.dst_ip.nunique(), first_ts=d.ts.min(), last_ts=d.ts.max())
    be = base_edges.filter(base_edges.port == DNS_PORT)
    base = be.group_by(src=be.src_ip).aggregate(base_flows=be.flows.sum(), base_up=be.up_bytes.sum().fill_null(0))
    df = today.left_join(base, today.src_ip == base.src).drop("src").to_pandas()
    if len(df) == 0:
        return []
    bdf = base.to_pandas()
    bdf = bdf[~bdf.src.isin(exempt)]
    df = df[~df.src_ip.isin(exempt)].copy()
    if len(df) == 0 or len(bdf) == 0:
        return []
    hosts_df = ctx.base_df("hosts")
    known = set(hosts_df.ip) if hosts_df is not None else set()

    peer_up_median = _median(bdf.base_up)              # a typical host's whole day of DNS upload
    peer_up_q = _quantile(bdf.base_up, new_host_q)     # nearly every host's whole day
    if peer_up_q <= 0:
        return []  # the baseline has no DNS byte counts (e.g. a capture without orig_bytes): nothing to judge by
    peer_flows_median = _median(bdf.base_flows)
    peer_query = _median(df.q50)                       # the network's typical query size today
    base_query = _median((bdf.base_up / bdf.base_flows.clip(lower=1)))

    df["base_up"] = df.base_up.fillna(0).astype(float)
    df["base_flows"] = df.base_flows.fillna(0).astype(float)
    size_thr = size_ratio * peer_query
    cands = []
    for r in df.itertuples(index=False):
        up, q50 = float(r.up), _num(r.q50)
        if up <= 0:
            continue
        has_base = r.base_flows > 0 and r.src_ip in known
        own_base = r.base_up if has_base else peer_up_median  # a host without DNS baseline: its peers'
        if has_base:
            vol_thr = max(own_ratio * r.base_up, r.base_up + peer_excess * peer_up_median)
        else:
            vol_thr = max(peer_up_q, peer_excess * peer_up_median)
        # Long queries and a multiplied volume; or, whatever the query size, a volume so far past
        # the host's own day and above nearly every peer's whole day that nothing ordinary explains it.
        long_and_many = q50 >= size_thr and up >= vol_thr > 0
        extreme_thr = max(volume_only_ratio * own_base, peer_up_q)
        extreme = up >= extreme_thr > 0
        if not (long_and_many or extreme):
            continue
        if long_and_many:
            score = (_ratio_score(up, vol_thr) + _ratio_score(q50, size_thr, span=4.0)) / 2
        else:
            score = 0.5 * _ratio_score(up, extreme_thr)
        cands.append((r, has_base, vol_thr if long_and_many else extreme_thr, score,
                      "long queries, many more of them" if long_and_many else "DNS volume alone"))
    if not cands:
        return []

    # Where the DNS went: per (host, resolver) for the flagged hosts only.
    ips = sorted(c[0].src_ip for c in cands)
    e = ctx.edges
    q = e.filter((e.port == DNS_PORT) & e.src_ip.isin(ips))
    per_res = q.group_by("src_ip", "dst_ip").aggregate(flows=q.flows.sum(), up=q.up_bytes.sum()).to_pandas()
    bq = base_edges.filter((base_edges.port == DNS_PORT) & base_edges.src_ip.isin(ips))
    base_pairs = set(map(tuple, bq.select("src_ip", "dst_ip").distinct().to_pandas().values.tolist()))
    net_resolvers = set((ctx.profile.get("hosts") or {}).get("resolvers") or []) | exempt

    alerts = []
    for r, has_base, vol_thr, score, why in cands:
        mine = per_res[per_res.src_ip == r.src_ip].sort_values("up", ascending=False)
        res_txt, top = [], None
        for x in mine.head(3).itertuples(index=False):
            top = top or x.dst_ip
            kind = []
            if x.dst_ip in exempt:
                kind.append("company DNS server")
            elif x.dst_ip in net_resolvers:
                kind.append("a resolver of the network")
            else:
                kind.append("not a resolver of the network")
            if (r.src_ip, x.dst_ip) not in base_pairs:
                kind.append("new for the host")
            res_txt.append(f"{_where(ctx, x.dst_ip)} [{', '.join(kind)}] {fmt_bytes(x.up)}")
        own_q = r.base_up / r.base_flows if r.base_flows > 0 else None
        if has_base:
            base_txt = (f"its baseline day: {fmt_bytes(r.base_up)} in {int(r.base_flows):,} queries "
                        f"(today {r.up / max(r.base_up, 1):.1f}x that)")
        else:
            base_txt = "no DNS from it on the baseline day (judged against its peers only)"
        msg = (f"sent {fmt_bytes(r.up)} in {int(r.flows):,} DNS queries (median {fmt_bytes(r.q50)} each) "
               f"via {'; '.join(res_txt) or 'port 53'} today; {base_txt}; peers' median "
               f"{fmt_bytes(peer_up_median)} per day, median query {fmt_bytes(peer_query)}")
        ev = [
            Evidence("DNS bytes sent (port 53, all resolvers)", "bytes", observed=int(r.up),
                     baseline=int(r.base_up) if has_base else None, reference=float(peer_up_median),
                     threshold=float(vol_thr)),
            Evidence("DNS flows", "flows", observed=int(r.flows),
                     baseline=int(r.base_flows) if has_base else None, reference=float(peer_flows_median)),
            Evidence("DNS query size: today's median bytes sent per query (baseline: the host's mean "
                     "on its baseline day; reference: the network's median today)", "bytes", observed=float(_num(r.q50)),
                     baseline=float(own_q) if own_q is not None else None, reference=float(peer_query),
                     threshold=float(size_thr)),
            Evidence("resolvers used today", "addresses", observed=int(r.resolvers)),
        ]
        alerts.append(Alert(
            rule=spec, source_ip=r.src_ip, message=msg, evidence=ev, score=score, destination_ip=top,
            timestamp=r.first_ts if r.first_ts == r.first_ts else None, example_port=DNS_PORT,
            details={"resolvers": mine.head(5).dst_ip.tolist(), "host_in_baseline": has_base, "cues": why,
                     "network_baseline_mean_query_bytes": base_query,
                     "first_ts": r.first_ts, "last_ts": r.last_ts},
        ))
    return alerts
