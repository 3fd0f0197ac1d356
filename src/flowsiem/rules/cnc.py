"""cnc rules: command and control over DNS, seen in flow records only (no query names).

Flows do not carry DNS names, so the classic name-based detections (RITA's unique subdomains,
DGA scores) are out of reach. What flows do show, and what these rules learn from the baseline:

  * which resolvers each host, and the network as a whole, normally uses: the company's DNS
    servers (internal servers offering port 53) and any resolver many hosts share;
  * which hosts are resolvers themselves (internal DNS servers, or hosts that on the baseline
    day queried many distinct addresses on port 53: forwarders and recursors) -- exempt;
  * each host's hours of activity and its usual share of DNS in its traffic;
  * the network's usual DNS query size (bytes sent per DNS flow).

Rules
  cnc.new_resolver    DNS to a resolver neither the host nor the network uses, kept up over
                      several hours: an address no host queried on the baseline day if external,
                      otherwise (internal, or used by a lone colleague) only with a beacon rhythm
  cnc.periodic_dns    a DNS conversation with a RITA-style beacon rhythm whose gaps are too
                      regular for random lookups (Poisson test) and far more regular than the
                      network's other DNS conversations today, new for the host
  cnc.dns_silent_hours  DNS, nearly alone, through a run of hours the host was silent on the
                      baseline day (binomial test against its own DNS share, combined with the
                      rhythm test)

Regularity is judged by the gaps' MAD/median ("dispersion"): random lookups give about 0.69 and
every day's ordinary DNS is at least that irregular; a timer with 10 % jitter gives about 0.07.
Its chance under random arrivals comes from seeded simulations (poisson_dispersion_p), so a
handful of gaps never looks significant.

DNS tunnelling (exfiltration) also makes a lot of DNS; it is told apart by volume: a tunnel
sends clearly longer queries AND multiplies the host's DNS upload, while C&C polling is a low-rate
rhythm of ordinary-sized queries. A host whose candidate DNS looks like a tunnel on both counts
is left to the exfiltration rules (thresholds `tunnel_query_ratio`, `tunnel_volume_ratio`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..alerts import Alert, Evidence
from ..network import INTERNAL_EXTERNAL, INTERNAL_INTERNAL
from . import rule
from .stats import MAD_TO_SIGMA, beacon_score, beacon_stats, mad, median, upper_fence

DNS_PORT = 53  # a protocol fact: DNS is port 53 (UDP and TCP)
_FROM_INTERNAL = (INTERNAL_INTERNAL, INTERNAL_EXTERNAL)


# --- what the baseline says about DNS ----------------------------------------------------------

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
    resolver_users: dict          # resolver -> number of client hosts using it on the baseline day
    query_bytes: float            # the network's typical DNS query size (bytes sent per flow)
    dns_share: float              # the network's share of DNS in its hosts' flows
    host_dns_up_median: float     # the median client's DNS bytes sent on the baseline day
    clients: int                  # hosts that used DNS on the baseline day
    forwarder_threshold: float    # distinct port-53 destinations from which a host is a resolver


def _t(spec, name: str) -> float:
    """A numeric threshold (a user file may spell 1e9 so that YAML reads it as text)."""
    v = spec.t(name)
    try:
        return float(v)
    except (TypeError, ValueError):
        from ..errors import UsageError

        raise UsageError(f"rule {spec.id}: threshold '{name}' must be a number, not {v!r}") from None


def _cache(ctx) -> dict:
    c = getattr(ctx, "_cnc_cache", None)
    if c is None:
        c = {}
        ctx._cnc_cache = c
    return c


def dns_baseline(ctx, spec) -> DnsBaseline:
    """Learn the DNS habits of the network from the baseline tables (small, pandas)."""
    key = ("baseline", _t(spec, "forwarder_min_destinations"), _t(spec, "forwarder_z"),
           _t(spec, "established_min_hosts"), _t(spec, "established_min_share"))
    cache = _cache(ctx)
    if key in cache:
        return cache[key]
    import pandas as pd

    edges = ctx.base_df("edges")
    if edges is None:
        edges = pd.DataFrame(columns=["src_ip", "dst_ip", "proto", "port", "traffic_class", "flows", "up_bytes"])
    dns = edges[(edges.port == DNS_PORT) & edges.traffic_class.isin(_FROM_INTERNAL)]
    dns = dns[_mask(dns, [ctx.model.is_unicast_host(ip) for ip in dns.dst_ip])]
    # one row per (host, resolver), UDP and TCP together
    dns = dns.groupby(["src_ip", "dst_ip"], as_index=False)[["flows", "up_bytes"]].sum(min_count=1)
    dns_servers = {ip for ip, _proto, port in ctx.server_services if port == DNS_PORT}

    # Forwarders / recursors: a host querying many distinct addresses on port 53 is a resolver.
    per_host_dst = dns.groupby("src_ip").dst_ip.nunique() if len(dns) else pd.Series(dtype=float)
    fence = upper_fence(per_host_dst.values, _t(spec, "forwarder_z")) if len(per_host_dst) else math.inf
    fwd_thr = max(float(_t(spec, "forwarder_min_destinations")), fence)
    forwarders = set(per_host_dst[per_host_dst >= fwd_thr].index)
    resolver_hosts = dns_servers | forwarders

    clients = dns[~dns.src_ip.isin(resolver_hosts)]
    users = clients.groupby("dst_ip").src_ip.nunique() if len(clients) else pd.Series(dtype=float)
    n_clients = int(clients.src_ip.nunique()) if len(clients) else 0
    need = max(float(_t(spec, "established_min_hosts")), _t(spec, "established_min_share") * n_clients)
    established = dns_servers | set(users[users >= need].index)

    per_edge = clients.up_bytes / clients.flows.clip(lower=1)
    query_bytes = float(per_edge.median()) if len(per_edge) else float("nan")
    hd = clients.groupby("src_ip").agg(flows=("flows", "sum"), up=("up_bytes", "sum"))
    hh = ctx.base_df("host_hours")
    host_flows = hh.groupby("src_ip").flows.sum().to_dict() if hh is not None and len(hh) else {}
    tot = sum(host_flows.get(h, 0) for h in hd.index)
    b = DnsBaseline(
        dns_servers=dns_servers,
        resolver_hosts=resolver_hosts,
        established=established,
        seen=set(dns.dst_ip),
        host_resolvers={h: set(g) for h, g in clients.groupby("src_ip").dst_ip} if len(clients) else {},
        pair_flows={(s, d): int(f) for s, d, f in zip(clients.src_ip, clients.dst_ip, clients.flows)},
        host_dns_flows={h: int(v) for h, v in hd.flows.items()},
        host_dns_up={h: float(v) for h, v in hd.up.items()},
        host_flows=host_flows,
        resolver_users={d: int(n) for d, n in users.items()},
        query_bytes=query_bytes,
        dns_share=float(hd.flows.sum() / tot) if tot else float("nan"),
        host_dns_up_median=float(hd.up.median()) if len(hd) else float("nan"),
        clients=n_clients,
        forwarder_threshold=fwd_thr,
    )
    cache[key] = b
    return b


def dns_today(ctx):
    """Test-day DNS conversations of internal hosts: per (src, dst), in the engine, then pandas."""
    cache = _cache(ctx)
    if "today" not in cache:
        e = ctx.edge_hours
        t = e.filter((e.port == DNS_PORT) & e.traffic_class.isin(list(_FROM_INTERNAL)))
        t = t.group_by("src_ip", "dst_ip").aggregate(
            flows=t.flows.sum(), up_bytes=t.up_bytes.sum(), down_bytes=t.down_bytes.sum(),
            first_ts=t.first_ts.min(), last_ts=t.last_ts.max(), hours=t.hour.nunique(),
        )
        df = t.to_pandas()
        df = df[_mask(df, [ctx.model.is_unicast_host(ip) for ip in df.dst_ip])].reset_index(drop=True)
        cache["today"] = df
    return cache["today"]


def _mask(df, values):
    """A boolean row mask from a Python list (safe on empty frames)."""
    import numpy as np

    return np.asarray(values, dtype=bool).reshape(len(df))


def exempt_hosts(ctx, spec, b: DnsBaseline) -> set:
    """Hosts never judged: the baseline's DNS servers and forwarders, and any internal address
    that several internal hosts query on port 53 today (a resolver; its upstream queries are
    forwarding, not C&C)."""
    today = dns_today(ctx)
    internal = today[_mask(today, [bool(ctx.ip_info.loc[d].internal) if d in ctx.ip_info.index else False
                                   for d in today.dst_ip])]
    users = internal.groupby("dst_ip").src_ip.nunique()
    n_clients = today.src_ip.nunique()
    need = max(_t(spec, "established_min_hosts"), _t(spec, "established_min_share") * n_clients)
    return b.resolver_hosts | set(users[users >= need].index)


def _dns_flows(ctx):
    f = ctx.flows
    return f.filter((f.port == DNS_PORT) & f.src_internal)


def _pairs_table(ctx, df):
    import pyarrow as pa

    return ctx.engine.from_arrow(pa.Table.from_pandas(df[["src_ip", "dst_ip"]].drop_duplicates(),
                                                      preserve_index=False))


def _events(flows):
    """DNS flows of a pair collapsed to one event per second (a lookup often sends A and AAAA
    queries, or retries, within the same second: one poll, as RITA counts unique timestamps)."""
    sec = flows.ts.epoch_seconds().floor()  # some engines return fractional seconds
    g = flows.mutate(sec=sec).group_by("src_ip", "dst_ip", "sec")
    return g.aggregate(ts=flows.ts.min(), hour=flows.hour.min(), up_bytes=flows.up_bytes.sum())


def _beacons(ctx, flows, pairs_df) -> dict:
    """(src, dst) -> beacon_score dict + median gap, gap dispersion and its chance under random
    (Poisson) arrivals, for the given pairs; the statistics are computed in the engine."""
    if pairs_df is None or len(pairs_df) == 0:
        return {}
    st = beacon_stats(_events(flows), _pairs_table(ctx, pairs_df), ctx.engine)
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
        out[(row.src_ip, row.dst_ip)] = b
    return out


_NO_BEACON = {"score": 0.0, "timing": 0.0, "gap_median_s": None, "gap_dispersion": None, "rhythm_p": 1.0,
              "events": 0}
_NULL: dict[int, object] = {}
_NULL_SIMS = 20000
_NULL_GRID = (*range(2, 21), 24, 28, 32, 40, 48, 56, 64, 80, 96, 128, 160, 200)


def poisson_dispersion_p(dispersion: float | None, gaps: int) -> float:
    """Chance that `gaps` gaps between random (Poisson) events are as regular as observed:
    the share of simulated exponential gap sets whose MAD/median is at most `dispersion`.
    Ordinary DNS follows the user and is at least as irregular as random arrivals (MAD/median
    about 0.69); a timer gives a small dispersion. Deterministic (seeded). Gap counts are rounded
    down to a grid of simulated tables, which is conservative: the null only narrows with n."""
    import numpy as np

    if dispersion is None or dispersion != dispersion or gaps < 2:
        return 1.0
    k = max(g for g in _NULL_GRID if g <= gaps)
    sims = _NULL.get(k)
    if sims is None:
        rng = np.random.default_rng(1000 + k)
        x = rng.exponential(1.0, (_NULL_SIMS, k))
        med = np.median(x, axis=1)
        sims = np.sort(np.median(np.abs(x - med[:, None]), axis=1) / med)
        _NULL[k] = sims
    return float((np.searchsorted(sims, dispersion, side="right") + 1) / (len(sims) + 1))


def _rhythm_p(bs: dict) -> float:
    """The chance of the pair's gap regularity under random arrivals (computed once, on demand)."""
    if "rhythm_p" not in bs:
        bs["rhythm_p"] = poisson_dispersion_p(bs.get("gap_dispersion"), bs.get("events", 0) - 1)
    return bs["rhythm_p"]


def _regular(bs: dict, spec) -> bool:
    """A C&C rhythm: RITA's beacon score AND gaps too regular to be chance."""
    return bs["score"] >= _t(spec, "beacon_score") and _rhythm_p(bs) <= _t(spec, "rhythm_alpha")


def _tunnel_like(b: DnsBaseline, host: str, query_bytes: float, host_up_today: float, spec) -> tuple[bool, float, float]:
    """Volume, not rhythm: longer queries than the network's AND a multiplied DNS upload."""
    q_ratio = query_bytes / b.query_bytes if b.query_bytes and b.query_bytes == b.query_bytes else 0.0
    base_up = b.host_dns_up.get(host) or b.host_dns_up_median or 0.0
    v_ratio = host_up_today / base_up if base_up else math.inf
    return (q_ratio >= _t(spec, "tunnel_query_ratio") and v_ratio >= _t(spec, "tunnel_volume_ratio")), q_ratio, v_ratio


# --- formatting ----------------------------------------------------------------------------------

def _where(ctx, ip) -> str:
    g = ctx.geo(ip)
    bits = [str(x) for x in (g.get("as_org"), g.get("country")) if x and x == x and x != "private"]
    if ip in ctx.ip_info.index and bool(ctx.ip_info.loc[ip].internal):
        bits = ["internal"]
    return f" ({', '.join(bits)})" if bits else ""


def _fmt_gap(s) -> str:
    if s is None or s != s:
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _hours_text(hours) -> str:
    hs = sorted(int(h) for h in hours)
    if not hs:
        return "none"
    runs, start, prev = [], hs[0], hs[0]
    for h in hs[1:]:
        if h != prev + 1:
            runs.append((start, prev))
            start = h
        prev = h
    runs.append((start, prev))
    return ", ".join(f"{a:02d}h" if a == b else f"{a:02d}-{b:02d}h" for a, b in runs)


def _ts(v):
    import pandas as pd

    return None if v is None or v != v else pd.Timestamp(v)


# --- cnc.new_resolver -------------------------------------------------------------------------------

@rule("cnc.new_resolver")
def new_resolver(ctx, spec) -> list[Alert]:
    b = dns_baseline(ctx, spec)
    today = dns_today(ctx)
    if len(today) == 0:
        return []
    host_up_today = today.groupby("src_ip").up_bytes.sum().to_dict()
    users_today = today.groupby("dst_ip").src_ip.nunique().to_dict()
    exempt = exempt_hosts(ctx, spec, b)
    active_clients = max(int(today[~today.src_ip.isin(exempt)].src_ip.nunique()), 1)

    c = today[~today.src_ip.isin(exempt) & ~today.dst_ip.isin(b.established)
              & (today.src_ip != today.dst_ip)]
    c = c[_mask(c, [d not in b.host_resolvers.get(s, ()) for s, d in zip(c.src_ip, c.dst_ip)])]
    c = c[(c.flows >= _t(spec, "min_flows")) & (c.hours >= _t(spec, "min_hours"))]
    # A resolver most of the network switched to today is a change of configuration, not C&C.
    c = c[_mask(c, [users_today.get(d, 0) < _t(spec, "network_change_share") * active_clients for d in c.dst_ip])]
    if len(c) == 0:
        return []
    beacons = _beacons(ctx, _dns_flows(ctx), c)

    found: dict[str, list] = {}
    for r in c.itertuples(index=False):
        internal = bool(ctx.ip_info.loc[r.dst_ip].internal) if r.dst_ip in ctx.ip_info.index else False
        seen = r.dst_ip in b.seen
        bs = beacons.get((r.src_ip, r.dst_ip), _NO_BEACON)
        periodic = _regular(bs, spec)
        if (internal or seen or not b.clients) and not periodic:
            # an internal address answering on 53, a resolver a few hosts (or a forwarder) already
            # used on the baseline day, or any resolver when the baseline day had no DNS to learn
            # from, is only suspicious with a C&C rhythm
            continue
        qbytes = r.up_bytes / max(r.flows, 1)
        tunnel, q_ratio, v_ratio = _tunnel_like(b, r.src_ip, qbytes, host_up_today.get(r.src_ip, 0.0), spec)
        if tunnel:
            continue  # volume: DNS tunnelling, the exfiltration rules' business
        persistence = min(1.0, r.hours / 12.0)
        score = 0.35 * (0.0 if internal or seen else 1.0) + 0.4 * bs["score"] + 0.25 * persistence
        found.setdefault(r.src_ip, []).append((score, r, bs, internal, q_ratio))

    alerts = []
    for src, items in found.items():
        items.sort(key=lambda x: -x[0])
        score, r, bs, internal, q_ratio = items[0]
        own = sorted(b.host_resolvers.get(src, ()))
        known = sorted(b.established)
        rhythm = (f"; regular, every ~{_fmt_gap(bs['gap_median_s'])} (beacon score {bs['score']:.2f})"
                  if _regular(bs, spec) else "")
        users = b.resolver_users.get(r.dst_ip, 0)
        novelty = ("a resolver no host used on the baseline day" if r.dst_ip not in b.seen
                   else f"a resolver only {users} host(s) used on the baseline day" if users
                   else "an address only a resolver queried on the baseline day")
        msg = (f"sent {int(r.flows):,} DNS queries over {int(r.hours)} h to {r.dst_ip}{_where(ctx, r.dst_ip)}, "
               f"{novelty} (its usual: {', '.join(own) or 'none, new host'}; "
               f"the network's: {', '.join(known[:4]) or 'none'}){rhythm}")
        if len(items) > 1:
            msg += f"; {len(items) - 1} more new resolver(s)"
        ev = [
            Evidence("DNS resolvers used", "addresses", observed=[x[1].dst_ip for x in items],
                     baseline=own, reference=known),
            Evidence(f"DNS flows to {r.dst_ip}", "flows", observed=int(r.flows), baseline=0,
                     reference=b.resolver_users.get(r.dst_ip, 0), threshold=_t(spec, "min_flows")),
            Evidence("hours with DNS to the new resolver", "hours", observed=int(r.hours), baseline=0,
                     threshold=_t(spec, "min_hours")),
            Evidence("beacon score of the conversation", "score", observed=round(bs["score"], 3),
                     threshold=_t(spec, "beacon_score")),
            Evidence("chance of so regular gaps under random arrivals", "probability",
                     observed=float(f"{_rhythm_p(bs):.3g}"), threshold=_t(spec, "rhythm_alpha")),
            Evidence("bytes sent per DNS query", "bytes", observed=round(r.up_bytes / max(r.flows, 1), 1),
                     reference=round(b.query_bytes, 1),
                     threshold=round(_t(spec, "tunnel_query_ratio") * b.query_bytes, 1)),
        ]
        alerts.append(Alert(
            rule=spec, source_ip=src, destination_ip=r.dst_ip, message=msg, evidence=ev, score=score,
            timestamp=_ts(r.first_ts), related=[x[1].dst_ip for x in items[1:]], example_port=DNS_PORT,
            details={"beacon": {k: v for k, v in bs.items() if k != "hist"}, "external": not internal,
                     "seen_on_baseline_day": r.dst_ip in b.seen,
                     "resolver_users_today": users_today.get(r.dst_ip, 0), "query_size_ratio": round(q_ratio, 2)},
        ))
    return alerts


# --- cnc.periodic_dns -------------------------------------------------------------------------------

@rule("cnc.periodic_dns")
def periodic_dns(ctx, spec) -> list[Alert]:
    b = dns_baseline(ctx, spec)
    today = dns_today(ctx)
    if len(today) == 0:
        return []
    host_up_today = today.groupby("src_ip").up_bytes.sum().to_dict()
    pop = today[~today.src_ip.isin(exempt_hosts(ctx, spec, b)) & (today.flows >= _t(spec, "min_events"))
                & (today.hours >= _t(spec, "min_hours"))]
    if len(pop) == 0:
        return []
    # Beacon statistics of every sizeable DNS conversation: the peers the candidates are judged against.
    beacons = _beacons(ctx, _dns_flows(ctx), pop)
    # The network's DNS conversations today: their gap dispersion (log scale) sets a lower fence.
    disps = [math.log(max(v["gap_dispersion"], 1e-3)) for v in beacons.values()
             if v["gap_dispersion"] is not None and v["events"] >= _t(spec, "min_events")]
    if len(disps) >= _t(spec, "min_peers"):
        fence = math.exp(median(disps) - _t(spec, "peer_z") * MAD_TO_SIGMA * mad(disps))
        peer_median = math.exp(median(disps))
    else:
        fence, peer_median = math.inf, float("nan")

    alerts = []
    for r in pop.itertuples(index=False):
        bs = beacons.get((r.src_ip, r.dst_ip))
        if bs is None or bs["events"] < _t(spec, "min_events"):
            continue
        base_pair = b.pair_flows.get((r.src_ip, r.dst_ip), 0)
        if r.flows < _t(spec, "new_ratio") * base_pair:
            continue  # the host's usual conversation with its resolver at its usual rate
        if not _regular(bs, spec) or bs["gap_dispersion"] > fence:
            continue
        tunnel, q_ratio, v_ratio = _tunnel_like(b, r.src_ip, r.up_bytes / max(r.flows, 1),
                                                host_up_today.get(r.src_ip, 0.0), spec)
        if tunnel:
            continue
        thr = _t(spec, "beacon_score")
        surprise = min(1.0, -math.log10(max(bs["rhythm_p"], 1e-12)) / 4.3)  # 4.3: the null table's floor
        score = 0.5 * min(1.0, (bs["score"] - thr) / max(1e-9, 1 - thr)) + 0.5 * surprise
        new = base_pair == 0
        msg = (f"queried {r.dst_ip}{_where(ctx, r.dst_ip)} on port 53 at a regular rhythm: {bs['events']:,} polls "
               f"over {int(r.hours)} h, every ~{_fmt_gap(bs['gap_median_s'])} (gap dispersion "
               f"{bs['gap_dispersion']:.2f} vs "
               + (f"{peer_median:.2f} for the network's DNS conversations today and " if peer_median == peer_median
                  else "")
               + f"~0.69 for random lookups, chance {bs['rhythm_p']:.1g}; beacon score {bs['score']:.2f}); "
               + ("a conversation absent from its baseline day" if new
                  else f"{int(r.flows):,} flows vs {base_pair:,} on its baseline day"))
        ev = [
            Evidence("beacon score of the DNS conversation", "score", observed=round(bs["score"], 3),
                     threshold=thr),
            Evidence("gap dispersion (MAD / median gap)", "ratio", observed=round(bs["gap_dispersion"], 3),
                     reference=round(peer_median, 3) if peer_median == peer_median else None,
                     threshold=round(fence, 3) if fence != math.inf else None),
            Evidence("chance of so regular gaps under random arrivals", "probability",
                     observed=float(f"{_rhythm_p(bs):.3g}"), threshold=_t(spec, "rhythm_alpha")),
            Evidence("timing regularity (RITA)", "score", observed=round(bs["timing"], 3)),
            Evidence("median gap between polls", "seconds",
                     observed=round(bs["gap_median_s"], 1) if bs["gap_median_s"] is not None else None),
            Evidence(f"DNS flows to {r.dst_ip}", "flows", observed=int(r.flows), baseline=int(base_pair),
                     threshold=round(_t(spec, "new_ratio") * base_pair, 1) if base_pair else _t(spec, "min_events")),
            Evidence("hours with DNS to it", "hours", observed=int(r.hours), threshold=_t(spec, "min_hours")),
        ]
        alerts.append(Alert(
            rule=spec, source_ip=r.src_ip, destination_ip=r.dst_ip, message=msg, evidence=ev, score=score,
            timestamp=_ts(r.first_ts), example_port=DNS_PORT,
            details={"beacon": {k: v for k, v in bs.items() if k != "hist"}, "query_size_ratio": round(q_ratio, 2),
                     "dns_upload_ratio": round(v_ratio, 2) if v_ratio != math.inf else None},
        ))
    return alerts


# --- cnc.dns_silent_hours -------------------------------------------------------------------------------

def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how surprising k DNS flows out of n are for a host whose
    DNS share is p."""
    if k <= 0:
        return 1.0
    if n <= 0 or k > n:
        return 0.0
    p = min(max(p, 1e-9), 1 - 1e-9)
    lp, lq = math.log(p), math.log(1 - p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k, n + 1)]
    m = max(terms)
    return min(1.0, math.exp(m) * sum(math.exp(t - m) for t in terms))


_CANDIDATE_P = 0.05  # hosts whose silent-hour DNS share is at least this surprising get the combined test


def fisher_combined(p1: float, p2: float) -> float:
    """Fisher's combination of two independent p-values: P(chi2 with 4 dof >= -2 ln(p1 p2))."""
    x = max(p1, 1e-300) * max(p2, 1e-300)
    return min(1.0, x * (1.0 - math.log(x)))


def _period(hour: int, silent: set) -> int:
    """The first hour of the run of consecutive silent hours (around the clock) containing `hour`."""
    if len(silent) >= 24:
        return 0
    h = hour
    while (h - 1) % 24 in silent:
        h = (h - 1) % 24
    return h


@rule("cnc.dns_silent_hours")
def dns_silent_hours(ctx, spec) -> list[Alert]:
    import pandas as pd
    import pyarrow as pa

    b = dns_baseline(ctx, spec)
    hh = ctx.base_df("host_hours")
    if hh is None or len(hh) == 0:
        return []
    margin = int(_t(spec, "margin_hours"))
    core_share = _t(spec, "core_share")
    # The host's usual hours: its working hours on the baseline day (hours with a fair share of
    # its busiest hour's flows) widened by the margin, as start and end vary from day to day,
    # plus any other hour it was active in (a few stray flows: not widened). The rest is silence.
    hh = hh[hh.flows > 0]
    active = hh.groupby("src_ip").hour.apply(lambda s: sorted(set(int(h) for h in s)))
    busiest = hh.groupby("src_ip").flows.transform("max")
    core = hh[hh.flows >= core_share * busiest].groupby("src_ip").hour.apply(lambda s: set(int(h) for h in s))
    usual_rows, usual = [], {}
    for host, hours in active.items():
        u = set(hours) | {(h + d) % 24 for h in core.get(host, ()) for d in range(-margin, margin + 1)}
        usual[host] = u
        usual_rows.extend((host, h) for h in u)
    known = pd.DataFrame({"src_ip": list(active.index)})
    usual_df = pd.DataFrame(usual_rows, columns=["src_ip", "hour"]).astype({"hour": "int8"})
    quiet = [int(h) for h in (ctx.profile.get("hours") or {}).get("quiet_hours", [])]

    e = ctx.edge_hours
    e = e.filter(e.traffic_class.isin(list(_FROM_INTERNAL)))
    is_dns = e.port == DNS_PORT
    cells = e.group_by("src_ip", "hour").aggregate(
        flows=e.flows.sum(),
        dns_flows=is_dns.ifelse(e.flows, 0).sum(),
        dns_up=is_dns.ifelse(e.up_bytes, 0).sum(),
    )
    usual_t = ctx.engine.from_arrow(pa.Table.from_pandas(usual_df, preserve_index=False))
    known_t = ctx.engine.from_arrow(pa.Table.from_pandas(known, preserve_index=False))
    old = cells.semi_join(known_t, "src_ip").anti_join(usual_t, ["src_ip", "hour"])
    new = cells.anti_join(known_t, "src_ip")
    silent = old.union(new.filter(new.hour.isin(quiet))) if quiet else old
    silent = silent.filter(silent.dns_flows > 0).to_pandas()
    silent = silent[~silent.src_ip.isin(exempt_hosts(ctx, spec, b))]
    if len(silent) == 0:
        return []
    # Each run of consecutive silent hours (e.g. the night, the evening) is judged on its own: a
    # C&C client polls through one of them, while a machine's few stray lookups are scattered.
    quiet_set = set(quiet)
    silent["period"] = [_period(int(h), quiet_set if host not in usual else
                                {x for x in range(24) if x not in usual[host]})
                        for host, h in zip(silent.src_ip, silent.hour)]
    per = silent.groupby(["src_ip", "period"]).agg(d=("dns_flows", "sum"), n=("flows", "sum"),
                                                   dns_up=("dns_up", "sum")).reset_index()
    per = per[per.d >= _t(spec, "min_flows")]
    cand = {}
    for r in per.itertuples(index=False):
        host = r.src_ip
        base_known = host in usual
        p = (b.host_dns_flows.get(host, 0) / b.host_flows[host]) if base_known and b.host_flows.get(host) else b.dns_share
        p = min(max(p if p == p else 0.5, _t(spec, "min_dns_share")), 0.99)
        pval = binomial_tail(int(r.d), int(r.n), p)
        if pval > _CANDIDATE_P or (host in cand and cand[host][3] <= pval):
            continue
        cand[host] = (host, r, p, pval, base_known)
    cand = list(cand.values())
    if not cand:
        return []

    # Rhythm of the silent-hour DNS, per (host, resolver), in the engine.
    keep = {(c[0], c[1].period) for c in cand}
    cand_cells = silent[[(h, q) in keep for h, q in zip(silent.src_ip, silent.period)]]
    cand_cells = cand_cells[["src_ip", "hour"]].astype({"hour": "int8"})
    cells_t = ctx.engine.from_arrow(pa.Table.from_pandas(cand_cells, preserve_index=False))
    f = _dns_flows(ctx)
    f = f.filter(f.traffic_class.isin(list(_FROM_INTERNAL))).semi_join(cells_t, ["src_ip", "hour"])
    per_pair = f.group_by("src_ip", "dst_ip").aggregate(n=f.count(), first_ts=f.ts.min(), last_ts=f.ts.max()).to_pandas()
    beacons = _beacons(ctx, f, per_pair)
    today = dns_today(ctx)
    host_up_today = today.groupby("src_ip").up_bytes.sum().to_dict()

    alerts = []
    for host, r, p, pval, base_known in cand:
        pairs = per_pair[per_pair.src_ip == host].sort_values("n", ascending=False)
        if len(pairs) == 0:
            continue
        top = pairs.iloc[0]
        span_min = (pairs.last_ts.max() - pairs.first_ts.min()).total_seconds() / 60.0
        if span_min < _t(spec, "min_span_minutes"):
            continue  # one burst of lookups (a machine waking up), not a poll kept up
        tunnel, q_ratio, v_ratio = _tunnel_like(b, host, r.dns_up / max(r.d, 1), host_up_today.get(host, 0.0), spec)
        if tunnel:
            continue  # volume: DNS tunnelling, the exfiltration rules' business
        bs = beacons.get((host, top.dst_ip), _NO_BEACON)
        rhythm_p = _rhythm_p(bs)
        combined = fisher_combined(pval, rhythm_p)
        if combined > _t(spec, "alpha"):
            continue  # DNS-heavy by chance and irregular: a few stray lookups
        hours = sorted(cand_cells[cand_cells.src_ip == host].hour.astype(int).unique())
        usual_h = sorted(set(active.get(host, []))) if base_known else []
        surprise = min(1.0, -math.log10(max(combined, 1e-300)) / 12.0)
        score = 0.7 * surprise + 0.3 * bs["timing"]
        rhythm = (f", regular every ~{_fmt_gap(bs['gap_median_s'])} (chance {rhythm_p:.1g} for random lookups)"
                  if rhythm_p <= _t(spec, "regular_p") else "")
        when = (f"active {_hours_text(usual_h)} on the baseline day" if base_known
                else f"a new host; the network is quiet {_hours_text(quiet)}")
        msg = (f"sent {int(r.d):,} DNS queries to {top.dst_ip}{_where(ctx, top.dst_ip)} at {_hours_text(hours)}, "
               f"hours it is normally silent ({when}), with {int(r.n - r.d):,} other flows then "
               f"(DNS share {r.d / r.n:.0%} vs {p:.0%} of its usual traffic){rhythm}")
        ev = [
            Evidence("DNS flows in the host's silent hours", "flows", observed=int(r.d), baseline=0,
                     threshold=_t(spec, "min_flows")),
            Evidence("DNS share of its traffic in those hours", "share", observed=round(r.d / r.n, 3),
                     baseline=round(p, 3)),
            Evidence("chance of that many DNS flows among them at its usual DNS share", "probability",
                     observed=float(f"{pval:.3g}")),
            Evidence("chance of so regular gaps under random lookups", "probability",
                     observed=float(f"{rhythm_p:.3g}"), threshold=_t(spec, "regular_p")),
            Evidence("both chances combined (Fisher)", "probability", observed=float(f"{combined:.3g}"),
                     threshold=_t(spec, "alpha")),
            Evidence("hours with DNS outside its usual hours", "hours", observed=hours, baseline=usual_h,
                     reference=quiet if not base_known else None),
            Evidence("time from first to last of those DNS flows", "minutes", observed=round(span_min, 1),
                     threshold=_t(spec, "min_span_minutes")),
            Evidence("timing regularity of that DNS (RITA)", "score", observed=round(bs["timing"], 3)),
            Evidence("bytes sent per DNS query", "bytes", observed=round(r.dns_up / max(r.d, 1), 1),
                     reference=round(b.query_bytes, 1)),
        ]
        alerts.append(Alert(
            rule=spec, source_ip=host, destination_ip=top.dst_ip, message=msg, evidence=ev, score=score,
            timestamp=_ts(top.first_ts), related=list(pairs.dst_ip.iloc[1:]), example_port=DNS_PORT,
            details={"beacon": {k: v for k, v in bs.items() if k != "hist"}, "p_value": pval,
                     "rhythm_p": rhythm_p, "combined_p": combined, "period_start_hour": int(r.period),
                     "query_size_ratio": round(q_ratio, 2),
                     "dns_upload_ratio": round(v_ratio, 2) if v_ratio != math.inf else None},
        ))
    return alerts

