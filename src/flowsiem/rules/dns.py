"""What the network's DNS looks like, learned from the baseline day and read from the test day:
shared by the cnc rules (C&C over DNS) and exfiltration.dns_tunnel.

  * the resolvers the network uses: the company's DNS servers (internal servers offering port
    53) and any resolver several hosts share (Elastic retired its fixed "DNS to the internet"
    rule for its false positives: which resolvers are normal is learned per network);
  * the hosts that are resolvers themselves (internal DNS servers; hosts that on the baseline
    day queried many distinct addresses on port 53: forwarders and recursors; internal
    addresses several hosts query today) -- never judged: their upstream queries are forwarding;
  * each host's resolvers, DNS volume and share of DNS in its traffic;
  * the network's usual DNS query size (bytes sent per DNS flow).

Thresholds (each cnc rule and dns_tunnel carries them, so each can be tuned on its own):
forwarder_min_destinations, forwarder_z, established_min_hosts, established_min_share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..network import INTERNAL_EXTERNAL, INTERNAL_INTERNAL
from .beacon import beacon_score, beacon_stats, poisson_dispersion_p
from .common import DNS_PORT, binomial_tail, engine_table, is_internal, median, quantile, row_mask, upper_fence

FROM_INTERNAL = (INTERNAL_INTERNAL, INTERNAL_EXTERNAL)
BASELINE_KEYS = ("forwarder_min_destinations", "forwarder_z", "established_min_hosts", "established_min_share")
NO_RHYTHM = {"score": 0.0, "timing": 0.0, "gap_median_s": None, "gap_dispersion": None, "rhythm_p": 1.0, "events": 0}


@dataclass
class DnsBaseline:
    dns_servers: set              # internal servers offering port 53
    resolver_hosts: set           # hosts exempt: DNS servers and forwarders learned from the baseline
    established: set              # resolvers the network uses (DNS servers + shared by several hosts)
    seen: set                     # every address any internal host (forwarders included) queried on 53
    host_resolvers: dict          # host -> set of resolvers it used on the baseline day
    pair_flows: dict              # (host, resolver) -> baseline DNS flows
    host_dns_flows: dict          # host -> baseline DNS flows
    host_dns_up: dict             # host -> baseline DNS bytes sent
    host_flows: dict              # host -> baseline flows of any kind
    host_dns_share: dict          # host -> baseline share of DNS in its flows
    resolver_users: dict          # resolver -> number of client hosts using it on the baseline day
    query_bytes: float            # the network's typical DNS query size (bytes sent per flow)
    dns_share: float              # the network's share of DNS in its hosts' flows
    host_dns_up_median: float     # the median client's DNS bytes sent on the baseline day
    clients: int                  # hosts that used DNS on the baseline day
    forwarder_threshold: float    # distinct port-53 destinations from which a host is a resolver


def dns_baseline(ctx, spec) -> DnsBaseline:
    """The network's DNS habits on the baseline day (small tables, pandas), once per run."""
    th = tuple(spec.num(k) for k in BASELINE_KEYS)
    return ctx.cached(("dns.baseline", th), lambda: _learn(ctx, *th))


def _learn(ctx, fwd_min, fwd_z, est_hosts, est_share) -> DnsBaseline:
    import pandas as pd

    edges = ctx.base_df("edges")
    if edges is None:
        edges = pd.DataFrame(columns=["src_ip", "dst_ip", "proto", "port", "traffic_class", "flows", "up_bytes"])
    dns = edges[(edges.port == DNS_PORT) & edges.traffic_class.isin(FROM_INTERNAL)]
    dns = dns[row_mask(dns, (ctx.model.is_unicast_host(ip) for ip in dns.dst_ip))]
    dns = dns.groupby(["src_ip", "dst_ip"], as_index=False)[["flows", "up_bytes"]].sum(min_count=1)
    dns_servers = {ip for ip, _proto, port in ctx.server_services if port == DNS_PORT}

    per_host_dst = dns.groupby("src_ip").dst_ip.nunique() if len(dns) else pd.Series(dtype=float)
    fence = upper_fence(per_host_dst.values, fwd_z) if len(per_host_dst) else math.inf
    fwd_thr = max(fwd_min, fence)
    resolver_hosts = dns_servers | set(per_host_dst[per_host_dst >= fwd_thr].index)

    clients = dns[~dns.src_ip.isin(resolver_hosts)]
    users = clients.groupby("dst_ip").src_ip.nunique() if len(clients) else pd.Series(dtype=float)
    n_clients = int(clients.src_ip.nunique()) if len(clients) else 0
    established = dns_servers | set(users[users >= max(est_hosts, est_share * n_clients)].index)

    hd = clients.groupby("src_ip").agg(flows=("flows", "sum"), up=("up_bytes", "sum"))
    hh = ctx.base_df("host_hours")
    host_flows = hh.groupby("src_ip").flows.sum().to_dict() if hh is not None and len(hh) else {}
    tot = sum(host_flows.get(h, 0) for h in hd.index)
    return DnsBaseline(
        dns_servers=dns_servers,
        resolver_hosts=resolver_hosts,
        established=established,
        seen=set(dns.dst_ip),
        host_resolvers={h: set(g) for h, g in clients.groupby("src_ip").dst_ip} if len(clients) else {},
        pair_flows={(s, d): int(f) for s, d, f in zip(clients.src_ip, clients.dst_ip, clients.flows)},
        host_dns_flows={h: int(v) for h, v in hd.flows.items()},
        host_dns_up={h: float(v) for h, v in hd.up.items()},
        host_flows=host_flows,
        host_dns_share={h: float(v) / host_flows[h] for h, v in hd.flows.items() if host_flows.get(h)},
        resolver_users={d: int(n) for d, n in users.items()},
        query_bytes=median(clients.up_bytes / clients.flows.clip(lower=1)),
        dns_share=float(hd.flows.sum() / tot) if tot else float("nan"),
        host_dns_up_median=median(hd.up),
        clients=n_clients,
        forwarder_threshold=fwd_thr,
    )


def dns_today(ctx):
    """Test-day DNS conversations of internal hosts: per (src, dst), in the engine, then pandas."""
    def build():
        e = ctx.edge_hours
        t = e.filter((e.port == DNS_PORT) & e.traffic_class.isin(list(FROM_INTERNAL)))
        t = t.group_by("src_ip", "dst_ip").aggregate(
            flows=t.flows.sum(), up_bytes=t.up_bytes.sum(), down_bytes=t.down_bytes.sum(),
            first_ts=t.first_ts.min(), last_ts=t.last_ts.max(), hours=t.hour.nunique(),
        )
        df = t.to_pandas()
        return df[row_mask(df, (ctx.model.is_unicast_host(ip) for ip in df.dst_ip))].reset_index(drop=True)
    return ctx.cached(("dns.today",), build)


def exempt_hosts(ctx, spec, b: DnsBaseline) -> set:
    """Hosts never judged: the baseline's DNS servers and forwarders, and any internal address
    that several internal hosts query on port 53 today (a resolver)."""
    today = dns_today(ctx)
    internal = today[row_mask(today, (is_internal(ctx, d) for d in today.dst_ip))]
    users = internal.groupby("dst_ip").src_ip.nunique()
    need = max(spec.num("established_min_hosts"), spec.num("established_min_share") * today.src_ip.nunique())
    return b.resolver_hosts | set(users[users >= need].index)


def dns_flows(ctx):
    """The test day's DNS flows from internal hosts (an Ibis expression)."""
    f = ctx.flows
    return f.filter((f.port == DNS_PORT) & f.src_internal)


def dns_events(flows):
    """DNS flows of a pair collapsed to one event per second (a lookup often sends A and AAAA
    queries, or retries, within the same second: one poll, as RITA counts unique timestamps)."""
    sec = flows.ts.epoch_seconds().floor()  # some engines return fractional seconds
    g = flows.mutate(sec=sec).group_by("src_ip", "dst_ip", "sec")
    return g.aggregate(ts=flows.ts.min(), hour=flows.hour.min(), up_bytes=flows.up_bytes.sum())


def dns_events_today(ctx):
    """The test day's DNS events of internal hosts (dns_events of dns_flows), kept in the engine
    once: the rhythm, follow-up and lonely-lookup tests of several rules all start from them,
    and grouping the day's DNS by second is the costly part of each."""
    return ctx.cached(("dns.events",), lambda: ctx.engine.materialize(dns_events(dns_flows(ctx))))


def connection_seconds(ctx):
    """(src_ip, hour, sec): the seconds in which each internal host opened a connection other
    than DNS, kept in the engine once: every test of whether a lookup was followed by the
    connection it resolved (lonely_events, followed_share) looks them up."""
    def build():
        f = ctx.flows
        c = f.filter((f.port != DNS_PORT).fill_null(True) & f.src_internal)
        return ctx.engine.materialize(c.select("src_ip", "hour", sec=c.ts.epoch_seconds().floor()).distinct())
    return ctx.cached(("dns.connection_seconds",), build)


def tunnel_like(b: DnsBaseline, host: str, query_bytes: float, host_up_today: float, spec) -> tuple[bool, float, float]:
    """Volume, not rhythm: queries longer than the network's AND a DNS upload an order of
    magnitude beyond the host's own and above nearly every host's day is DNS tunnelling
    (exfiltration.dns_tunnel's business, which keeps a tunnel on a clock only at such a volume).
    Below it, a rhythm of longish queries is C&C with encoded names: the cnc rules keep it.
    Returns (tunnel, query ratio, volume ratio)."""
    q_ratio = query_bytes / b.query_bytes if b.query_bytes and b.query_bytes == b.query_bytes else 0.0
    base_up = b.host_dns_up.get(host) or b.host_dns_up_median or 0.0
    v_ratio = host_up_today / base_up if base_up and base_up == base_up else math.inf
    peers_q = quantile(list(b.host_dns_up.values()), spec.num("tunnel_peer_quantile")) if b.host_dns_up else 0.0
    return (q_ratio >= spec.num("tunnel_query_ratio") and v_ratio >= spec.num("tunnel_volume_ratio")
            and host_up_today >= peers_q), q_ratio, v_ratio


def dns_rhythm(ctx, pairs_df, events=None) -> dict:
    """(src, dst) -> RITA beacon score and sub-scores, median gap, gap dispersion, events (polls:
    distinct seconds) and the chance of so regular gaps under random arrivals, for the given
    pairs (statistics in the engine). Of the day's DNS events by default, each pair computed
    once per run whichever rules ask; or of `events` (a subset of dns_events, such as the
    lonely ones)."""
    if pairs_df is None or len(pairs_df) == 0:
        return {}
    keys = set(zip(pairs_df.src_ip, pairs_df.dst_ip))
    if events is not None:
        return _rhythm(ctx, events, keys)
    done = ctx.cached(("dns.rhythm",), dict)  # (src, dst) -> its rhythm, or None: too few events
    todo = keys - done.keys()
    if todo:
        got = _rhythm(ctx, dns_events_today(ctx), todo)
        done.update({k: got.get(k) for k in todo})
    return {k: done[k] for k in keys if done[k] is not None}


def _rhythm(ctx, events, keys) -> dict:
    """dns_rhythm of the (src, dst) pairs `keys` over `events`."""
    import pandas as pd

    pairs = engine_table(ctx, pd.DataFrame(sorted(keys), columns=["src_ip", "dst_ip"]))
    # the pairs' events first: the engine does not push the pairs through the window functions
    st = beacon_stats(events.semi_join(pairs, ["src_ip", "dst_ip"]), pairs, ctx.engine)
    day = ctx.span[2]
    out = {}
    for row in st.itertuples(index=False):
        if row.n < 3:
            continue
        b = beacon_score(row, day)
        ok = row.gap_med == row.gap_med and row.gap_med > 0
        b["gap_median_s"] = float(row.gap_med) if ok else None
        b["gap_dispersion"] = float(row.gap_mad / row.gap_med) if ok else None
        b["events"] = int(row.n)
        b["rhythm_p"] = poisson_dispersion_p(b["gap_dispersion"], b["events"] - 1, b["gap_median_s"])
        b.pop("hist", None)
        out[(row.src_ip, row.dst_ip)] = b
    return out


def lonely_events(ctx, ev, window_s: int):
    """The DNS events `ev` (a subset of dns_events_today, an Ibis expression) that are NOT
    followed within window_s seconds by a connection other than DNS from the same host. A lookup
    followed by the connection it was for is name resolution (an updater checking in, a user
    opening a site); C&C over DNS carries its messages in the DNS itself and needs no
    connection. Computed in the engine."""
    followed = _followed_events(ctx, ev, window_s, [0])
    return ev.anti_join(followed.select("src_ip", "dst_ip", "sec"), ["src_ip", "dst_ip", "sec"])


def _followed_events(ctx, ev, window_s: int, shifts: list[int]):
    """(src_ip, dst_ip, sec, shift) of the DNS events `ev` (dns_events) that, moved by `shift`
    seconds, have a connection (not DNS) of the same host within window_s seconds after them."""
    import pandas as pd

    c = connection_seconds(ctx)
    conn = c.semi_join(ev.select("src_ip").distinct(), "src_ip").select(c_src=c.src_ip, c_sec=c.sec)
    so = engine_table(ctx, pd.DataFrame([(s, k) for s in shifts for k in range(int(window_s) + 1)],
                                        columns=["shift", "k"]))
    x = ev.select("src_ip", "dst_ip", "sec").cross_join(so)
    x = x.mutate(c_sec=x.sec + x.shift + x.k)
    return x.semi_join(conn, (x.src_ip == conn.c_src) & (x.c_sec == conn.c_sec)).select(
        "src_ip", "dst_ip", "sec", "shift").distinct()


def _by_chance(per_hour, events: str, busy: str, window_s: int):
    """Events expected to meet one of a host's `busy` seconds per hour within window_s + 1
    seconds by coincidence, per row of `per_hour`: each second of the hour busy with chance
    busy / 3600, independently. (Busy seconds are distinct, so a Poisson rate would undercount
    the chance on a host busy in most seconds: 1 - e^-2.1 = 0.88 where 1 - 0.47^4 = 0.95.)"""
    idle = (1.0 - (per_hour[busy] / 3600.0).clip(upper=1.0)) ** (int(window_s) + 1)
    return per_hour[events] * (1.0 - idle)


def followed_share(ctx, pairs_df, window_s: int, alpha: float, control_windows: int) -> dict:
    """(host, resolver) -> the share of its DNS events followed within window_s seconds by a
    connection (see lonely_events) beyond chance, for the given pairs: (followed - expected) /
    (events - expected). Expected: the larger of what the host's busy seconds per hour would give
    (see _by_chance) and what the same lookups moved back by one to control_windows windows meet
    (the seconds just before each lookup, which it cannot have caused: a host busy around its
    lookups, in a session or in every second, is busy there too). 0 unless that many followed
    events would happen by chance at most `alpha` of the time: on a busy host nearly every lookup
    is "followed" anyway, and the share is noise, not evidence of name resolution."""
    import pandas as pd

    if pairs_df is None or not len(pairs_df):
        return {}
    ev = dns_events_today(ctx).semi_join(engine_table(ctx, pairs_df, ["src_ip", "dst_ip"]), ["src_ip", "dst_ip"])
    per_hour = ev.group_by("src_ip", "dst_ip", "hour").aggregate(events=ev.count()).to_pandas()
    shifts = [0] + [-(int(window_s) + 1) * j for j in range(1, int(control_windows) + 1)]
    hit = _followed_events(ctx, ev, window_s, shifts)
    hits = hit.group_by("src_ip", "dst_ip", "shift").aggregate(followed=hit.count()).to_pandas()
    c = connection_seconds(ctx)
    conn = c.semi_join(engine_table(ctx, pairs_df[["src_ip"]]), "src_ip")
    rate = conn.group_by("src_ip", "hour").aggregate(busy=conn.count()).to_pandas()
    per_hour = per_hour.merge(rate, on=["src_ip", "hour"], how="left").fillna({"busy": 0})
    per_hour["expected"] = _by_chance(per_hour, "events", "busy", window_s)
    df = per_hour.groupby(["src_ip", "dst_ip"], as_index=False)[["events", "expected"]].sum()
    by_shift = hits.pivot_table(index=["src_ip", "dst_ip"], columns="shift", values="followed", aggfunc="sum") \
        .reindex(columns=shifts).fillna(0) if len(hits) else pd.DataFrame(columns=shifts)
    out = {}
    for s_, d, n, exp in df[["src_ip", "dst_ip", "events", "expected"]].itertuples(index=False):
        row = by_shift.loc[(s_, d)] if (s_, d) in by_shift.index else pd.Series(0.0, index=shifts)
        followed = float(row[0])
        exp = max(exp, float(row[shifts[1:]].mean()))  # the control shifts' mean count
        share = max(0.0, (followed - exp) / (n - exp)) if n - exp > 0 else 0.0
        out[(s_, d)] = share if binomial_tail(int(followed), int(n), exp / n if n else 1.0) <= alpha else 0.0
    return out


def resolved_counts(ctx, pairs_df, window_s: int):
    """For (host, destination) pairs: their connections (one per second), how many a DNS lookup
    of the host precedes within window_s seconds, how many would by chance (the host's
    lookup-seconds per hour as a Poisson rate), and whether the host makes lookups at all today
    (a sensor that does not see a host's DNS cannot tell). Software that finds its servers by
    name resolves before it connects; an implant aimed at a hard-coded address does not.
    Returns pandas: src_ip, dst_ip, events, preceded, expected, has_dns."""
    import pandas as pd

    cols = ["src_ip", "dst_ip", "events", "preceded", "expected", "has_dns"]
    if pairs_df is None or not len(pairs_df):
        return pd.DataFrame(columns=cols)
    f = ctx.flows
    conn = f.semi_join(engine_table(ctx, pairs_df, ["src_ip", "dst_ip"]), ["src_ip", "dst_ip"])
    conn = conn.select("src_ip", "dst_ip", "hour", sec=conn.ts.epoch_seconds().floor()).distinct()
    dns = dns_events_today(ctx).semi_join(engine_table(ctx, pairs_df, ["src_ip"]), "src_ip")
    look = dns.select(l_src=dns.src_ip, hour=dns.hour, l_sec=dns.sec).distinct()
    offsets = engine_table(ctx, pd.DataFrame({"k": range(int(window_s) + 1)}))
    shifted = look.select("l_src", "l_sec").cross_join(offsets)
    shifted = shifted.mutate(c_sec=shifted.l_sec + shifted.k)
    pre = conn.semi_join(shifted, (conn.src_ip == shifted.l_src) & (conn.sec == shifted.c_sec))
    per_hour = conn.group_by("src_ip", "dst_ip", "hour").aggregate(events=conn.count()).to_pandas()
    k = pre.group_by("src_ip", "dst_ip").aggregate(preceded=pre.count()).to_pandas()
    rate = look.group_by(src_ip=look.l_src, hour=look.hour).aggregate(busy=look.count()).to_pandas()
    per_hour = per_hour.merge(rate, on=["src_ip", "hour"], how="left").fillna({"busy": 0})
    per_hour["expected"] = _by_chance(per_hour, "events", "busy", window_s)
    df = per_hour.groupby(["src_ip", "dst_ip"], as_index=False)[["events", "expected"]].sum()
    df = df.merge(k, on=["src_ip", "dst_ip"], how="left").fillna({"preceded": 0})
    df["has_dns"] = df.src_ip.isin(set(rate.src_ip))
    return df[cols]


def resolved_share(ctx, pairs, members, dsts, window_s: int) -> float | None:
    """The share of the `members`' connections to `dsts` that a DNS lookup of theirs precedes,
    beyond chance, pooled over the members whose lookups the sensor sees (None when it sees
    none). resolved_counts runs once per set of candidate `pairs` (host, destination)."""
    import pandas as pd

    pairs = tuple(sorted(set(pairs)))
    df = ctx.cached(("dns.resolved", int(window_s), pairs), lambda: resolved_counts(
        ctx, pd.DataFrame(list(pairs), columns=["src_ip", "dst_ip"]), int(window_s)))
    g = df[df.src_ip.isin(list(members)) & df.dst_ip.isin(list(dsts)) & df.has_dns]
    n = float((g.events - g.expected).sum())
    return max(0.0, float((g.preceded - g.expected).sum()) / n) if len(g) and n > 0 else None
