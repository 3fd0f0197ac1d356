"""What every family needs: robust statistics, tests of chance, "how far past the threshold",
the hours a population keeps, and where an address is.

Robust statistics (median, MAD, quantiles) rather than mean and standard deviation: one
compromised host must not move the reference it is judged against. Volumes are compared on a
log scale (they are log-normal-ish across hosts and clients).
"""

from __future__ import annotations

import math

from ..fmt import is_missing

DNS_PORT = 53          # a protocol fact: DNS is port 53 (UDP and TCP)
DAY_HOURS = 24
MAD_TO_SIGMA = 1.4826  # MAD x this estimates the standard deviation of a normal distribution

# How far past its threshold an observation is, in [0, 1]; it scales an alert's risk score
# between 0.6 and 1.0 of its severity's base risk. Ratio-scale evidence (bytes, flows, hour
# rarity) is full at ten times its threshold (an order of magnitude past it); z-scores two
# standard deviations past their fence; shares and [0, 1] scores half-way from their threshold
# to 1; probabilities at 1e-12 (far beyond any chance a day of flows can produce).
RATIO_SPAN = 10.0
Z_SPAN = 2.0
P_FLOOR = 1e-12


# --- numbers -----------------------------------------------------------------------------------

def num(v, default: float = 0.0) -> float:
    """A pandas/numpy scalar as float; None/NaN/non-numbers -> default."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return default if f != f else f


def _values(values):
    import numpy as np

    v = np.asarray(list(values) if not hasattr(values, "__array__") else values, dtype=float)
    return v[~np.isnan(v)]


def quantile(values, q: float, default: float = 0.0) -> float:
    import numpy as np

    v = _values(values)
    return float(np.quantile(v, q)) if v.size else default


def median(values, default: float = float("nan")) -> float:
    return quantile(values, 0.5, default)


def mad(values) -> float:
    """Median absolute deviation from the median (unscaled)."""
    import numpy as np

    v = _values(values)
    return float(np.median(np.abs(v - np.median(v)))) if v.size else float("nan")


def log_center_spread(values, floor: float) -> tuple[float, float]:
    """(median, 1.4826 x MAD) of log(max(x, 1)); the spread never below `floor` (a population of
    near-identical members must not turn small differences into huge z-scores)."""
    import numpy as np

    v = np.log(np.maximum(_values(values), 1.0))
    if not v.size:
        return float("nan"), floor
    return float(np.median(v)), max(MAD_TO_SIGMA * mad(v), floor)


def log_z(x, center: float, spread: float):
    """Robust z of log(max(x, 1)) against (center, spread) from log_center_spread."""
    import numpy as np

    return (np.log(np.maximum(np.asarray(x, dtype=float), 1.0)) - center) / spread


def from_log_z(center: float, spread: float, z: float) -> float:
    """The value whose log_z is z."""
    return float(math.exp(center + z * spread))


def upper_fence(reference, z: float, log: bool = True) -> float:
    """median + z x 1.4826 x MAD of `reference` (on log1p values when `log`), in original units:
    the value above which a member is a robust outlier."""
    import numpy as np

    v = _values(reference)
    if not v.size:
        return float("inf")
    if log:
        lv = np.log1p(v)
        return float(np.expm1(np.median(lv) + z * MAD_TO_SIGMA * mad(lv)))
    return float(np.median(v) + z * MAD_TO_SIGMA * mad(v))


def lower_fence(reference, z: float) -> float:
    """median - z x 1.4826 x MAD on log values (positive quantities), in original units."""
    import numpy as np

    v = _values(reference)
    v = v[v > 0]
    if not v.size:
        return 0.0
    lv = np.log(v)
    return float(np.exp(np.median(lv) - z * MAD_TO_SIGMA * mad(lv)))


def size_aware_z(n: int, rate: float) -> float:
    """The z a population of n normal members exceeds by chance on only `rate` of days: the normal
    quantile 1 - rate/n (the more members, the further out the largest one lies)."""
    from scipy.special import ndtri  # scipy.special: scipy.stats costs a second and a half to import

    return float(-ndtri(min(rate / max(n, 1), 0.5)))


def tail_index(values, share: float, min_k: int) -> float:
    """Hill's estimate of the tail index alpha of the largest `share` of the positive values (at
    least min_k of them): how heavy the population's tail is (alpha near 1: the busiest member is
    far beyond the next ones; 3 and more: close to a normal tail). NaN with too few values."""
    import numpy as np

    v = np.sort(np.asarray(_values(values), dtype=float))[::-1]
    v = v[v > 0]
    k = min(max(int(round(share * len(v))), int(min_k)), len(v) - 1)
    if k < int(min_k):
        return float("nan")
    logs = np.log(v[:k] / v[k])
    return float(1.0 / logs.mean()) if logs.mean() > 0 else float("nan")


def maxima_ratio(alpha: float, rate: float) -> float:
    """How far one day's largest member may exceed another day's by chance, on `rate` of days: the
    maxima of a tail of index alpha follow a Frechet law, and for two such days
    P(M2 > r M1) = 1 / (1 + r^alpha), so r = ((1 - rate) / rate)^(1 / alpha). NaN without alpha."""
    if not alpha == alpha or alpha <= 0:
        return float("nan")
    if rate <= 0:  # never by chance: no bar can be high enough
        return float("inf")
    return float(((1.0 - rate) / rate) ** (1.0 / alpha))


# --- chance ------------------------------------------------------------------------------------

def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    from scipy.special import bdtrc

    if k <= 0:
        return 1.0
    if n <= 0 or k > n:
        return 0.0
    return float(bdtrc(k - 1, n, min(max(p, 1e-12), 1 - 1e-12)))


def fisher(*pvalues: float) -> float:
    """Fisher's combination of independent p-values (one p-value for all the cues together):
    P(chi-square with 2k degrees of freedom >= -2 sum(ln p))."""
    from scipy.special import chdtrc

    ps = [min(max(float(p), 1e-300), 1.0) for p in pvalues]
    return float(chdtrc(2 * len(ps), -2.0 * sum(math.log(p) for p in ps))) if ps else 1.0


def wilson_lower(k, n, z: float):
    """Lower bound of the Wilson score interval of the proportion k/n: a share measured on a
    handful of flows is not evidence. Vectorised."""
    import numpy as np

    k = np.asarray(k, dtype=float)
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip((centre - half) / den, 0.0, 1.0)


# --- how far past the threshold -------------------------------------------------------------------

def past(observed, threshold, span: float = RATIO_SPAN) -> float:
    """0 at the threshold, 1 at `span` times it, log-scaled in between (ratio-scale evidence)."""
    o, t = num(observed, float("nan")), num(threshold, float("nan"))
    if o != o:
        return 0.0
    if t != t or t <= 0:
        return 1.0 if o > 0 else 0.0
    if o <= t:
        return 0.0
    return min(1.0, math.log(o / t) / math.log(span))


def past_linear(observed, threshold, width) -> float:
    """0 at the threshold, 1 at threshold + width."""
    o, t, w = num(observed, float("nan")), num(threshold, float("nan")), num(width, float("nan"))
    if o != o or t != t or w != w or w <= 0:
        return 0.0
    return min(max((o - t) / w, 0.0), 1.0)


def past_z(z, fence) -> float:
    """A z-score past its fence: 0 at the fence, 1 at Z_SPAN further."""
    return past_linear(z, fence, Z_SPAN)


def past_share(x, threshold) -> float:
    """A share or a [0, 1] score past its threshold: 0 there, 1 half-way to 1."""
    t = num(threshold, float("nan"))
    return past_linear(x, t, max((1.0 - t) / 2, 1e-9)) if t == t else 0.0


def past_p(p) -> float:
    """How improbable: 0 at p = 1, 1 at p = P_FLOOR (log scale)."""
    p = num(p, 1.0)
    return min(1.0, max(0.0, -math.log10(max(p, P_FLOOR)) / -math.log10(P_FLOOR)))


def mean(*xs: float) -> float:
    return sum(xs) / len(xs) if xs else 0.0


# --- hours -----------------------------------------------------------------------------------------

def quiet_hours(weight_by_hour: dict, share: float) -> list[int]:
    """Hours whose weight is below `share` x the busiest hour's (the profile's own rule)."""
    top = max(weight_by_hour.values(), default=0.0)
    if top <= 0:
        return []
    return [h for h in range(DAY_HOURS) if weight_by_hour.get(h, 0.0) < share * top]


def runs_of(hours: set) -> dict[int, int]:
    """Each hour of `hours` -> the first hour of the run of consecutive hours (around the clock)
    it belongs to."""
    out = {}
    for h in hours:
        s = h
        if len(hours) < DAY_HOURS:
            while (s - 1) % DAY_HOURS in hours:
                s = (s - 1) % DAY_HOURS
        else:
            s = 0
        out[h] = s
    return out


def usual_hours(ctx, margin_hours: int, core_share: float):
    """The hours each host keeps, from its baseline day: {"active": host -> hours with traffic,
    "work": host -> its working hours widened by margin_hours (start and end vary from day to
    day), "usual": work plus any other active hour (stray flows, a machine left on overnight),
    "level": host -> the hourly flows from which an hour is a working hour, "quiet": the network's
    quiet hours}, or None without host-hour baselines. A working hour carries at least core_share
    of the way from the host's idle level (its quietest quarter of the day: zero for a machine
    switched off, the agents' trickle for one left on) to its busiest hour."""
    def build():
        import numpy as np

        hh = ctx.base_df("host_hours")
        if hh is None or not len(hh):
            return None
        m = hh.pivot_table(index="src_ip", columns="hour", values="flows", aggfunc="sum", fill_value=0)
        m = m.reindex(columns=range(DAY_HOURS), fill_value=0)
        v = m.to_numpy(dtype=float)
        idle = np.quantile(v, 0.25, axis=1)  # a quarter of the day: the night of a machine left on
        level = idle + core_share * (v.max(axis=1) - idle)
        work_mask = (v >= level[:, None]) & (v > idle[:, None])
        hosts = list(m.index)
        active = {h: set(np.flatnonzero(v[i] > 0).tolist()) for i, h in enumerate(hosts)}
        work = {h: {(int(x) + d) % DAY_HOURS for x in np.flatnonzero(work_mask[i]) for d in
                    range(-margin_hours, margin_hours + 1)} for i, h in enumerate(hosts)}
        quiet = [int(h) for h in (ctx.profile.get("hours") or {}).get("quiet_hours", [])]
        return {"active": active, "work": work, "usual": {h: active[h] | work[h] for h in hosts},
                "level": dict(zip(hosts, level.tolist())), "quiet": quiet}
    return ctx.cached(("common.usual_hours", int(margin_hours), float(core_share)), build)
# --- prevalence ----------------------------------------------------------------------------------

def prevalence(ctx):
    """dst -> how many internal hosts reached it in the analysed flows, and the active host count."""
    def build():
        from ..network import EXTERNAL_EXTERNAL, EXTERNAL_INTERNAL

        e = ctx.edges
        o = e.filter(~e.traffic_class.isin([EXTERNAL_INTERNAL, EXTERNAL_EXTERNAL]))
        g = o.group_by("dst_ip").aggregate(hosts=o.src_ip.nunique()).to_pandas()
        n = len(unicast(ctx, o.select("src_ip").distinct().to_pandas().src_ip))
        return dict(zip(g.dst_ip, g.hosts)), max(n, 1)
    return ctx.cached(("common.prevalence",), build)


def company_share(ctx, ip) -> tuple[float, int]:
    """(share of the active internal hosts that reached the company -- brand -- of `ip` in the
    analysed flows, active hosts). The companies most of the network uses (its cloud, its
    collaboration suite) are not where one host's theft stands out."""
    def build():
        import pandas as pd

        from ..network import INTERNAL_EXTERNAL

        e = ctx.edges
        o = e.filter(e.traffic_class == INTERNAL_EXTERNAL)
        # brands of the distinct destinations only; the host counts stay in the engine (a capture
        # can hold millions of host-destination pairs)
        dsts = o.select("dst_ip").distinct().to_pandas().dst_ip
        brands = pd.DataFrame({"dst_ip": dsts.to_numpy(), "brand": orgs_of(ctx, dsts).map(brand).to_numpy()})
        brands = brands.dropna(subset=["brand"])
        if brands.empty:
            return {}
        j = o.select("src_ip", "dst_ip").join(engine_table(ctx, brands), "dst_ip")
        g = j.group_by("brand").aggregate(hosts=j.src_ip.nunique()).to_pandas()
        return dict(zip(g.brand, g.hosts.astype(int)))
    by_brand = ctx.cached(("common.company_share",), build)
    _, n = prevalence(ctx)
    b = brand(org_of(ctx, ip))
    return (by_brand.get(b, 0) / n if b else 0.0), n


def shared_destination(ctx, spec, dst) -> tuple[bool, int, int]:
    """(is `dst` a shared destination, hosts using it, active hosts): used by at least
    max_prevalence of the hosts, once the capture has enough hosts for a share to mean anything."""
    by_dst, n = prevalence(ctx)
    k = int(by_dst.get(dst, 0))
    return (n >= spec.num("prevalence_min_hosts") and k / n >= spec.num("max_prevalence")), k, n


def known_channels(ctx, df) -> list[bool]:
    """Per row of `df` (src_ip, dst_ip, proto, port): with a baseline day, did the host already use
    this channel then -- the address itself, or the destination's company (its brand) on the same
    proto/port? The capture rules judge the analysed flows against themselves; when a clean day
    exists, what the host did on it is routine (its backup, its agents), not a finding. All False
    in hunt. One semi-join in the engine for the addresses; companies from the cached users."""
    keys = ["src_ip", "dst_ip", "proto", "port"]
    if not ctx.has_baseline or df is None or not len(df):
        return [False] * (0 if df is None else len(df))
    e = ctx.base("edges")
    seen = set()
    if e is not None:
        cand = engine_table(ctx, df[keys].astype({"port": "int64"}))
        hit = e.select(*keys).semi_join(cand, [e.src_ip == cand.src_ip, e.dst_ip == cand.dst_ip,
                                               e.proto == cand.proto, e.port.cast("int64") == cand.port])
        seen = set(hit.to_pandas().itertuples(index=False, name=None))
    out = []
    for s, d, p, q in df[keys].itertuples(index=False, name=None):
        if (s, d, p, q) in seen:
            out.append(True)
            continue
        org = org_of(ctx, d)
        out.append(org is not None and s in company_service_users(ctx, org, p, q)[0])
    return out


def outside_source(ctx, ip) -> bool:
    """Is `ip` an outside client of the inbound flows: not internal, and not itself a server
    there -- an address several distinct sources connect to (the profile's rule for a service),
    should the servers file also hold the public servers' own outgoing flows."""
    def build():
        from ..profile import ProfileOptions

        t = ctx.inbound
        srv = t.group_by(ip=t.dst_ip).aggregate(sources=t.src_ip.nunique())
        return frozenset(srv.filter(srv.sources >= ProfileOptions.min_clients).ip.to_pandas())
    return not is_internal(ctx, ip) and ip not in ctx.cached(("common.inbound_servers",), build)


# --- connections ---------------------------------------------------------------------------------

def unanswered(flows, no_reply_states):
    """Ibis boolean per flow: the responder sent nothing back (no bytes, no packets) and, where
    the reader knows the connection state, it is one without a reply (Zeek: S0, REJ, ...)."""
    nothing_back = (flows.down_bytes.fill_null(0) == 0) & (flows.down_pkts.fill_null(0) == 0)
    return nothing_back & (flows.conn_state.isnull() | flows.conn_state.isin(list(no_reply_states)))


def busiest_service(t, weight):
    """For a group_by aggregate: the (proto, port) of the group's row with the largest `weight`,
    both from the same row (a struct's arg_max: max_by in Spark, arg_max in DuckDB; Ibis's mode()
    has no Spark form). Unpack with `with_service`."""
    import ibis

    return ibis.struct({"proto": t.proto, "port": t.port}).argmax(weight)


def with_service(g, col: str = "svc"):
    """The aggregate `g` with its busiest_service column `col` unpacked into proto and port."""
    return g.mutate(proto=g[col]["proto"], port=g[col]["port"]).drop(col)


# --- addresses -------------------------------------------------------------------------------------

def is_internal(ctx, ip) -> bool:
    info = ctx.ip_info
    return bool(ip in info.index and bool(info.loc[ip, "internal"]))


def where(ctx, ip) -> str:
    """' (GOOGLE, US)', ' (internal)' or '' -- as much as enrichment knows about `ip`."""
    if is_internal(ctx, ip):
        return " (internal)"
    g = ctx.geo(ip)
    parts = [str(x) for x in (g.get("as_org"), g.get("country"))
             if not is_missing(x) and str(x) and str(x) not in ("private", "unknown")]
    return f" ({', '.join(parts)})" if parts else ""


def org_of(ctx, ip) -> str | None:
    """The AS organisation of `ip` (else 'AS<n>'), None when enrichment does not know."""
    g = ctx.geo(ip)
    org = g.get("as_org")
    if not is_missing(org) and str(org) and str(org) not in ("private", "unknown"):
        return str(org)
    asn = g.get("asn")
    return None if is_missing(asn) else f"AS{int(asn)}"


def orgs_of(ctx, ips):
    """Vectorised org_of: a pandas Series of AS organisation (else 'AS<n>', else None) per address."""
    import pandas as pd

    info = ctx.ip_info.reindex(pd.Index(list(ips)))
    org = info["as_org"].astype(object)
    org = org.where(org.notna() & ~org.isin(["", "private", "unknown"]), None)
    if "asn" in info.columns:
        asn = info["asn"].map(lambda a: None if is_missing(a) else f"AS{int(a)}")
        org = org.where(org.notna(), asn)
    return org.where(org.notna(), None).reset_index(drop=True)


def timestamp(v):
    import pandas as pd

    return None if is_missing(v) else pd.Timestamp(v)


def row_mask(df, values):
    """A boolean row mask from a Python sequence (safe on empty frames)."""
    import numpy as np

    return np.asarray(list(values), dtype=bool).reshape(len(df))


def engine_table(ctx, df, columns=None):
    """A small pandas table uploaded to the engine (candidate keys for a semi-join)."""
    import pyarrow as pa

    d = df if columns is None else df[list(columns)].drop_duplicates()
    return ctx.engine.from_arrow(pa.Table.from_pandas(d, preserve_index=False))


# Words that name a legal form or a generic part of an AS organisation's name, not the company.
_ORG_FILLER = frozenset("""a ab ag and as asn b bhd bv co com company corp corporation de del des do e gmbh inc int
    international jsc kft limited llc llp lp ltd nv of oao ooo oy pjsc plc pte pty s sa sarl sas sdn spa srl sro the
    uab v zao""".split())


def brand(org) -> str | None:
    """The company behind an AS organisation name: its first distinctive word, so that one
    provider's several ASes ("Akamai International B.V.", "Akamai Connected Cloud";
    "AMAZON-02", "AMAZON-AES") count as one when asking whether the network already uses it."""
    import re

    if is_missing(org) or not str(org).strip():
        return None
    words = [w for w in re.findall(r"[a-z]+", str(org).lower()) if w not in _ORG_FILLER and len(w) > 1]
    return words[0] if words else str(org).lower()


def familiarity(ctx, ip) -> tuple[str | None, float]:
    """(AS organisation of `ip`, the share of the internal hosts that used that organisation's
    company -- its brand -- on the baseline day)."""
    org = org_of(ctx, ip)
    return org, (familiar_origins(ctx).get("brand", {}).get(brand(org), 0.0) if org else 0.0)


def unicast(ctx, ips) -> set:
    """The addresses of `ips` that are single hosts (not multicast, broadcast or 0.0.0.0)."""
    return {ip for ip in ips if isinstance(ip, str) and ctx.model.is_unicast_host(ip)}


def active_hosts(ctx) -> int:
    """Internal hosts with outgoing traffic today: the denominator of a destination's prevalence."""
    def build():
        from ..network import INTERNAL_EXTERNAL, INTERNAL_INTERNAL

        e = ctx.edges
        t = e.filter(e.traffic_class.isin([INTERNAL_INTERNAL, INTERNAL_EXTERNAL]))
        return max(len(unicast(ctx, t.select("src_ip").distinct().to_pandas().src_ip)), 1)
    return ctx.cached(("common.active_hosts",), build)


def outbound_hosts(ctx) -> int:
    """Internal hosts that reached outside on the baseline day (0 without a baseline)."""
    def build():
        from ..network import INTERNAL_EXTERNAL

        edges = ctx.base("edges")
        if edges is None:
            return 0
        ie = edges.filter(edges.traffic_class == INTERNAL_EXTERNAL)
        return int(ie.aggregate(n=ie.src_ip.nunique()).to_pandas().n.iloc[0] or 0)
    return ctx.cached(("common.outbound_hosts",), build)


def company_service_users(ctx, org, proto, port) -> tuple[frozenset, int]:
    """(the internal hosts that reached `org`'s company -- its brand -- on proto/port on the
    baseline day, how many internal hosts reached outside at all). Services move between their
    company's addresses from day to day; the hosts that ran one yesterday are its users."""
    def build():
        from ..network import INTERNAL_EXTERNAL

        edges, info = ctx.base("edges"), ctx.base("ip_info")
        if edges is None or info is None or org is None:
            return frozenset(), 0
        ie = edges.filter(edges.traffic_class == INTERNAL_EXTERNAL)
        e = ie.filter((ie.proto == proto) & (ie.port == int(port))).select("src_ip", "dst_ip")
        j = e.join(info.select("ip", "as_org"), e.dst_ip == info.ip).select("src_ip", "as_org").distinct().to_pandas()
        return frozenset(j.src_ip[j.as_org.map(brand) == brand(org)]), outbound_hosts(ctx)
    return ctx.cached(("common.company_service_users", brand(org), str(proto), int(port)), build)


def overlap_tail(k: int, n: int, users: int, hosts: int) -> float:
    """P(at least k of n hosts drawn at random among `hosts` are among `users` of them): how
    surprising it is that a group overlaps a known set of hosts this much (hypergeometric)."""
    from math import comb

    # Exact sum over the hypergeometric tail (host counts are small): scipy.stats would cost
    # a second and a half of import for this one function.
    n, users = min(n, hosts), min(users, hosts)
    if k <= 0 or hosts <= 0 or users <= 0:
        return 1.0
    tail = sum(comb(users, i) * comb(hosts - users, n - i) for i in range(k, min(n, users) + 1))
    return min(1.0, tail / comb(hosts, n))


def familiar_origins(ctx) -> dict:
    """{"country": {cc: share}, "as_org": {org: share}, "brand": {company: share}}: the share of
    the internal hosts that exchanged traffic with each country, AS organisation and company on
    the baseline day. The networks the organisation itself uses every day (big clouds, CDNs,
    search engines) are not exotic."""
    def build():
        from ..network import INTERNAL_EXTERNAL

        edges, info = ctx.base("edges"), ctx.base("ip_info")
        if edges is None or info is None:
            return {}
        ie = edges.filter(edges.traffic_class == INTERNAL_EXTERNAL).select("src_ip", "dst_ip")
        hosts = outbound_hosts(ctx)
        if not hosts:
            return {}
        j = ie.join(info.select("ip", "country", "as_org"), ie.dst_ip == info.ip)
        out = {}
        for col in ("country", "as_org"):
            g = j.filter(j[col].notnull()).group_by(col).aggregate(h=j.src_ip.nunique()).to_pandas()
            out[col] = {k: float(h) / float(hosts) for k, h in zip(g[col], g.h)}
        pairs = j.filter(j.as_org.notnull()).select("src_ip", "as_org").distinct().to_pandas()
        pairs["brand"] = pairs.as_org.map(brand)
        out["brand"] = (pairs.groupby("brand").src_ip.nunique() / float(hosts)).to_dict()
        return out
    return ctx.cached(("common.familiar_origins",), build)
