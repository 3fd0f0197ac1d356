"""external_abuse rules: external clients of the public servers that are outliers of the client
population by their number of requests, the hours they keep, the size of what they fetch, or
their origin (see the external_abuse section of rules.yaml for every threshold and its reason).

All four rules share one per-client feature table, built once per detect run: one aggregation
of the servers flows in the engine (per client, and per client and hour). Each rule combines its
cues in pandas/numpy on that table (one row per client) and explains what it found.

Reference population ("the clients"):
  * with a clean servers day in the profile (`flowsiem profile --servers`): the baseline clients
    (their flows, bytes, hours, countries and AS organisations), the profile's learned quiet
    hours and hour profile, and each client's own baseline when it was there (a client is
    compared with the population AND with itself: a crawler busy around the clock every day is
    not news);
  * without it: today's clients themselves. Medians, MADs and quantiles hardly move when a few
    clients misbehave, and the hours are learned with each client weighing one, so one flood
    cannot make the night look busy.

Volumes are compared on a log scale (robust z = (log x - median) / (1.4826 MAD)). Hours are
weighed by how improbable they are under the population's hour profile: evening use is common,
steady use at 02-05 h is not ("hour rarity", off_hours).
"""

from __future__ import annotations

import math

from ..alerts import Alert, Evidence
from ..fmt import fmt_bytes, fmt_count, fmt_hours, fmt_share, is_missing
from . import rule
from .common import (DAY_HOURS, MAD_TO_SIGMA, familiar_origins, from_log_z, log_center_spread, log_z, mad, median,
                     maxima_ratio, mean, past, past_share, past_z, quantile, quiet_hours, size_aware_z, tail_index,
                     wilson_lower)

Z99 = 2.3263  # the standard normal 99th percentile: "the clients' 99th percentile" of a fitted log-normal


# --- shared features ----------------------------------------------------------------------------

class ClientFeatures:
    """Per-client features of the test day, the reference population and its statistics."""

    def __init__(self, df, ref, hours, ref_hours, own_hours, profile, quiet: list[int], mode: str):
        """ref_hours rows follow ref (the baseline clients, or today's); own_hours rows follow df."""
        self.df = df                    # pandas, one row per external client today (index: ip)
        self.ref = ref                  # pandas, the reference population (one row per client)
        self.hours = hours              # numpy (clients today x 24): flows per hour, rows as df
        self.ref_hours = ref_hours      # numpy (reference clients x 24), rows as ref
        self.own_hours = own_hours      # numpy (clients today x 24): their baseline day's hours, or None
        self.profile = profile          # numpy (24,): the clients' hour profile, each client weighing one
        self.quiet_hours = quiet
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
    """The shared per-client feature table (per quiet_hour_share and min_clients, the two knobs
    that shape it)."""
    key = (spec.num("quiet_hour_share"), int(spec.num("min_clients")))
    return ctx.cached(("external.features", *key), lambda: _build_features(ctx, *key))


def _hour_matrix(ch, index):
    """(ip, hour, flows) rows -> numpy (len(index) x 24) of flows, rows in `index` order."""
    import numpy as np

    m = ch.pivot_table(index="ip", columns="hour", values="flows", aggfunc="sum", fill_value=0)
    m = m.reindex(index=index, columns=range(DAY_HOURS), fill_value=0)
    return np.nan_to_num(m.to_numpy(dtype=float))


def _hour_profile(matrix):
    """Mean of the clients' per-client normalised hour shares (each client weighs one)."""
    import numpy as np

    tot = matrix.sum(axis=1, keepdims=True)
    shares = matrix[tot[:, 0] > 0] / tot[tot[:, 0] > 0]
    p = shares.mean(axis=0) if len(shares) else np.full(DAY_HOURS, 1.0 / DAY_HOURS)
    return p / max(p.sum(), 1e-12)


def _build_features(ctx, quiet_hour_share: float, min_clients: int) -> ClientFeatures | None:
    """Today's clients (one engine aggregation), the reference population and the two joined."""
    import numpy as np

    today = _clients_today(ctx)
    if today is None:
        return None
    df, hours = today
    ref, ref_hours, own_hours, profile, quiet, mode = _reference(ctx, df, hours, quiet_hour_share, min_clients)
    df["quiet_flows"] = hours[:, np.isin(np.arange(DAY_HOURS), quiet)].sum(axis=1)
    df["quiet_share"] = df.quiet_flows / df.flows
    if mode == "baseline":
        ref["quiet_share"] = ref.quiet_hour_flows / ref.flows.clip(lower=1)
        own = ref.reindex(df.index)
        for c in ("flows", "down_bytes", "quiet_share", "bytes_per_flow"):
            df[f"own_{c}"] = own[c]
        df["own_quiet_flows"] = own.quiet_hour_flows
    else:
        ref["quiet_share"] = df.quiet_share
        for c in ("own_flows", "own_down_bytes", "own_quiet_share", "own_bytes_per_flow", "own_quiet_flows"):
            df[c] = np.nan
    df["known"] = df.own_flows.notna()
    # Origin prevalence: the share of the reference clients from the same country / AS organisation,
    # and the share of the internal hosts that used it on the baseline day (big clouds, CDNs and
    # search engines the organisation itself uses daily are not exotic).
    fam = familiar_origins(ctx)
    for col in ("country", "as_org"):
        shares = ref[col].fillna("unknown").value_counts(normalize=True)
        df[f"{col}_share"] = df[col].fillna("unknown").map(shares).fillna(0.0).astype(float)
        df.loc[df[col].isna() | df[col].isin(["unknown", "private"]), f"{col}_share"] = np.nan
        df[f"{col}_host_share"] = df[col].map(fam.get(col, {})).fillna(0.0).astype(float)
    return ClientFeatures(df, ref, hours, ref_hours, own_hours, profile, quiet, mode)


def _clients_today(ctx):
    """(per-client table indexed by ip, flows-per-hour matrix) of today's external clients, or None."""
    import numpy as np

    a = ctx.service_hours  # per (client, server, service, hour): one pass over the servers file
    if a is None:
        return None
    agg = a.group_by(ip=a.src_ip).aggregate(
        flows=a.flows.sum(), up_bytes=a.up_bytes.sum().fill_null(0), down_bytes=a.down_bytes.sum().fill_null(0),
        servers=a.dst_ip.nunique(), ports=a.port.nunique(), active_hours=a.hour.nunique(),
        first_ts=a.first_ts.min(), last_ts=a.last_ts.max(), up_n=a.up_n.sum(), up_sq=a.up_sq.sum())
    ch = a.group_by(ip=a.src_ip, hour=a.hour).aggregate(flows=a.flows.sum()).to_pandas()
    df = agg.to_pandas()
    if df.empty:
        return None
    from ..profile import main_service

    df["service"] = main_service(a, df.ip)
    # The public servers themselves are not clients, should the file also hold their own outgoing
    # flows: an address that several distinct sources connect to is a server here (the profile's
    # own rule for a service: ProfileOptions.min_clients sources).
    from ..profile import ProfileOptions

    srv = a.group_by(ip=a.dst_ip).aggregate(sources=a.src_ip.nunique())
    srv = set(srv.filter(srv.sources >= ProfileOptions.min_clients).ip.to_pandas())
    info = ctx.ip_info.reindex(df.ip)
    df["internal"] = info["internal"].fillna(False).astype(bool).to_numpy()
    df["country"] = info["country"].to_numpy()
    df["as_org"] = info["as_org"].to_numpy()
    df = df[~df.ip.isin(srv) & ~df.internal].drop(columns="internal").set_index("ip")
    for c in ("flows", "up_bytes", "down_bytes"):
        df[c] = df[c].astype("float64")
    hours = _hour_matrix(ch, df.index)
    df["peak_hour_flows"] = hours.max(axis=1)
    df["bytes_per_flow"] = df.down_bytes / df.flows
    # how alike its requests are (coefficient of variation of bytes sent): failed logins are copies
    n = df.pop("up_n").astype("float64")
    var = (df.pop("up_sq").astype("float64") - df.up_bytes ** 2 / n) / (n - 1)  # sample variance, from sums
    up_sd = np.sqrt(var.clip(lower=0.0).where(n > 1))
    df["up_cv"] = (up_sd / (df.up_bytes / df.flows).clip(lower=1.0)).fillna(np.inf)
    return df, hours


def _reference(ctx, df, hours, quiet_hour_share, min_clients):
    """(ref, ref_hours, own_hours, hour profile, quiet hours, mode): the clean servers day's clients
    when the profile has enough of them ("baseline"), else today's clients ("today")."""
    import numpy as np

    base = ctx.base_df("clients")
    if base is not None and "internal" in base:
        base = base[~base["internal"].fillna(False).astype(bool)]
    ps = (ctx.profile.get("public_servers") or {}).get("clients") or {}
    if base is None or len(base) < min_clients or "quiet_hours" not in ps:
        profile = _hour_profile(hours)
        ref = df[["flows", "down_bytes", "bytes_per_flow", "country", "as_org", "service"]].copy()
        return ref, hours, None, profile, quiet_hours(dict(enumerate(profile)), quiet_hour_share), "today"
    ref = base.copy().set_index("ip")
    for c in ("flows", "down_bytes", "up_bytes", "quiet_hour_flows"):
        if c in ref:
            ref[c] = ref[c].fillna(0).astype("float64")
    ref["bytes_per_flow"] = ref.down_bytes / ref.flows.clip(lower=1)
    bh = ctx.base_df("client_hours")
    # (a profile written before client hours were kept: today's rhythm stands in)
    ref_hours = _hour_matrix(bh, ref.index) if bh is not None else hours
    own_hours = _hour_matrix(bh, df.index) if bh is not None else None
    profile = np.asarray(ps["hour_profile"], dtype=float) if ps.get("hour_profile") else _hour_profile(ref_hours)
    return ref, ref_hours, own_hours, profile, sorted(int(h) for h in ps["quiet_hours"]), "baseline"


# --- cues -------------------------------------------------------------------------------------

def _volume(fx: ClientFeatures, spec):
    """Robust z of log flows and log bytes served against the reference clients, and the
    reference's median / 99th percentile / busiest client (in flows and bytes) for the evidence."""
    import numpy as np

    floor = spec.num("min_log_spread")

    def calc():
        ref = fx.ref
        fm, fs = log_center_spread(ref.flows, floor)
        bm, bs = log_center_spread(ref.down_bytes, floor)
        return {"f_med": fm, "f_sig": fs, "b_med": bm, "b_sig": bs,
                "flows_median": float(np.median(ref.flows)), "flows_p99": float(np.quantile(ref.flows, 0.99)),
                "flows_max": float(ref.flows.max()),
                "bytes_median": float(np.median(ref.down_bytes)), "bytes_p99": float(np.quantile(ref.down_bytes, 0.99)),
                # the 99th percentile of the log-normal fitted by median / MAD: the outliers being
                # judged cannot inflate it, even in a small population judged against itself
                "flows_p99_fit": from_log_z(fm, fs, Z99)}
    v = fx.stat(("volume", floor), calc)
    return v, log_z(fx.df.flows, v["f_med"], v["f_sig"]), log_z(fx.df.down_bytes, v["b_med"], v["b_sig"])


def _share_at_rate(ratio: float, quiet: int) -> float:
    """The quiet-hour share of a client whose per-hour rate in the `quiet` quiet hours is `ratio`
    times its rate in the other hours (ratio 1 = a flat, around-the-clock rhythm)."""
    if quiet <= 0 or quiet >= DAY_HOURS:
        return float("nan")
    return ratio * quiet / (ratio * quiet + (DAY_HOURS - quiet))


def _quiet(fx: ClientFeatures, spec, vs_clients: bool = True):
    """Around-the-clock cue: the client keeps the population's quiet hours. Its quiet-hour share
    (Wilson lower bound: a few flows prove nothing) must exceed the share of a rhythm whose
    quiet-hour rate is `around_rate_ratio` x its active-hour rate and, with `vs_clients`, the
    clients' `quiet_quantile` too; a client seen on the baseline day must also exceed its own
    share there by `quiet_own_delta`. Returns (stats, cue, lower bounds)."""
    import numpy as np

    df = fx.df
    if not fx.quiet_hours:
        return {"ref_q": np.nan, "ref_med": np.nan, "thr": np.nan}, np.zeros(len(df), bool), np.full(len(df), np.nan)
    q, min_n = spec.num("quiet_quantile"), int(spec.num("min_flows_share"))

    def calc():
        r = fx.ref[fx.ref.flows >= min_n].quiet_share
        r = r if len(r) >= 10 else fx.ref.quiet_share
        return {"ref_q": float(np.quantile(r, q)), "ref_med": float(np.median(r))}
    st = dict(fx.stat(("quiet", q, min_n), calc))
    at_rate = _share_at_rate(spec.num("around_rate_ratio"), len(fx.quiet_hours))
    st["thr"] = max(st["ref_q"], at_rate) if vs_clients else at_rate
    lb = wilson_lower(df.quiet_flows, df.flows, spec.num("share_confidence_z"))
    own = df.own_quiet_share.to_numpy()
    vs_own = np.where(np.isnan(own), True, lb >= np.nan_to_num(own) + spec.num("quiet_own_delta"))
    return st, (lb > st["thr"]) & vs_own & (df.flows.to_numpy() >= min_n), lb


def _hour_rarity(fx: ClientFeatures, spec):
    """How improbable a client's hours are: the mean over its flows of log(P(busiest hour) / P(its
    hour)) under the hour profile P of the clients from its country (time zones: a client abroad
    keeps its own country's hours) when the reference has min_country_clients of them, else of all
    the clients; its mix shrunk towards that profile by `prior_flows` flows (a handful of flows
    proves nothing). exp() of it is "its hours are N times less frequented than the busiest hour".
    Returns (today's values, own baseline values or NaN, reference stats, deep-night floors,
    the profile rows used, each client's rare hours: >= min_rarity x rarer than the busiest)."""
    import numpy as np

    a = spec.num("prior_flows")
    profiles = fx.stat(("country_profiles", spec.num("min_country_clients")), lambda: _country_profiles(fx, spec))

    def rows(countries):
        pw = [profiles.get(c, profiles[None]) for c in countries]
        return np.array([x[0] for x in pw]), np.array([x[1] for x in pw])

    def rarity(m, P, W):
        n = m.sum(axis=1, keepdims=True)
        return (((m + a * P) / (n + a)) * W).sum(axis=1)

    def calc():
        m = fx.ref_hours
        P, W = rows(fx.ref.country if len(m) == len(fx.ref) else [None] * len(m))
        keep = m.sum(axis=1) >= spec.num("min_flows")
        if keep.any():
            m, P, W = m[keep], P[keep], W[keep]
        r = rarity(m, P, W)
        return {"median": float(np.median(r)), "spread": MAD_TO_SIGMA * mad(r),
                "p99": float(np.quantile(r, 0.99)), "clients": int(len(r)),
                # how deep into the night the reference clients' own hours go (night owls included);
                # today's clients include the one judged: the next deepest then
                "deep_q": _deep_reference(_weighted_low(m, W, spec.num("deep_share")), spec.num("deep_quantile"),
                                          fx.mode == "today")}
    st = fx.stat(("rarity", a, spec.num("min_flows"), spec.num("min_country_clients")), calc)
    P, W = rows(fx.df.country)
    own = rarity(fx.own_hours, P, W) if fx.own_hours is not None else np.full(len(fx.df), np.nan)
    own = np.where(fx.df.known.to_numpy(), own, np.nan)
    # the deep-night floor, counted only for clients active in at least min_active_hours rare hours
    rare = W >= math.log(spec.num("min_rarity"))
    active_rare = ((fx.hours > 0) & rare).sum(axis=1)
    floor = np.where(active_rare >= spec.num("min_active_hours"), _weighted_low(fx.hours, W, spec.num("deep_share")), 0.0)
    return rarity(fx.hours, P, W), own, st, floor, P, rare


def _deep_reference(floors, q: float, includes_self: bool) -> float:
    """The reference clients' deep-night floor at quantile q; when the reference is today's
    clients (the judged one among them), the second deepest stands for the deepest."""
    import numpy as np

    v = np.sort(np.asarray(floors, dtype=float))
    if not len(v):
        return 0.0
    if includes_self and q >= 1.0 and len(v) > 1:
        return float(v[-2])
    return float(np.quantile(v, q))


def _country_profiles(fx, spec) -> dict:
    """{country: (P, W)} for the countries with min_country_clients reference clients, and
    {None: (P, W)} for all the clients: P the hour profile (each client weighs one), W the log of
    how much less frequented each hour is than the busiest."""
    import numpy as np

    def pw(p, n):
        p = np.maximum(p, 1.0 / (DAY_HOURS * max(n, 1)))  # an hour no client used: one client's share
        return p / p.sum(), np.log(p.max() / p)

    out = {None: pw(fx.profile, fx.n_ref)}
    if len(fx.ref_hours) == len(fx.ref) and "country" in fx.ref:
        for c, idx in fx.ref.reset_index().groupby("country").groups.items():
            if len(idx) >= spec.num("min_country_clients") and isinstance(c, str):
                out[c] = pw(_hour_profile(fx.ref_hours[np.asarray(idx)]), len(idx))
    return out


def _country_profiles_global(fx):
    """The all-clients hour profile as _country_profiles normalises it (for the explanation)."""
    import numpy as np

    p = np.maximum(fx.profile, 1.0 / (DAY_HOURS * max(fx.n_ref, 1)))
    return p / p.sum()


def _weighted_low(m, W, share):
    """Per row of flows-per-hour m and hour weights W (one row, or one per row of m): the weight
    below which only `share` of its flows lie (flow-weighted quantile): "(1 - share) of its flows
    are at hours at least this rare"."""
    import numpy as np

    W = np.broadcast_to(W, m.shape)
    order = np.argsort(W, axis=1)
    mm = np.take_along_axis(m, order, axis=1)
    cum = np.cumsum(mm, axis=1) / np.maximum(m.sum(axis=1, keepdims=True), 1.0)
    idx = np.minimum((cum <= share).sum(axis=1), m.shape[1] - 1)  # first hour (by rarity) past the share
    return np.take_along_axis(np.take_along_axis(W, order, axis=1), idx[:, None], axis=1)[:, 0]


def _busiest_window_share(m, width: int):
    """Per row of flows-per-hour m: the largest share of its flows in any `width` consecutive
    hours (around midnight too). People keep to a part of the day; a machine spreads evenly."""
    import numpy as np

    tot = np.maximum(m.sum(axis=1), 1.0)
    wrapped = np.concatenate([m, m[:, :width - 1]], axis=1)
    c = np.cumsum(np.concatenate([np.zeros((len(m), 1)), wrapped], axis=1), axis=1)
    return (c[:, width:width + DAY_HOURS] - c[:, :DAY_HOURS]).max(axis=1) / tot


def _rare(fx: ClientFeatures, spec):
    """Origin cue: fewer than `rare_origin_share` of the reference clients come from the client's
    country or AS organisation AND fewer than `familiar_host_share` of the internal hosts talked to
    it on the baseline day. An unknown origin (no GeoIP answer) is never rare."""
    import numpy as np

    rare = np.zeros(len(fx.df), bool)
    for col in ("country", "as_org"):
        share = np.nan_to_num(fx.df[f"{col}_share"].to_numpy(), nan=1.0)
        rare |= (share < spec.num("rare_origin_share")) & (fx.df[f"{col}_host_share"].to_numpy()
                                                          < spec.num("familiar_host_share"))
    return rare


def _own_ratio_ok(df, spec):
    """Volume compared with the client itself: a client seen on the baseline day must exceed its
    own volume there by `own_ratio` (busy regulars and daily crawlers are not news)."""
    import numpy as np

    own = df.own_flows.to_numpy()
    return np.where(np.isnan(own), True, df.flows.to_numpy() >= spec.num("own_ratio") * np.nan_to_num(own))


def _too_few(fx, spec) -> bool:
    return fx is None or fx.n_ref < int(spec.num("min_clients")) or fx.df.empty


# --- explaining -------------------------------------------------------------------------------

def _origin(row) -> str:
    parts = [p for p in (row.as_org, row.country) if isinstance(p, str) and p]
    return f" ({', '.join(parts)})" if parts else ""


def _own(row, what: str) -> str:
    return f"its baseline day: {what}" if row.known else "not seen on the baseline day"


def _ref_word(fx: ClientFeatures) -> str:
    return "the baseline day's clients" if fx.mode == "baseline" else "today's clients"


def _quiet_evidence(fx, row, st, thr):
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
                            "p99_fit": round(v["flows_p99_fit"], 1), "busiest": round(v["flows_max"], 1)},
                 threshold=None if fthr is None else round(fthr, 1)),
        Evidence("bytes served to the client", "bytes", observed=int(row.down_bytes),
                 baseline=None if not row.known else int(row.own_down_bytes),
                 reference={"median": round(v["bytes_median"]), "p99": round(v["bytes_p99"])},
                 threshold=None if bthr is None else round(bthr)),
    ]


# --- external_abuse.request_flood ------------------------------------------------------------------

@rule("external_abuse.request_flood")
def request_flood(ctx, spec) -> list[Alert]:
    """Far more connections than the client population makes (and than the client itself made on
    the baseline day). Four ways to get there, each with independent cues:
      extreme  daily flows beyond the population-size-aware fence AND several times the clients'
               (fitted) 99th percentile AND, with a clean servers day, beyond busiest_ratio x its
               busiest client -- and, for a client keeping to the clients' day, beyond how far two
               days' busiest clients differ by chance (a busy office or NAT above yesterday's
               busiest is day-to-day variation, not a flood); a known client also >= own_ratio x
               its own day;
      burst    the same on the client's busiest hour against the clients' busiest hours (a brute
               force or short flood hides in an ordinary daily total), that hour also holding a
               good part of the client's day (burst_share_baseline; burst_share without a clean
               servers day): a client busy all day is judged by its daily total;
      around   heavy in both flows and bytes served AND keeping the clients' quiet hours AND spread
               over the day (no window_hours hold max_window_share of it: not a long evening);
      repeat   beyond the clients' 99th percentile of flows AND beyond busiest_ratio x the busiest
               client of its own service (a login service has few, light clients) AND requests that
               are copies of each other (failed logins, a scripted call)."""
    fx = client_features(ctx, spec)
    if _too_few(fx, spec):
        return []
    paths, c = _flood_paths(fx, spec)
    return [_explain_flood(fx, spec, i, path, c) for i, path in paths.items()]


def _flood_paths(fx, spec):
    import numpy as np

    df = fx.df
    v, zf, zb = _volume(fx, spec)
    st, quiet_cue, lb = _quiet(fx, spec)
    zthr, rate, p99r = spec.num("z_volume"), spec.num("extreme_false_alarm_rate"), spec.num("extreme_min_p99_ratio")
    fence = max(size_aware_z(fx.n_ref, rate), zthr)
    baseline = fx.mode == "baseline"
    own_ok = _own_ratio_ok(df, spec)
    flows = df.flows.to_numpy()
    # How far today's busiest client may lie beyond the baseline day's by chance (far, in a heavy
    # tail) -- for a client that keeps to the clients' day (touching at most a share of their quiet
    # hours, its first and last): the busy offices and NATs that make that tail. A client going on
    # through the clients' night is not one of them.
    alpha = fx.stat(("tail", spec.num("tail_share"), spec.num("tail_min_clients")),
                    lambda: tail_index(fx.ref.flows, spec.num("tail_share"), spec.num("tail_min_clients")))
    chance = maxima_ratio(alpha, rate)
    quiet = list(fx.quiet_hours)
    in_quiet = (fx.hours[:, quiet] > 0).sum(axis=1) if quiet else np.zeros(len(df))
    peoples_day = in_quiet <= spec.num("max_quiet_hours_share") * len(quiet)
    busiest = np.where(peoples_day, max(spec.num("busiest_ratio"), chance if chance == chance else 0.0),
                       spec.num("busiest_ratio"))
    f_extreme = np.maximum(max(from_log_z(v["f_med"], v["f_sig"], fence), p99r * v["flows_p99_fit"]),
                           busiest * v["flows_max"] if baseline else np.zeros(len(df)))
    extreme = (flows >= f_extreme) & own_ok
    floor = spec.num("min_log_spread")

    def peaks():
        ref_peaks = fx.ref_hours.max(axis=1)
        med, sig = log_center_spread(ref_peaks, floor)
        return {"med": med, "sig": sig, "max": float(ref_peaks.max()) if len(ref_peaks) else 0.0}
    pk = fx.stat(("peak", floor), peaks)
    peak_fence = max(size_aware_z(len(fx.ref_hours), rate), zthr)
    peak_thr = max(from_log_z(pk["med"], pk["sig"], peak_fence), p99r * from_log_z(pk["med"], pk["sig"], Z99),
                   spec.num("busiest_ratio") * pk["max"] if baseline else 0.0)
    peak = df.peak_hour_flows.to_numpy()
    # a burst stands out from the client's own day, not only from the other clients' hours; a known
    # client's hour also from its own habit: busiest_ratio x as concentrated as its own busiest hour
    # was (the same day, busier all through, is judged by its daily total: the extreme path)
    share = spec.num("burst_share_baseline") if baseline else spec.num("burst_share")
    own_flows = np.maximum(np.nan_to_num(df.own_flows.to_numpy()), 1.0)
    own_peak = fx.own_hours.max(axis=1) if fx.own_hours is not None else np.zeros(len(df))
    own_share = own_peak / own_flows
    # -- unless it grew from its own day beyond how far the known clients' days change by chance:
    # then its own day is no reference for today's shape (an ordinary visitor yesterday, a flood
    # filling its usual afternoon today)
    growth = np.log(np.maximum(flows, 1.0)) - np.log(own_flows)
    grow_thr = _change_fence(fx, spec, growth, "flows_growth", spec.num("min_flows_share"), floor)
    grown = (grow_thr > 0) & (growth >= grow_thr)
    own_shape = ~df.known.to_numpy() | (peak >= spec.num("busiest_ratio") * own_share * flows) | grown
    burst = (peak >= peak_thr) & own_ok & own_shape & (peak >= share * flows)
    # around the clock: keeping the quiet hours AND spread over the day -- a long evening that
    # reaches into the first quiet hours keeps to a part of the day, as people do
    spread = _busiest_window_share(fx.hours, int(spec.num("window_hours"))) <= spec.num("max_window_share")
    around = (zf >= zthr) & (zb >= zthr) & quiet_cue & spread & own_ok
    svc_busiest = _service_busiest(fx)
    repeat = ((flows >= v["flows_p99"]) & (flows >= spec.num("busiest_ratio") * svc_busiest)
              & (df.up_cv.to_numpy() <= spec.num("max_size_cv")) & own_ok)
    paths = {i: ("extreme" if extreme[i] else "burst" if burst[i] else "around" if around[i] else "repeat")
             for i in np.flatnonzero(extreme | burst | around | repeat)}
    return paths, {"v": v, "zf": zf, "zb": zb, "st": st, "lb": lb, "fence": fence, "f_extreme": f_extreme,
                   "alpha": alpha, "busiest": busiest, "peoples_day": peoples_day,
                   "pk": pk, "peak_thr": peak_thr, "zthr": zthr, "svc_busiest": svc_busiest, "own_peak": own_peak,
                   "grow_thr": grow_thr}


def _service_busiest(fx):
    """Per today's client: the most flows any reference client of its main service made (0 when
    the service had no clients); without a clean servers day, the busiest other client. Without
    the clients' services (an older profile) nothing can be compared: infinite."""
    import numpy as np

    if "service" not in fx.ref or "service" not in fx.df:
        return np.full(len(fx.df), np.inf)
    top = fx.stat(("service_top2",), lambda: fx.ref.groupby("service").flows.apply(
        lambda f: sorted(f.astype(float))[-2:]).to_dict())
    first = fx.df.service.map(lambda s: top.get(s, [0.0])[-1]).to_numpy(dtype=float)
    if fx.mode != "today":
        return first
    second = fx.df.service.map(lambda s: ([0.0] + top.get(s, []))[-2]).to_numpy(dtype=float)
    return np.where(first == fx.df.flows.to_numpy(), second, first)  # itself among today's clients


def _explain_flood(fx, spec, i, path, c) -> Alert:
    df, v, st, pk = fx.df, c["v"], c["st"], c["pk"]
    row, ip = df.iloc[i], df.index[i]
    f_mod, b_mod = from_log_z(v["f_med"], v["f_sig"], c["zthr"]), from_log_z(v["b_med"], v["b_sig"], c["zthr"])
    ev = _volume_evidence(row, v, {"extreme": c["f_extreme"][i], "burst": None, "repeat": v["flows_p99"]}.get(path, f_mod),
                          b_mod if path == "around" else None)
    if path == "repeat":
        ev.append(Evidence(f"flows vs the busiest client of its service ({row.get('service') or 'unknown'})", "flows",
                           observed=int(row.flows), reference=round(float(c["svc_busiest"][i]), 1),
                           threshold=round(spec.num("busiest_ratio") * float(c["svc_busiest"][i]), 1)))
        ev.append(Evidence("variation of its request sizes (coefficient of variation of bytes sent)", "ratio",
                           observed=round(float(row.up_cv), 3), threshold=spec.num("max_size_cv")))
    ev.append(Evidence("robust z of log flows vs the clients", "z", observed=round(float(c["zf"][i]), 2),
                       reference={"clients": fx.n_ref, "spread_log": round(v["f_sig"], 3)},
                       threshold=round(c["fence"], 2) if path == "extreme" else c["zthr"] if path == "around" else None))
    ev.append(Evidence("flows in its busiest hour", "flows", observed=int(row.peak_hour_flows),
                       baseline=int(c["own_peak"][i]) if row.known and fx.own_hours is not None else None,
                       reference={"median": round(math.exp(pk["med"]), 1),
                                  "p99_fit": round(from_log_z(pk["med"], pk["sig"], Z99), 1), "busiest": round(pk["max"], 1),
                                  "clients": len(fx.ref_hours)},
                       threshold=round(c["peak_thr"], 1) if path == "burst" else None))
    if row.known:
        ev.append(Evidence("flows vs its own baseline day", "ratio", observed=round(float(row.flows / max(row.own_flows, 1)), 2),
                           baseline=1.0, threshold=spec.num("own_ratio")))
        ev.append(Evidence("flows vs its own baseline day, against how far the known clients' days change by chance "
                           "(beyond it, its own day's shape is no reference for a burst)",
                           "ratio", observed=round(float(max(row.flows, 1) / max(row.own_flows, 1)), 2),
                           threshold=round(math.exp(c["grow_thr"]), 2) if c["grow_thr"] > 0 else None))
    qtxt = ""
    if fx.quiet_hours:
        ev.append(_quiet_evidence(fx, row, st, st["thr"]))
        qtxt = f", {fmt_share(row.quiet_share)} of them in the clients' quiet hours ({fmt_hours(fx.quiet_hours)})"
    if path == "extreme" and fx.mode == "baseline":
        alpha = None if is_missing(c["alpha"]) else round(c["alpha"], 2)
        ev.append(Evidence(f"flows vs the busiest client of the baseline day (the bar: at least "
                           f"{spec.num('busiest_ratio'):g}x and, for a client keeping to the clients' day, as far as "
                           f"two days' busiest clients differ by chance on {spec.num('extreme_false_alarm_rate'):.0%} of "
                           f"days, given the clients' tail index)", "ratio", observed=round(float(row.flows / v["flows_max"]), 2),
                           reference={"busiest": v["flows_max"], "tail_index": alpha,
                                      "keeps_to_the_clients_day": bool(c["peoples_day"][i])},
                           threshold=round(float(c["busiest"][i]), 2)))
    vs_busiest = (f"two days' busiest clients differ by chance up to {c['busiest'][i]:.1f}x" if c["peoples_day"][i] else
                  "active through the clients' quiet hours, unlike the offices and NATs that are their busiest")
    how = {"extreme": ("far beyond what ordinary clients make" + (
               f" ({row.flows / v['flows_max']:.1f}x the busiest client of the baseline day; {vs_busiest})"
               if fx.mode == "baseline" else "")),
           "burst": (f"{fmt_count(row.peak_hour_flows)} of them in a single hour, while {_ref_word(fx)}' busiest hour "
                     f"is typically {fmt_count(math.exp(pk['med']))} flows (the busiest {fmt_count(pk['max'])})"),
           "around": f"heavy and around the clock (clients' median quiet-hour share {fmt_share(st['ref_med'])})",
           "repeat": (f"requests that are copies of each other (sizes vary by {row.up_cv:.0%}) to {row.get('service') or 'a service'}, "
                      + (f"whose busiest other client made {fmt_count(c['svc_busiest'][i])}" if c["svc_busiest"][i] > 0
                         else "which no other client used") + ": password guessing or a scripted call")}[path]
    msg = (f"opened {fmt_count(row.flows)} connections (flows) to the public servers today "
           f"({fmt_bytes(row.down_bytes)} served){qtxt}: {how}; {_ref_word(fx)}: median {fmt_count(v['flows_median'])}, "
           f"99th percentile {fmt_count(v['flows_p99'])} flows a day; {_own(row, fmt_count(row.own_flows) + ' flows')}")
    score = max(past_z(c["zf"][i], c["fence"]), past(row.peak_hour_flows, c["peak_thr"]),
                mean(past_z(c["zf"][i], c["zthr"]), past_share(c["lb"][i], st["thr"])))
    return Alert(rule=spec, source_ip=ip, message=f"{ip}{_origin(row)} {msg}", evidence=ev, score=score,
                 timestamp=row.first_ts,
                 details={"path": path, "z_flows": round(float(c["zf"][i]), 2), "z_bytes": round(float(c["zb"][i]), 2),
                          "extreme_fence_z": round(c["fence"], 2), "reference": fx.mode, "servers": int(row.servers),
                          "active_hours": int(row.active_hours)})


# --- external_abuse.off_hours --------------------------------------------------------------------------

@rule("external_abuse.off_hours")
def off_hours(ctx, spec) -> list[Alert]:
    """A client whose hours are improbable for the client population (hour rarity beyond the
    population's size-aware fence), mostly in the clients' quiet hours, kept up over several
    hours, on enough flows to be a pattern, unlike its own baseline day (_hours_moved), AND either all of it in
    hours hardly anyone uses (90 % of its flows at hours >= min_rarity x rarer than the busiest:
    the deep night, not a long evening) or one more cue: heavy, from an origin few clients share,
    or probing several services."""
    import numpy as np

    fx = client_features(ctx, spec)
    if _too_few(fx, spec):
        return []
    rarity, own, st, floor_rarity, profiles, rare = _hour_rarity(fx, spec)
    fence = max(st["median"] + size_aware_z(len(fx.df), spec.num("extreme_false_alarm_rate")) * st["spread"],
                math.log(spec.num("min_improbable_rarity")))
    df = fx.df
    q = len(fx.quiet_hours)
    # mostly in the quiet hours: busier per hour there than in the others (Wilson lower bound), so
    # a flat around-the-clock client is left to request_flood and unusual_origin
    inverted = wilson_lower(df.quiet_flows, df.flows, spec.num("share_confidence_z")) >= \
        _share_at_rate(spec.num("night_rate_ratio"), q) if 0 < q < DAY_HOURS else np.zeros(len(df), bool)
    improbable = ((rarity >= fence) & inverted & (df.flows.to_numpy() >= spec.num("min_flows"))
                  & (df.active_hours.to_numpy() >= spec.num("min_active_hours")) & ~(own >= fence))
    moved, moved_thr = _hours_moved(fx, spec, rarity, own)
    improbable &= moved
    deep_thr = max(math.log(spec.num("min_rarity")), st["deep_q"])
    deep = floor_rarity > deep_thr
    # hours alone are evidence only when the client came back or stayed for hours: one late
    # session is a person
    gap = spec.num("visit_gap_minutes")
    vis = _visits(ctx, df.index[improbable & deep], gap).reindex(df.index, fill_value=0)
    deep &= ((vis.visits.to_numpy() >= spec.num("min_visits"))
             | (vis.bins.to_numpy() * gap / 60.0 >= spec.num("min_presence_hours")))
    _, zf, _ = _volume(fx, spec)
    cues = {"deep night": deep, "all night": _all_night(fx, spec, rare),
            "heavy": zf >= spec.num("z_volume"), "probing": df.ports.to_numpy() >= spec.num("probe_ports")}
    hit = improbable & np.logical_or.reduce(list(cues.values()))
    return [_explain_off_hours(fx, spec, i, rarity[i], own[i], floor_rarity[i], st, (fence, deep_thr, moved_thr),
                               [k for k, v in cues.items() if v[i]], profiles[i], rare[i]) for i in np.flatnonzero(hit)]


def _hours_moved(fx, spec, rarity, own):
    """Unlike its own baseline day: a known client's hours moved further into the clients' quiet
    time than the known clients' hours move from one day to the next (their own changes, judged by
    the same size-aware fence). A night-leaning regular that leans a little further today is not
    news; a daytime regular turned night client is. New clients have no day to compare with.
    Returns (moved, the fence on the change of log rarity)."""
    import numpy as np

    change = rarity - own
    thr = _change_fence(fx, spec, change, "hours_moved", spec.num("min_flows"), 0.0)
    return np.isnan(own) | (change >= thr), thr


def _change_fence(fx, spec, change, key: str, n_min: float, floor: float) -> float:
    """How far the known clients' `change` (per today's client: today's value minus its own
    baseline day's) goes by chance from one day to the next: median + size-aware z x 1.4826 MAD
    over the clients with n_min flows on both days, the spread at least `floor`; 0 without
    min_clients of them (no fence: every change counts). Cached on the features by `key`."""
    import numpy as np

    def fence():
        df = fx.df
        both = df.known.to_numpy() & (df.flows.to_numpy() >= n_min) & (np.nan_to_num(df.own_flows.to_numpy()) >= n_min)
        d = change[both & ~np.isnan(change)]
        if len(d) < spec.num("min_clients"):
            return 0.0
        spread = max(MAD_TO_SIGMA * mad(d), floor)
        return max(median(d) + size_aware_z(len(d), spec.num("extreme_false_alarm_rate")) * spread, 0.0)
    return fx.stat((key, n_min, floor, spec.num("extreme_false_alarm_rate"), spec.num("min_clients")), fence)


def _all_night(fx, spec, rare):
    """Awake through the night: awake (_awake) in at least all_night_share of the hours its clients
    hardly use (`rare`, per client). People sleep: an evening or a late session covers the start of
    the night, not the whole of it."""
    n_rare = rare.sum(axis=1)
    covered = (_awake(fx.hours, spec) & rare).sum(axis=1)
    return (n_rare > 0) & (covered >= spec.num("all_night_share") * n_rare)


def _awake(hours, spec):
    """Per hour of `hours` (flows per hour, one row per client or one client's row): in use, with at
    least awake_share of the flows of its busiest hour. A page left open or an app syncing in the
    background trickles a few flows an hour through the night of an evening user; that is a device
    left on, not someone awake (as core_share for hosts)."""
    return (hours > 0) & (hours >= spec.num("awake_share") * hours.max(axis=-1, keepdims=True))


def _visits(ctx, ips, gap_minutes: float):
    """Per client in `ips` (a frame indexed by ip): `bins`, the gap_minutes-wide time bins it was
    active in, and `visits`, its runs of activity apart by a silent bin (only these clients' flows)."""
    import pandas as pd

    if not len(ips):
        return pd.DataFrame({"visits": [], "bins": []}, dtype=int)
    t = ctx.servers
    t = t.filter(t.src_ip.isin(list(ips)))
    b = (t.ts.epoch_seconds() / (60.0 * gap_minutes)).floor().cast("int64")
    bins = t.select(ip=t.src_ip, b=b).distinct().to_pandas().sort_values(["ip", "b"])
    bins["new_run"] = bins.groupby("ip").b.diff().fillna(2) > 1
    g = bins.groupby("ip")
    return pd.DataFrame({"visits": g.new_run.sum().astype(int), "bins": g.size().astype(int)})


def _explain_off_hours(fx, spec, i, rarity, own, floor_rarity, st, fences, cues, profile, rare) -> Alert:
    import numpy as np

    fence, deep_thr, moved_thr = fences
    row, ip = fx.df.iloc[i], fx.df.index[i]
    counts = fx.hours[i]
    top = [int(h) for h in np.argsort(-counts)[:3] if counts[h] > 0]
    busiest = int(np.argmax(profile))
    whose = "the clients'" if np.allclose(profile, _country_profiles_global(fx)) else f"{row.country} clients'"
    mine = [int(h) for h in np.flatnonzero(counts)]
    awake = int((_awake(counts, spec) & rare).sum())  # of the hours its clients hardly use
    ev = [Evidence("hour rarity: how many times less frequented its hours are than the clients' busiest hour "
                   "(geometric mean)", "ratio", observed=round(math.exp(rarity), 1),
                   baseline=None if is_missing(own) else round(math.exp(own), 1),
                   reference={"median_client": round(math.exp(st["median"]), 2),
                              "p99_client": round(math.exp(st["p99"]), 2), "clients": st["clients"]},
                   threshold=round(math.exp(fence), 2)),
          Evidence("90 % of its flows are at hours at least this many times less frequented than the busiest",
                   "ratio", observed=round(math.exp(floor_rarity), 1),
                   reference={"clients_quantile": spec.num("deep_quantile"), "value": round(math.exp(st["deep_q"]), 1)},
                   threshold=round(math.exp(deep_thr), 1)),
          Evidence("its hours", "hours", observed=mine, reference={"busiest_hour": busiest,
                                                                  "quiet_hours": list(fx.quiet_hours)}),
          Evidence(f"hours it was awake (>= {spec.num('awake_share'):.0%} of its busiest hour's flows) among those "
                   f"{whose.replace(chr(39), '')} hardly use (>= {spec.num('min_rarity'):g}x rarer than the busiest)", "hours",
                   observed=awake, reference=[int(h) for h in np.flatnonzero(rare)],
                   threshold=round(spec.num("all_night_share") * int(rare.sum()), 1)),
          Evidence(f"share of {whose} activity in its busiest hours (each client weighs one)", "share",
                   observed={f"{h:02d}h": round(float(profile[h]), 4) for h in top},
                   reference=round(float(profile[busiest]), 4)),
          Evidence("share of its flows in the clients' quiet hours", "share", observed=round(row.quiet_share, 4),
                   baseline=None if not row.known else round(float(row.own_quiet_share), 4),
                   reference={"quiet_hours": list(fx.quiet_hours)},
                   threshold=round(_share_at_rate(spec.num("night_rate_ratio"), len(fx.quiet_hours)), 4)),
          Evidence("connections (flows) to the public servers", "flows", observed=int(row.flows),
                   baseline=None if not row.known else int(row.own_flows), threshold=spec.num("min_flows")),
          Evidence("services (ports) it connected to", "ports", observed=int(row.ports), threshold=spec.num("probe_ports")),
          Evidence("hours with connections", "hours", observed=int(row.active_hours),
                   threshold=spec.num("min_active_hours"))]
    if not is_missing(own):
        ev.append(Evidence("how many times rarer its hours are than on its own baseline day (threshold: how far the "
                           "known clients' hours move from one day to the next, size-aware fence)", "ratio",
                           observed=round(math.exp(rarity - own), 2), baseline=1.0,
                           threshold=round(math.exp(moved_thr), 2)))
    said = {"all night": f"all night (awake in {awake} of the {int(rare.sum())} hours they hardly use)"}
    own_txt = (f"its baseline day: hours {math.exp(own):.1f}x rarer" if not is_missing(own) else
               _own(row, fmt_count(row.own_flows) + " flows"))
    msg = (f"opened {fmt_count(row.flows)} connections at {fmt_hours(mine)}, hours {whose.replace(chr(39), '')} "
           f"hardly use: on average {math.exp(rarity):.0f}x less frequented than their busiest hour ({busiest:02d}h); "
           f"{_ref_word(fx)}: median {math.exp(st['median']):.1f}x, 99th percentile {math.exp(st['p99']):.1f}x; "
           f"and {', '.join(said.get(c, c) for c in cues)} ({int(row.ports)} port(s)); {own_txt}")
    return Alert(rule=spec, source_ip=ip, message=f"{ip}{_origin(row)} {msg}", evidence=ev,
                 score=past(math.exp(rarity), math.exp(fence)), timestamp=row.first_ts,
                 details={"hour_rarity": round(math.exp(rarity), 2), "rarity_threshold": round(math.exp(fence), 2),
                          "cues": cues, "reference": fx.mode})


# --- external_abuse.bulk_download ----------------------------------------------------------------------

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
    min_n, floor = int(spec.num("min_flows")), spec.num("min_log_spread")

    def calc(ref):
        r = ref[ref.flows >= min_n]
        r = r if len(r) >= spec.num("min_service_clients") else ref
        med, sig = log_center_spread(r.bytes_per_flow, floor)
        return {"med": med, "sig": sig, "median": float(np.median(r.bytes_per_flow)),
                "p99": float(np.quantile(r.bytes_per_flow, 0.99)),
                "bytes_q": quantile(ref.down_bytes, spec.num("bytes_quantile")), "clients": len(ref)}
    # each client against the clients of its own service (a VPN's tunnels carry megabytes per
    # connection, a web page a few hundred kB); the whole population when the service has too few
    key = ("bpf", min_n, floor, spec.num("bytes_quantile"))
    every = fx.stat(key, lambda: calc(fx.ref))
    by_service = fx.stat(key + ("service",), lambda: {
        svc: calc(g) for svc, g in fx.ref.groupby("service") if len(g) >= spec.num("min_service_clients")}
        if "service" in fx.ref else {})
    # a service with only a handful of clients cannot give a spread, but it does say what a
    # connection to it can carry: the client must also go size_ratio beyond the largest of them
    few_max = fx.stat(key + ("few",), lambda: {
        svc: float(g.bytes_per_flow.max()) for svc, g in fx.ref.groupby("service")
        if len(g) < spec.num("min_service_clients")} if "service" in fx.ref else {})
    services = list(df.get("service", [None] * len(df)))
    sts = [by_service.get(svc, every) for svc in services]
    beyond_few = df.bytes_per_flow.to_numpy() >= spec.num("size_ratio") * np.array([few_max.get(x, 0.0) for x in services])
    med = np.array([x["med"] for x in sts])
    sig = np.array([x["sig"] for x in sts])
    median = np.array([x["median"] for x in sts])
    z = (np.log(np.maximum(df.bytes_per_flow.to_numpy(), 1.0)) - med) / sig
    ratio = df.bytes_per_flow.to_numpy() / np.maximum(median, 1.0)
    own, own_n = df.own_bytes_per_flow.to_numpy(), df.own_flows.to_numpy()
    own_ratio = df.bytes_per_flow.to_numpy() / np.maximum(np.nan_to_num(own, nan=1.0), 1.0)
    vs_own = np.where(np.isnan(own) | (np.nan_to_num(own_n) < min_n), True, own_ratio >= spec.num("size_ratio"))
    cue = ((ratio >= spec.num("size_ratio")) & (z >= spec.num("size_z")) & (df.flows.to_numpy() >= min_n)
           & (df.down_bytes.to_numpy() >= np.array([x["bytes_q"] for x in sts])) & vs_own & beyond_few)
    v, _, zb = _volume(fx, spec)
    return [_explain_bulk(fx, spec, i, {**sts[i], "service_max": few_max.get(services[i])}, v, z[i], zb[i], ratio[i])
            for i in np.flatnonzero(cue)]


def _explain_bulk(fx, spec, i, st, v, z, zb, ratio) -> Alert:
    row, ip = fx.df.iloc[i], fx.df.index[i]
    ev = [Evidence("bytes served per connection (mean)", "bytes", observed=round(float(row.bytes_per_flow)),
                   baseline=None if not row.known else round(float(row.own_bytes_per_flow)),
                   reference={"median": round(st["median"]), "p99": round(st["p99"])},
                   threshold=round(spec.num("size_ratio") * st["median"])),
          Evidence("robust z of log bytes per connection vs the clients", "z", observed=round(float(z), 2),
                   threshold=spec.num("size_z")),
          Evidence("bytes served to the client", "bytes", observed=int(row.down_bytes),
                   baseline=None if not row.known else int(row.own_down_bytes),
                   reference={"median": round(v["bytes_median"]), "p99": round(v["bytes_p99"])},
                   threshold=round(st["bytes_q"])),
          Evidence("connections (flows) to the public servers", "flows", observed=int(row.flows),
                   baseline=None if not row.known else int(row.own_flows),
                   reference={"median": round(v["flows_median"], 1), "p99": round(v["flows_p99"], 1)},
                   threshold=spec.num("min_flows"))]
    if st.get("service_max") is not None:  # a service with a handful of clients: its largest is the bound
        ev.append(Evidence(f"bytes per connection vs the largest of the few clients of {row.service} ({_ref_word(fx)})",
                           "bytes",
                           observed=round(float(row.bytes_per_flow)), reference=round(st["service_max"]),
                           threshold=round(spec.num("size_ratio") * st["service_max"])))
    own_txt = _own(row, fmt_bytes(row.own_bytes_per_flow) + " per connection")
    svc = f" of {row.service}" if st["clients"] < fx.n_ref and isinstance(row.get("service"), str) else ""
    msg = (f"downloaded {fmt_bytes(row.down_bytes)} from the public servers today in {fmt_count(row.flows)} connections, "
           f"{fmt_bytes(row.bytes_per_flow)} per connection ({ratio:.0f}x the median client{svc}); {_ref_word(fx)}{svc}: "
           f"median {fmt_bytes(st['median'])} per connection, 99th percentile {fmt_bytes(st['p99'])}; {own_txt}")
    return Alert(rule=spec, source_ip=ip, message=f"{ip}{_origin(row)} {msg}", evidence=ev,
                 score=past(ratio, spec.num("size_ratio")),
                 timestamp=row.first_ts,
                 details={"ratio_to_median": round(float(ratio), 2), "z_bytes_per_flow": round(float(z), 2),
                          "z_bytes": round(float(zb), 2), "reference": fx.mode})


# --- external_abuse.unusual_origin -------------------------------------------------------------------

@rule("external_abuse.unusual_origin")
def unusual_origin(ctx, spec) -> list[Alert]:
    """A client from a country or AS organisation that few clients come from and the internal
    hosts do not use either, machine-like around the clock: active through most hours of the day
    and keeping the clients' quiet hours, at whatever volume (heavy, or low and slow). Rarity
    alone is never enough; neither is an evening-heavy rhythm."""
    import numpy as np

    fx = client_features(ctx, spec)
    if _too_few(fx, spec):
        return []
    df = fx.df
    v, zf, zb = _volume(fx, spec)
    # A rare origin is already the surprise: the rhythm need only be flat, not beyond the clients'
    # tail -- clients abroad whose day is the site's night can put that tail above any flat rhythm.
    st, quiet_cue, lb = _quiet(fx, spec, vs_clients=False)
    heavy = zf >= spec.num("z_volume")
    window = _busiest_window_share(fx.hours, int(spec.num("window_hours")))
    steady = (df.active_hours.to_numpy() >= spec.num("around_min_hours")) & (window <= spec.num("max_window_share"))
    hit = _rare(fx, spec) & quiet_cue & _own_ratio_ok(df, spec) & steady
    return [_explain_origin(fx, spec, i, v, zf[i], zb[i], st, lb[i], heavy[i], window[i]) for i in np.flatnonzero(hit)]


def _explain_origin(fx, spec, i, v, zf, zb, st, lb, heavy, window) -> Alert:
    row, ip = fx.df.iloc[i], fx.df.index[i]
    ev, words = [], []
    for col, what in (("country", "country"), ("as_org", "AS organisation")):
        share = row[f"{col}_share"]
        ev.append(Evidence(f"share of the clients from its {what} ({row[col]})", "share",
                           observed=None if is_missing(share) else round(float(share), 5),
                           reference={"internal_hosts_using_it": round(float(row[f"{col}_host_share"]), 4)},
                           threshold={"clients": spec.num("rare_origin_share"),
                                      "internal_hosts": spec.num("familiar_host_share")}))
        if not is_missing(share):
            words.append(f"{fmt_count(share * fx.n_ref)} of {fmt_count(fx.n_ref)} from {row[col]}")
    ev += [*_volume_evidence(row, v, from_log_z(v["f_med"], v["f_sig"], spec.num("z_volume")), None),
           Evidence("robust z of log flows vs the clients", "z", observed=round(float(zf), 2),
                    reference={"clients": fx.n_ref, "spread_log": round(v["f_sig"], 3)}, threshold=spec.num("z_volume")),
           Evidence("hours with connections (machine-like: active through most of the day)", "hours",
                    observed=int(row.active_hours), threshold=spec.num("around_min_hours")),
           Evidence(f"largest share of its flows in any {int(spec.num('window_hours'))} consecutive hours (people keep to "
                    f"a part of the day)", "share", observed=round(float(window), 3),
                    threshold=spec.num("max_window_share")),
           _quiet_evidence(fx, row, st, st["thr"])]
    how = (f"active in {int(row.active_hours)} of 24 hours, " +
           ("heavy in requests" if heavy else "at an ordinary volume (low and slow)"))
    msg = (f"comes from an origin few clients share ({_ref_word(fx)}: {', '.join(words) or 'origin unknown'}; "
           f"rarely or never used by the internal hosts), {how}: {fmt_count(row.flows)} connections "
           f"({fmt_bytes(row.down_bytes)} served), {fmt_share(row.quiet_share)} of them in the clients' quiet hours "
           f"({fmt_hours(fx.quiet_hours)}); clients' median {fmt_count(v['flows_median'])} flows, 99th percentile "
           f"{fmt_count(v['flows_p99'])}, median quiet-hour share {fmt_share(st['ref_med'])}; "
           f"{_own(row, fmt_count(row.own_flows) + ' flows')}")
    score = mean(max(past_z(zf, spec.num("z_volume")), past_share(row.active_hours / DAY_HOURS,
                                                                  spec.num("around_min_hours") / DAY_HOURS)),
                 past_share(lb, st["thr"]))
    return Alert(rule=spec, source_ip=ip, message=f"{ip}{_origin(row)} {msg}", evidence=ev, score=score,
                 timestamp=row.first_ts,
                 details={"z_flows": round(float(zf), 2), "z_bytes": round(float(zb), 2), "heavy": bool(heavy),
                          "country_share": row.country_share, "as_org_share": row.as_org_share,
                          "country_internal_host_share": row.country_host_share,
                          "as_org_internal_host_share": row.as_org_host_share, "reference": fx.mode})
