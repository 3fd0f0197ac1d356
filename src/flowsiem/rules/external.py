"""external_abuse rules: external clients of the public servers that are outliers of the client
population by their number of requests, the hours they keep, the size of what they fetch, or
their origin (see the external_abuse section of rules.yaml for every threshold and its reason).

All four rules share one per-client feature table, built once per detect run and cached on the
DetectContext: one aggregation of the servers flows in the engine (plus, without a baseline, a
24-row aggregation to learn the quiet hours). Each rule then combines its cues in pandas on that
table (one row per client) and explains what it found.

Reference population ("the clients"):
  * with a clean servers day in the profile (`flowsiem profile --servers`): the baseline clients
    table (flows, bytes served, bytes per flow and quiet-hour share of every client, countries
    and AS organisations), the profile's learned quiet hours, and each client's own baseline row
    when it was there (a client is compared with the population AND with itself: a crawler that
    is busy around the clock every day is not news);
  * without it: today's clients themselves. Medians, MADs and quantiles hardly move when a few
    clients misbehave, and the quiet hours are learned from per-client normalised hour shares
    (each client weighs one, however many flows it sends), so one flood cannot make the night
    look busy.

Volumes are compared on a log scale (robust z = (log x - median) / (1.4826 MAD)): client volumes
are log-normal-ish, a few heavy clients are normal, and only z-scores far in the tail count.
"""

from __future__ import annotations

import math

from ..alerts import Alert, Evidence
from . import rule
from .stats import MAD_TO_SIGMA

DAY_HOURS = 24
Z99 = 2.3263  # standard normal 99th percentile


# --- shared features ----------------------------------------------------------------------------

def _quiet_hours_today(t, share: float) -> list[int]:
    """Quiet hours learned from today's clients: hours whose summed per-client share of activity
    is below `share` x that of the busiest hour (each client counts once, whatever its volume)."""
    ch = t.group_by(ip=t.src_ip, hour=t.hour).aggregate(n=t.count())
    ch = ch.mutate(w=ch.n.cast("float64") / ch.n.sum().over(group_by=ch.ip).cast("float64"))
    byh = ch.group_by("hour").aggregate(w=ch.w.sum()).to_pandas()
    w = {int(h): float(v) for h, v in zip(byh.hour, byh.w)}
    top = max(w.values(), default=0.0)
    if top <= 0:
        return []
    return [h for h in range(DAY_HOURS) if w.get(h, 0.0) < share * top]


def _log(x):
    import numpy as np

    return np.log(np.maximum(np.asarray(x, dtype=float), 1.0))


def _robust(values, floor: float) -> tuple[float, float]:
    """(median, 1.4826 x MAD) of log values, the scale never below `floor`."""
    import numpy as np

    v = _log(values)
    if not v.size:
        return float("nan"), floor
    med = float(np.median(v))
    return med, max(MAD_TO_SIGMA * float(np.median(np.abs(v - med))), floor)


def _wilson_lower(k, n, z: float):
    """Lower confidence bound of a proportion k/n (Wilson score interval): a share measured on a
    handful of flows is not evidence."""
    import numpy as np

    k = np.asarray(k, dtype=float)
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip((centre - half) / den, 0.0, 1.0)


class ClientFeatures:
    """Per-client features of the test day, the reference population and its statistics."""

    def __init__(self, df, ref, quiet_hours: list[int], mode: str):
        self.df = df                    # pandas, one row per external client (index: ip)
        self.ref = ref                  # pandas, the reference population (one row per client)
        self.quiet_hours = quiet_hours
        self.mode = mode                # "baseline" (clean servers day) or "today"
        self._stats: dict = {}

    @property
    def n_ref(self) -> int:
        return len(self.ref)

    def stat(self, name, fn):
        """A reference statistic, computed once per key and shared by the rules."""
        if name not in self._stats:
            self._stats[name] = fn()
        return self._stats[name]


def client_features(ctx, spec) -> ClientFeatures | None:
    """The shared per-client feature table (cached on ctx per quiet_hour_share and min_clients,
    the two knobs that shape it)."""
    key = (float(spec.t("quiet_hour_share")), int(spec.t("min_clients")))
    cache = ctx.__dict__.setdefault("_external_features", {})
    if key not in cache:
        cache[key] = _build_features(ctx, *key)
    return cache[key]


def _build_features(ctx, quiet_hour_share: float, min_clients: int) -> ClientFeatures | None:
    import numpy as np

    t = ctx.servers
    if t is None:
        return None
    base = ctx.base_df("clients")
    if base is not None and "internal" in base:
        base = base[~base["internal"].fillna(False).astype(bool)]
    ps = (ctx.profile.get("public_servers") or {}).get("clients") or {}
    # A clean servers day with too few external clients to be a population: judge today's clients
    # against themselves instead.
    if base is not None and len(base) >= min_clients and "quiet_hours" in ps:
        quiet, mode = sorted(int(h) for h in ps["quiet_hours"]), "baseline"
    else:
        base, mode = None, "today"
        quiet = _quiet_hours_today(t, quiet_hour_share)

    in_quiet = t.hour.isin(quiet) if quiet else t.hour < 0
    agg = t.group_by(ip=t.src_ip).aggregate(
        flows=t.count(),
        up_bytes=t.up_bytes.sum().fill_null(0),
        down_bytes=t.down_bytes.sum().fill_null(0),
        quiet_flows=in_quiet.ifelse(1, 0).sum(),
        servers=t.dst_ip.nunique(),
        active_hours=t.hour.nunique(),
        first_ts=t.ts.min(),
        last_ts=t.ts.max(),
    )
    # The busiest hour of each client (a burst can hide in an ordinary daily total).
    ch = t.group_by(ip=t.src_ip, hour=t.hour).aggregate(n=t.count())
    peak = ch.group_by("ip").aggregate(peak_hour_flows=ch.n.max())
    df = agg.join(peak, "ip").to_pandas()
    if df.empty:
        return None
    # The public servers themselves are not clients, should the file also hold their own
    # outgoing flows: an address that several distinct sources connect to is a server here
    # (the profile's own rule for a service: ProfileOptions.min_clients sources).
    from ..profile import ProfileOptions

    srv = t.group_by(ip=t.dst_ip).aggregate(sources=t.src_ip.nunique())
    srv = set(srv.filter(srv.sources >= ProfileOptions.min_clients).ip.to_pandas())
    df = df[~df.ip.isin(srv)]
    info = ctx.ip_info.reindex(df.ip)
    df["internal"] = info["internal"].fillna(False).astype(bool).to_numpy()
    df["country"] = info["country"].to_numpy()
    df["as_org"] = info["as_org"].to_numpy()
    df = df[~df.internal].drop(columns="internal").set_index("ip")
    for c in ("flows", "up_bytes", "down_bytes", "quiet_flows", "peak_hour_flows"):
        df[c] = df[c].astype("float64")
    df["quiet_share"] = df.quiet_flows / df.flows
    df["bytes_per_flow"] = df.down_bytes / df.flows

    if base is not None:
        ref = base.copy().set_index("ip")
        for c in ("flows", "down_bytes", "up_bytes", "quiet_hour_flows"):
            if c in ref:
                ref[c] = ref[c].fillna(0).astype("float64")
        ref["quiet_share"] = ref.quiet_hour_flows / ref.flows.clip(lower=1)
        ref["bytes_per_flow"] = ref.down_bytes / ref.flows.clip(lower=1)
        own = ref.reindex(df.index)
        df["own_flows"] = own.flows
        df["own_down_bytes"] = own.down_bytes
        df["own_quiet_share"] = own.quiet_share
        df["own_quiet_flows"] = own.quiet_hour_flows
        df["own_bytes_per_flow"] = own.bytes_per_flow
    else:
        ref = df[["flows", "down_bytes", "quiet_share", "bytes_per_flow", "country", "as_org"]].copy()
        for c in ("own_flows", "own_down_bytes", "own_quiet_share", "own_quiet_flows", "own_bytes_per_flow"):
            df[c] = np.nan
    df["known"] = df.own_flows.notna()
    # Origin prevalence: the share of the reference clients from the same country / AS organisation.
    for col in ("country", "as_org"):
        shares = ref[col].fillna("unknown").value_counts(normalize=True)
        df[f"{col}_share"] = df[col].fillna("unknown").map(shares).fillna(0.0).astype(float)
        df.loc[df[col].isna() | df[col].isin(["unknown", "private"]), f"{col}_share"] = np.nan
    # ... and the share of the internal hosts that exchanged traffic with that country / AS
    # organisation on the baseline day: the networks the organisation itself uses every day
    # (big clouds, CDNs, search engines) are not exotic, however few clients come from them.
    fam = _familiar_origins(ctx)
    for col in ("country", "as_org"):
        df[f"{col}_host_share"] = df[col].map(fam.get(col, {})).fillna(0.0).astype(float)
    return ClientFeatures(df, ref, quiet, mode)


def _familiar_origins(ctx) -> dict:
    """{"country": {cc: share of internal hosts}, "as_org": {org: share}} from the baseline's
    internal -> external edges (two small group-bys in the engine)."""
    from ..network import INTERNAL_EXTERNAL

    edges, info = ctx.base("edges"), ctx.base("ip_info")
    if edges is None or info is None:
        return {}
    ie = edges.filter(edges.traffic_class == INTERNAL_EXTERNAL).select("src_ip", "dst_ip")
    j = ie.join(info.select("ip", "country", "as_org"), ie.dst_ip == info.ip)
    hosts = ie.aggregate(n=ie.src_ip.nunique()).to_pandas().n.iloc[0]
    if not hosts:
        return {}
    out = {}
    for col in ("country", "as_org"):
        g = j.filter(j[col].notnull()).group_by(col).aggregate(h=j.src_ip.nunique()).to_pandas()
        out[col] = {k: float(h) / float(hosts) for k, h in zip(g[col], g.h)}
    return out


# --- cues -------------------------------------------------------------------------------------

def _volume(fx: ClientFeatures, spec):
    """Robust z of log flows and log bytes served against the reference clients, and the
    reference's median / 99th percentile (in flows and bytes) for the evidence."""
    import numpy as np

    floor = float(spec.t("min_log_spread"))

    def calc():
        ref = fx.ref
        fm, fs = _robust(ref.flows, floor)
        bm, bs = _robust(ref.down_bytes, floor)
        return {"f_med": fm, "f_sig": fs, "b_med": bm, "b_sig": bs,
                "flows_median": float(np.median(ref.flows)), "flows_p99": float(np.quantile(ref.flows, 0.99)),
                "bytes_median": float(np.median(ref.down_bytes)),
                "bytes_p99": float(np.quantile(ref.down_bytes, 0.99)),
                # the 99th percentile of the log-normal fitted by median / MAD: the outliers being
                # judged cannot inflate it, even in a small population judged against itself
                "flows_p99_fit": _z_to_value(fm, fs, Z99)}
    v = fx.stat(("volume", floor), calc)
    df = fx.df
    zf = (_log(df.flows) - v["f_med"]) / v["f_sig"]
    zb = (_log(df.down_bytes) - v["b_med"]) / v["b_sig"]
    return v, zf, zb


def _z_to_value(med: float, sig: float, z: float) -> float:
    return float(math.exp(med + z * sig))


def _extreme_fence(n: int, rate: float) -> float:
    """The robust z beyond which a population of n ordinary (log-normal) clients puts a client by
    chance on only `rate` of days: the normal quantile 1 - rate/n (a size-aware fence: the more
    clients, the further out their largest member lies)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1.0 - rate / max(n, 1))


def _share_at_rate(ratio: float, quiet: int) -> float:
    """The quiet-hour share of a client whose per-hour rate in the `quiet` quiet hours is `ratio`
    times its rate in the other hours (ratio 1 = a flat, around-the-clock rhythm)."""
    if quiet <= 0 or quiet >= DAY_HOURS:
        return float("nan")
    return ratio * quiet / (ratio * quiet + (DAY_HOURS - quiet))


def _quiet(fx: ClientFeatures, spec):
    """Around-the-clock cue: the client keeps the population's quiet hours. Its quiet-hour share
    (Wilson lower bound: a few flows prove nothing) must exceed both the clients' `quiet_quantile`
    and the share of a rhythm whose quiet-hour rate is `around_rate_ratio` x its active-hour rate;
    a client seen on the baseline day must also exceed its own share there by `quiet_own_delta`.
    Returns (stats, cue, lower bounds)."""
    import numpy as np

    df = fx.df
    if not fx.quiet_hours:
        nan = np.full(len(df), np.nan)
        return {"ref_q": np.nan, "ref_med": np.nan, "thr": np.nan}, np.zeros(len(df), bool), nan
    q, min_n = float(spec.t("quiet_quantile")), int(spec.t("min_flows_share"))

    def calc():
        r = fx.ref[fx.ref.flows >= min_n].quiet_share
        if len(r) < 10:
            r = fx.ref.quiet_share
        return {"ref_q": float(np.quantile(r, q)), "ref_med": float(np.median(r))}
    st = dict(fx.stat(("quiet", q, min_n), calc))
    st["thr"] = max(st["ref_q"], _share_at_rate(float(spec.t("around_rate_ratio")), len(fx.quiet_hours)))
    lb = _wilson_lower(df.quiet_flows, df.flows, float(spec.t("share_confidence_z")))
    own = df.own_quiet_share.to_numpy()
    vs_own = np.where(np.isnan(own), True, lb >= np.nan_to_num(own) + float(spec.t("quiet_own_delta")))
    return st, (lb > st["thr"]) & vs_own & (df.flows.to_numpy() >= min_n), lb


def _rare(fx: ClientFeatures, spec):
    """Origin cue: the client's country or AS organisation is rare, i.e. fewer than
    `rare_origin_share` of the reference clients come from it AND fewer than
    `familiar_host_share` of the internal hosts talked to it on the baseline day. An unknown
    origin (no GeoIP answer) is never rare."""
    import numpy as np

    thr, fam = float(spec.t("rare_origin_share")), float(spec.t("familiar_host_share"))
    df = fx.df
    rare = np.zeros(len(df), bool)
    for col in ("country", "as_org"):
        share = np.nan_to_num(df[f"{col}_share"].to_numpy(), nan=1.0)
        rare |= (share < thr) & (df[f"{col}_host_share"].to_numpy() < fam)
    return rare


def _own_ratio_ok(df, spec):
    """Volume compared with the client itself: a client seen on the baseline day must exceed its
    own volume there by `own_ratio` (busy regulars and daily crawlers are not news)."""
    import numpy as np

    own = df.own_flows.to_numpy()
    return np.where(np.isnan(own), True, df.flows.to_numpy() >= float(spec.t("own_ratio")) * np.nan_to_num(own))


# --- formatting -------------------------------------------------------------------------------

def _nan(x) -> bool:
    return x is None or x != x


def _n(x) -> str:
    return "n/a" if _nan(x) else f"{int(round(float(x))):,}"


def _b(x) -> str:
    from ..profile import _fmt_bytes

    return "n/a" if _nan(x) else _fmt_bytes(x)


def _pct(x) -> str:
    return "n/a" if _nan(x) else f"{100 * float(x):.0f} %"


def _hours(h) -> str:
    from ..profile import _hours_text

    return _hours_text(list(h))


def _origin(row) -> str:
    parts = [p for p in (row.as_org, row.country) if isinstance(p, str) and p]
    return f" ({', '.join(parts)})" if parts else ""


def _own(row, what: str) -> str:
    return f"its baseline day: {what}" if row.known else "not seen on the baseline day"


def _ref_word(fx: ClientFeatures) -> str:
    return "the baseline day's clients" if fx.mode == "baseline" else "today's clients"


def _excess(x, thr, span) -> float:
    if x is None or thr is None or not (x == x) or not (thr == thr):
        return 0.0
    return min(max((float(x) - float(thr)) / span, 0.0), 1.0)


def _too_few(fx, spec) -> bool:
    return fx is None or fx.n_ref < int(spec.t("min_clients")) or fx.df.empty


def _quiet_evidence(fx, row, st, lb, thr):
    return Evidence("share of its flows in the clients' quiet hours", "share", observed=round(row.quiet_share, 4),
                    baseline=None if not row.known else round(float(row.own_quiet_share), 4),
                    reference={"median": round(st["ref_med"], 4), "quantile": round(st["ref_q"], 4),
                               "quiet_hours": list(fx.quiet_hours)},
                    threshold=round(float(thr), 4))


def _volume_evidence(row, v, fthr=None, bthr=None):
    return [
        Evidence("connections (flows) to the public servers", "flows", observed=int(row.flows),
                 baseline=None if not row.known else int(row.own_flows),
                 reference={"median": round(v["flows_median"], 1), "p99": round(v["flows_p99"], 1),
                            "p99_fit": round(v["flows_p99_fit"], 1)},
                 threshold=None if fthr is None else round(fthr, 1)),
        Evidence("bytes served to the client", "bytes", observed=int(row.down_bytes),
                 baseline=None if not row.known else int(row.own_down_bytes),
                 reference={"median": round(v["bytes_median"]), "p99": round(v["bytes_p99"])},
                 threshold=None if bthr is None else round(bthr)),
    ]


# --- rules ------------------------------------------------------------------------------------

@rule("external_abuse.request_flood")
def request_flood(ctx, spec) -> list[Alert]:
    """Far more connections than the client population makes (and than the client itself made on
    the baseline day). Five ways to get there, each with two independent cues:
      extreme      daily flows beyond the population-size-aware fence AND several times the
                   clients' (fitted) 99th percentile; a known client also >= own_ratio x its own day;
      burst        the same on the client's busiest hour, against today's clients' busiest hours,
                   AND that hour holds >= burst_share of its day (a short flood hides in an
                   ordinary daily total; heavy regulars spread theirs: ~10-30 % in their busiest
                   hour). The baseline clients table has no hourly peaks, so today's population
                   is the reference here;
      first_seen   (with a clean servers day) a client it never saw, already >= extreme_min_p99_ratio x
                   the clients' fitted 99th percentile: regulars make the top of the population;
      self_jump    a known client, heavy for the population AND >= own_ratio_extreme x its own day;
      around       heavy in both flows and bytes served AND keeping the clients' quiet hours
                   (a flood that runs around the clock)."""
    import numpy as np

    fx = client_features(ctx, spec)
    if _too_few(fx, spec):
        return []
    df = fx.df
    v, zf, zb = _volume(fx, spec)
    st, quiet_cue, lb = _quiet(fx, spec)
    zthr = float(spec.t("z_volume"))
    rate, p99_ratio = float(spec.t("extreme_false_alarm_rate")), float(spec.t("extreme_min_p99_ratio"))
    fence = max(_extreme_fence(fx.n_ref, rate), zthr)
    flows = df.flows.to_numpy()
    own = df.own_flows.to_numpy()
    known = ~np.isnan(own)
    own_ok = _own_ratio_ok(df, spec)
    over_p99 = flows >= p99_ratio * v["flows_p99_fit"]
    extreme = (zf >= fence) & over_p99 & own_ok
    # A client the clean servers day never saw, already several times the clients' 99th
    # percentile (new clients are mostly light: only regulars reach the top of the population).
    first_seen = (fx.mode == "baseline") & ~known & over_p99 & ~extreme
    # Busiest hour, against today's clients (robust: the few bursting clients cannot move it).
    pk = fx.stat(("peak", float(spec.t("min_log_spread"))),
                 lambda: dict(zip(("med", "sig"), _robust(df.peak_hour_flows, float(spec.t("min_log_spread"))))))
    peak_fence = max(_extreme_fence(len(df), rate), zthr)
    peak_p99 = _z_to_value(pk["med"], pk["sig"], Z99)
    zp = (_log(df.peak_hour_flows) - pk["med"]) / pk["sig"]
    burst = ((zp >= peak_fence) & (df.peak_hour_flows.to_numpy() >= p99_ratio * peak_p99) & own_ok & ~extreme
             & ~first_seen             & (df.peak_hour_flows.to_numpy() >= float(spec.t("burst_share")) * flows))
    self_jump = known & (zf >= zthr) & (flows >= float(spec.t("own_ratio_extreme")) * np.nan_to_num(own))
    around = (zf >= zthr) & (zb >= zthr) & quiet_cue & own_ok
    f_fence = max(_z_to_value(v["f_med"], v["f_sig"], fence), p99_ratio * v["flows_p99_fit"])
    f_mod = _z_to_value(v["f_med"], v["f_sig"], zthr)
    b_mod = _z_to_value(v["b_med"], v["b_sig"], zthr)
    out = []
    f_p99 = p99_ratio * v["flows_p99_fit"]
    for i in np.flatnonzero(extreme | first_seen | burst | self_jump | around):
        row = df.iloc[i]
        ip = df.index[i]
        path = ("extreme" if extreme[i] else "first_seen" if first_seen[i] else "burst" if burst[i]
                else "self_jump" if self_jump[i] else "around")
        f_thr = {"extreme": f_fence, "first_seen": f_p99, "burst": None}.get(path, f_mod)
        ev = _volume_evidence(row, v, f_thr, b_mod if path == "around" else None)
        ev.append(Evidence("robust z of log flows vs the clients", "z", observed=round(float(zf[i]), 2),
                           reference={"clients": fx.n_ref, "spread_log": round(v["f_sig"], 3)},
                           threshold=round(fence, 2) if path == "extreme" else zthr if path in ("self_jump", "around")
                           else None))
        ev.append(Evidence("flows in its busiest hour", "flows", observed=int(row.peak_hour_flows),
                           reference={"median": round(float(math.exp(pk["med"])), 1), "p99_fit": round(peak_p99, 1),
                                      "clients": len(df)},
                           threshold=round(max(_z_to_value(pk["med"], pk["sig"], peak_fence), p99_ratio * peak_p99), 1)
                           if path == "burst" else None))
        if known[i]:
            ev.append(Evidence("flows vs its own baseline day", "ratio", observed=round(float(row.flows / max(own[i], 1)), 2),
                               baseline=1.0,
                               threshold=float(spec.t("own_ratio_extreme" if path == "self_jump" else "own_ratio"))))
        qtxt = ""
        if fx.quiet_hours:
            ev.append(_quiet_evidence(fx, row, st, lb[i], st["thr"]))
            qtxt = f", {_pct(row.quiet_share)} of them in the clients' quiet hours ({_hours(fx.quiet_hours)})"
        how = {"extreme": "far beyond what ordinary clients make",
               "first_seen": (f"never seen on the baseline day and already {row.flows / v['flows_p99_fit']:.1f}x "
                              f"the clients' fitted 99th percentile ({_n(v['flows_p99_fit'])} flows)"),
               "burst": (f"{_n(row.peak_hour_flows)} of them in a single hour, while today's clients' busiest hour "
                         f"is typically {_n(math.exp(pk['med']))} flows (fitted 99th percentile {_n(peak_p99)})"),
               "self_jump": f"{row.flows / max(own[i], 1):.0f}x its own baseline day and heavy for the clients",
               "around": f"heavy and around the clock (clients' median quiet-hour share {_pct(st['ref_med'])})"}[path]
        msg = (f"opened {_n(row.flows)} connections (flows) to the public servers today ({_b(row.down_bytes)} served)"
               f"{qtxt}: {how}; {_ref_word(fx)}: median {_n(v['flows_median'])}, 99th percentile "
               f"{_n(v['flows_p99'])} flows a day; {_own(row, _n(row.own_flows) + ' flows')}")
        score = max(_excess(zf[i], fence, 2.0), _excess(zp[i], peak_fence, 2.0),
                    0.5 * _excess(zf[i], zthr, 2.0) + 0.5 * _excess(lb[i], st["thr"], 0.3),
                    0.5 * _excess(zf[i], zthr, 2.0) + 0.5 * (1.0 if self_jump[i] else 0.0))
        out.append(Alert(rule=spec, source_ip=ip, message=f"{ip}{_origin(row)} {msg}", evidence=ev, score=score,
                         timestamp=row.first_ts,
                         details={"path": path, "z_flows": round(float(zf[i]), 2), "z_bytes": round(float(zb[i]), 2),
                                  "z_peak_hour": round(float(zp[i]), 2), "extreme_fence_z": round(fence, 2),
                                  "reference": fx.mode, "servers": int(row.servers),
                                  "active_hours": int(row.active_hours)}))
    return out


@rule("external_abuse.off_hours")
def off_hours(ctx, spec) -> list[Alert]:
    """Most of a client's activity falls in the hours when the client population is quiet: per hour,
    it is busier at night than in the day (an inverted rhythm), on at least a typical client's
    number of flows, and unlike its own baseline day."""
    import numpy as np

    fx = client_features(ctx, spec)
    if _too_few(fx, spec) or not fx.quiet_hours:
        return []
    df = fx.df
    q = len(fx.quiet_hours)
    if q >= DAY_HOURS:
        return []
    min_n = int(spec.t("min_flows_share"))

    def calc():
        r = fx.ref[fx.ref.flows >= min_n].quiet_share
        if len(r) < 10:
            r = fx.ref.quiet_share
        return {"ref_med": float(np.median(r)), "ref_q": float(np.quantile(r, float(spec.t("quiet_quantile"))))}
    st = fx.stat(("night", min_n, float(spec.t("quiet_quantile"))), calc)
    # The share at which the quiet-hour rate is night_rate_ratio x the active-hour rate, and never
    # below what the clients' quiet_quantile already reaches.
    thr = max(_share_at_rate(float(spec.t("night_rate_ratio")), q), st["ref_q"])
    v, zf, _ = _volume(fx, spec)
    min_flows = max(float(spec.t("min_flows_vs_median")) * v["flows_median"], float(min_n))
    lb = _wilson_lower(df.quiet_flows, df.flows, float(spec.t("share_confidence_z")))
    own = df.own_quiet_share.to_numpy()
    vs_own = np.where(np.isnan(own), True, lb >= np.nan_to_num(own) + float(spec.t("quiet_own_delta")))
    hit = np.flatnonzero((lb >= thr) & vs_own & (df.flows.to_numpy() >= min_flows))
    out = []
    for i in hit:
        row = df.iloc[i]
        ip = df.index[i]
        ev = [_quiet_evidence(fx, row, st, lb[i], thr),
              Evidence("flows in the quiet hours", "flows", observed=int(row.quiet_flows),
                       baseline=None if not row.known else int(row.own_quiet_flows)),
              Evidence("connections (flows) to the public servers", "flows", observed=int(row.flows),
                       baseline=None if not row.known else int(row.own_flows),
                       reference={"median": round(v["flows_median"], 1), "p99": round(v["flows_p99"], 1)},
                       threshold=round(min_flows, 1))]
        rest = (1 - row.quiet_share) / (DAY_HOURS - q)
        rate_ratio = (row.quiet_share / q) / rest if rest > 0 else float("inf")
        rate_txt = (f"{rate_ratio:.1f}x its per-hour rate in the other hours" if rest > 0
                    else "none in the other hours")
        own_txt = _own(row, _pct(row.own_quiet_share) + " of its flows in those hours") if row.known \
            else "not seen on the baseline day"
        msg = (f"opened {_pct(row.quiet_share)} of its {_n(row.flows)} connections in the clients' quiet hours "
               f"({_hours(fx.quiet_hours)}), {rate_txt}; "
               f"{_ref_word(fx)}: median {_pct(st['ref_med'])} of flows in those hours, "
               f"{100 * float(spec.t('quiet_quantile')):g}th percentile {_pct(st['ref_q'])}; {own_txt}")
        out.append(Alert(rule=spec, source_ip=ip, message=f"{ip}{_origin(row)} {msg}", evidence=ev,
                         score=_excess(lb[i], thr, 1 - thr if thr < 1 else 1.0), timestamp=row.first_ts,
                         details={"night_share_threshold": round(thr, 4), "share_lower_bound": round(float(lb[i]), 4),
                                  "quiet_to_active_rate": None if rest <= 0 else round(float(rate_ratio), 2),
                                  "reference": fx.mode}))
    return out


@rule("external_abuse.bulk_download")
def bulk_download(ctx, spec) -> list[Alert]:
    """A client that fetches far more per connection than the clients do (robust z and ratio to
    their median bytes per flow), on enough connections and bytes to matter, and far more per
    connection than it did itself on the baseline day."""
    import numpy as np

    fx = client_features(ctx, spec)
    if _too_few(fx, spec):
        return []
    df = fx.df
    min_n = int(spec.t("min_flows"))
    floor = float(spec.t("min_log_spread"))

    def calc():
        r = fx.ref[fx.ref.flows >= min_n]
        if len(r) < 10:
            r = fx.ref
        med, sig = _robust(r.bytes_per_flow, floor)
        return {"med": med, "sig": sig, "median": float(np.median(r.bytes_per_flow)),
                "p99": float(np.quantile(r.bytes_per_flow, 0.99)),
                "bytes_q": float(np.quantile(fx.ref.down_bytes, float(spec.t("bytes_quantile"))))}
    st = fx.stat(("bpf", min_n, floor, float(spec.t("bytes_quantile"))), calc)
    v, _, zb = _volume(fx, spec)
    z = (_log(df.bytes_per_flow) - st["med"]) / st["sig"]
    ratio = df.bytes_per_flow.to_numpy() / max(st["median"], 1.0)
    own = df.own_bytes_per_flow.to_numpy()
    own_n = df.own_flows.to_numpy()
    own_ratio = df.bytes_per_flow.to_numpy() / np.maximum(np.nan_to_num(own, nan=1.0), 1.0)
    vs_own = np.where(np.isnan(own) | (np.nan_to_num(own_n) < min_n), True, own_ratio >= float(spec.t("size_ratio")))
    cue = ((ratio >= float(spec.t("size_ratio"))) & (z >= float(spec.t("size_z")))
           & (df.flows.to_numpy() >= min_n) & (df.down_bytes.to_numpy() >= st["bytes_q"]) & vs_own)
    out = []
    for i in np.flatnonzero(cue):
        row = df.iloc[i]
        ip = df.index[i]
        ev = [Evidence("bytes served per connection (mean)", "bytes", observed=round(float(row.bytes_per_flow)),
                       baseline=None if not row.known else round(float(row.own_bytes_per_flow)),
                       reference={"median": round(st["median"]), "p99": round(st["p99"])},
                       threshold=round(float(spec.t("size_ratio")) * st["median"])),
              Evidence("robust z of log bytes per connection vs the clients", "z", observed=round(float(z[i]), 2),
                       threshold=float(spec.t("size_z"))),
              Evidence("bytes served to the client", "bytes", observed=int(row.down_bytes),
                       baseline=None if not row.known else int(row.own_down_bytes),
                       reference={"median": round(v["bytes_median"]), "p99": round(v["bytes_p99"])},
                       threshold=round(st["bytes_q"])),
              Evidence("connections (flows) to the public servers", "flows", observed=int(row.flows),
                       baseline=None if not row.known else int(row.own_flows),
                       reference={"median": round(v["flows_median"], 1), "p99": round(v["flows_p99"], 1)},
                       threshold=min_n)]
        own_txt = _own(row, _b(row.own_bytes_per_flow) + " per connection") if row.known else "not seen on the baseline day"
        msg = (f"downloaded {_b(row.down_bytes)} from the public servers today in {_n(row.flows)} connections, "
               f"{_b(row.bytes_per_flow)} per connection ({ratio[i]:.0f}x the clients' median); {_ref_word(fx)}: "
               f"median {_b(st['median'])} per connection, 99th percentile {_b(st['p99'])}; {own_txt}")
        out.append(Alert(rule=spec, source_ip=ip, message=f"{ip}{_origin(row)} {msg}", evidence=ev,
                         score=_excess(math.log(max(ratio[i], 1e-9)), math.log(float(spec.t("size_ratio"))), math.log(30)),
                         timestamp=row.first_ts,
                         details={"ratio_to_median": round(float(ratio[i]), 2), "z_bytes_per_flow": round(float(z[i]), 2),
                                  "z_bytes": round(float(zb[i]), 2), "reference": fx.mode}))
    return out


@rule("external_abuse.unusual_origin")
def unusual_origin(ctx, spec) -> list[Alert]:
    """A client from a country or AS organisation that few clients come from and the internal
    hosts do not use either, AND heavy in requests, AND keeping the clients' quiet hours (around
    the clock). Rarity alone is never enough: it only lowers the volume bar relative to
    external_abuse.request_flood."""
    import numpy as np

    fx = client_features(ctx, spec)
    if _too_few(fx, spec):
        return []
    df = fx.df
    v, zf, zb = _volume(fx, spec)
    st, quiet_cue, lb = _quiet(fx, spec)
    rare = _rare(fx, spec)
    zthr = float(spec.t("z_volume"))
    heavy = (zf >= zthr) & _own_ratio_ok(df, spec)
    hit = np.flatnonzero(rare & heavy & quiet_cue)
    out = []
    f_thr = _z_to_value(v["f_med"], v["f_sig"], zthr)
    thr_share, fam = float(spec.t("rare_origin_share")), float(spec.t("familiar_host_share"))
    for i in hit:
        row = df.iloc[i]
        ip = df.index[i]
        ev = []
        words = []
        for col, what in (("country", "country"), ("as_org", "AS organisation")):
            share = row[f"{col}_share"]
            ev.append(Evidence(f"share of the clients from its {what} ({row[col]})", "share",
                               observed=None if _nan(share) else round(float(share), 5),
                               reference={"internal_hosts_using_it": round(float(row[f"{col}_host_share"]), 4)},
                               threshold={"clients": thr_share, "internal_hosts": fam}))
            if not _nan(share):
                words.append(f"{_n(share * fx.n_ref)} of {_n(fx.n_ref)} from {row[col]}")
        ev += [*_volume_evidence(row, v, f_thr, None),
               Evidence("robust z of log flows vs the clients", "z", observed=round(float(zf[i]), 2),
                        reference={"clients": fx.n_ref, "spread_log": round(v["f_sig"], 3)}, threshold=zthr),
               _quiet_evidence(fx, row, st, lb[i], st["thr"])]
        msg = (f"comes from an origin few clients share ({_ref_word(fx)}: {', '.join(words) or 'origin unknown'}; "
               f"rarely or never used by the internal hosts) and opened {_n(row.flows)} connections "
               f"({_b(row.down_bytes)} served), {_pct(row.quiet_share)} of them in the clients' quiet hours "
               f"({_hours(fx.quiet_hours)}); clients' median {_n(v['flows_median'])} flows, 99th percentile "
               f"{_n(v['flows_p99'])}, median quiet-hour share {_pct(st['ref_med'])}; "
               f"{_own(row, _n(row.own_flows) + ' flows')}")
        score = 0.5 * _excess(zf[i], zthr, 2.5) + 0.5 * _excess(lb[i], st["thr"], 0.3)
        out.append(Alert(rule=spec, source_ip=ip, message=f"{ip}{_origin(row)} {msg}", evidence=ev, score=score,
                         timestamp=row.first_ts,
                         details={"z_flows": round(float(zf[i]), 2), "z_bytes": round(float(zb[i]), 2),
                                  "country_share": row.country_share, "as_org_share": row.as_org_share,
                                  "country_internal_host_share": row.country_host_share,
                                  "as_org_internal_host_share": row.as_org_host_share,
                                  "reference": fx.mode}))
    return out
