"""Injected anomalies and benign changes: a plan (truth entries, day modifications, flow streams).

Streams produce flows per 10-minute bin like the background populations, so even a flood of
millions of flows never sits in memory at once. Periodic behaviour (beacons, C&C polling) is
precomputed as event times (at most a few thousand per host and day).

Scaling with `scale`: counts and byte volumes are multiplied by `scale` (so the ratio to each
host's own baseline does not depend on it); beacon periods are physical and only lengthened, by
1/sqrt(scale), below scale 1 (so small test files are not dominated by beacons).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import catalog as cat
from .model import (BIN_CS, DAY_CS, N_BINS, Batch, World, client_presence, day_shape, lerp,
                    lerp_log, window_shape)
from .scenarios import FAMILY_KINDS, Scenario


# --- streams -----------------------------------------------------------------------------------


class RateStream:
    """Poisson flows per bin on fixed channels (src, dst, service) with log-normal sizes."""

    def __init__(self, entry, src, dst, svc, lam, up_med, up_sig, dn_med, dn_sig,
                 up_lo=40, up_hi=5e9, dn_lo=40, dn_hi=5e9):
        m = len(src)
        self.entry = entry
        self.src = np.asarray(src, dtype=np.int32)
        self.dst = np.asarray(dst, dtype=np.int32)
        self.svc = np.broadcast_to(np.asarray(svc, dtype=np.int32), (m,)).copy()
        self.lam_t = np.ascontiguousarray(np.asarray(lam, dtype=np.float64).reshape(m, N_BINS).T)
        b = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), (m,)).copy()  # noqa: E731
        self.mu_up, self.up_sig = np.log(b(up_med)), b(up_sig)
        self.mu_dn, self.dn_sig = np.log(b(dn_med)), b(dn_sig)
        self.up_lo, self.up_hi, self.dn_lo, self.dn_hi = b(up_lo), b(up_hi), b(dn_lo), b(dn_hi)

    def emit(self, rng: np.random.Generator, b: int) -> Batch | None:
        counts = rng.poisson(self.lam_t[b])
        n = int(counts.sum())
        if n == 0:
            return None
        ch = np.repeat(np.arange(len(counts)), counts)
        up = np.exp(self.mu_up[ch] + self.up_sig[ch] * rng.standard_normal(n))
        dn = np.exp(self.mu_dn[ch] + self.dn_sig[ch] * rng.standard_normal(n))
        up = np.clip(np.rint(up), self.up_lo[ch], self.up_hi[ch]).astype(np.int64)
        dn = np.clip(np.rint(dn), self.dn_lo[ch], self.dn_hi[ch]).astype(np.int64)
        ts = b * BIN_CS + rng.integers(0, BIN_CS, n, dtype=np.int64)
        return Batch(ts, self.src[ch], self.dst[ch], self.svc[ch], up, dn)


class EventStream:
    """Precomputed flows (periodic beacons): emitted bin by bin."""

    def __init__(self, entry, ts, src, dst, svc, up, dn):
        order = np.argsort(ts, kind="stable")
        self.entry = entry
        self.ts = np.asarray(ts, dtype=np.int64)[order]
        n = len(self.ts)
        self.src = np.broadcast_to(np.asarray(src, dtype=np.int32), (n,))[order]
        self.dst = np.broadcast_to(np.asarray(dst, dtype=np.int32), (n,))[order]
        self.svc = np.broadcast_to(np.asarray(svc, dtype=np.int32), (n,))[order]
        self.up = np.asarray(up, dtype=np.int64)[order]
        self.dn = np.asarray(dn, dtype=np.int64)[order]
        self.bounds = np.searchsorted(self.ts, np.arange(N_BINS + 1) * BIN_CS)

    def emit(self, rng, b: int) -> Batch | None:
        lo, hi = self.bounds[b], self.bounds[b + 1]
        if hi <= lo:
            return None
        s = slice(lo, hi)
        return Batch(self.ts[s], self.src[s], self.dst[s], self.svc[s], self.up[s], self.dn[s])


def periodic_times(rng, start_h: float, end_h: float, period_s: float, jitter: float,
                   awake: np.ndarray | None = None, min_events: int = 8) -> tuple[np.ndarray, float]:
    """Event times (centiseconds) every period_s (+- jitter) within [start_h, end_h), optionally
    only in bins where `awake` is True. The period is halved until at least min_events remain;
    returns (times, effective period)."""
    t = np.zeros(0, dtype=np.int64)
    for _ in range(10):
        n = int((end_h - start_h) * 3600.0 / period_s) + 2
        gaps = period_s * np.maximum(1.0 + jitter * rng.standard_normal(n), 0.2)
        t = start_h * 3600.0 + rng.uniform(0, period_s) + np.cumsum(gaps) - gaps[0]
        t = t[t < end_h * 3600.0]
        t = np.minimum(np.rint(t * 100).astype(np.int64), DAY_CS - 1)
        if awake is not None:
            t = t[awake[t // BIN_CS]]
        if len(t) >= min_events or period_s < 20:
            break
        period_s /= 2.0
    return t, period_s


def times_from_shape(rng, n: int, shape: np.ndarray) -> np.ndarray:
    """n event times (centiseconds) distributed like a per-bin shape."""
    bins = rng.choice(N_BINS, size=n, p=shape / shape.sum())
    return bins.astype(np.int64) * BIN_CS + rng.integers(0, BIN_CS, n, dtype=np.int64)


def similar_sizes(rng, n: int, median: float, cv: float, lo: float = 40) -> np.ndarray:
    return np.maximum(np.rint(median * (1 + cv * rng.standard_normal(n))), lo).astype(np.int64)


# --- the plan ------------------------------------------------------------------------------------


@dataclass
class NewHost:
    ip_int: int
    act: float
    f_int: float
    f_dns: float
    start: float
    end: float
    ext_w: np.ndarray  # over the base external targets (padded later)


@dataclass
class HostMods:
    volume: dict[int, float] = field(default_factory=dict)
    end_shift: dict[int, float] = field(default_factory=dict)
    new_dest: dict[int, tuple[list[int], float]] = field(default_factory=dict)  # ext idx, share
    rotation: list[tuple[int, int, float]] = field(default_factory=list)  # new ext, old ext, fraction
    new_hosts: list[NewHost] = field(default_factory=list)
    keep: set[int] = field(default_factory=set)


@dataclass
class ClientMods:
    volume: dict[int, float] = field(default_factory=dict)
    present: set[int] = field(default_factory=set)  # present on both days


@dataclass
class Plan:
    anomalies: list[dict] = field(default_factory=list)
    benign: list[dict] = field(default_factory=list)
    host_mods: HostMods = field(default_factory=HostMods)
    client_mods: ClientMods = field(default_factory=ClientMods)
    test_streams: list = field(default_factory=list)
    servers_streams: list = field(default_factory=list)


class _Ctx:
    """State while planning: the world, an rng, which hosts/clients are taken, scale helpers."""

    def __init__(self, w: World, rng: np.random.Generator, scale: float):
        self.w, self.rng, self.scale = w, rng, scale
        self.padj = 1.0 / np.sqrt(min(scale, 1.0))
        self.used_hosts: set[int] = set()
        self.used_clients: set[int] = set()
        self.taken_ints: set[int] = w.known_ints()
        n = w.n_hosts
        self.act_pct = np.argsort(np.argsort(w.act)) / max(n - 1, 1)
        self.exp_flows = w.day_flows * scale * w.act
        self.shape = w.shape()
        self.plan = Plan()
        self.https = w.svcs.code("tcp", 443)
        self.dns = w.svcs.code("udp", 53)
        m = len(w.client_ints)
        tot = float((w.c_act * client_presence(w, 1)).sum())
        self.c_exp = w.servers_flows * scale * w.c_act / tot
        regular = (w.c_present > 0.5) & (w.client_kind != 2)
        ref = self.c_exp[regular] if regular.any() else self.c_exp
        self.cq = {q: float(np.quantile(ref, q / 100)) for q in (50, 75, 90, 99)}
        self.c_pct = np.argsort(np.argsort(w.c_act)) / max(m - 1, 1)
        self.c_day0 = client_presence(w, 0)
        self.used_resolvers: set[str] = set()
        self.c_shape = day_shape(w.c_start, w.c_end, w.c_width, np.full(m, 13.0), np.full(m, 0.2),
                                 np.minimum(w.c_floor, 1.0), w.deep_end, 0.3)

    # hosts ---------------------------------------------------------------------------------------
    def pick_hosts(self, k: int, mask: np.ndarray | None = None) -> list[int]:
        n = self.w.n_hosts
        free = np.array([i for i in range(n) if i not in self.used_hosts])
        pool = free if mask is None else free[mask[free]]
        if len(pool) < k:
            pool = free
        chosen = [int(x) for x in self.rng.choice(pool, size=k, replace=False)]
        self.used_hosts.update(chosen)
        self.plan.host_mods.keep.update(chosen)
        return chosen

    def hip(self, i: int) -> str:
        return self.w.host_ip(i)

    def hcode(self, i: int) -> int:
        return int(self.w.host_codes[i])

    def awake(self, i: int, thr: float = 0.2) -> np.ndarray:
        sh = self.shape[i]
        return sh >= thr * sh.max()

    def new_ip(self, cidrs) -> str:
        for _ in range(1000):
            v = int(cat.random_in(self.rng, cidrs[int(self.rng.integers(len(cidrs)))], 1)[0])
            if v not in self.taken_ints and not any(b <= v < b + s for b, s in self.w.used_nets):
                self.taken_ints.add(v)
                return cat.ip_str(v)
        raise RuntimeError("no free address")

    def public_resolver(self) -> str:
        free = [ip for ip in cat.PUBLIC_RESOLVERS if ip not in self.used_resolvers]
        ip = str(self.rng.choice(free))
        self.used_resolvers.add(ip)
        return ip

    def random_public_ip(self) -> str:
        v = cat.random_public(self.rng, self.taken_ints, cat.catalogue_nets() + self.w.used_nets)
        self.taken_ints.add(v)
        return cat.ip_str(v)

    def add_ext(self, ip: str, org: int) -> int:
        """A destination that only the test day uses (appended to the hosts' target table)."""
        w = self.w
        w.ext_ints.append(cat.ip_int(ip))
        w.ext_org = np.r_[w.ext_org, org]
        w.ext_head = np.r_[w.ext_head, False]
        w.ext_pop = np.r_[w.ext_pop, 0.0]
        w.ext_w = np.concatenate([w.ext_w, np.zeros((w.n_hosts, 1))], axis=1)
        w.book.code(ip)
        return len(w.ext_ints) - 1

    # clients -------------------------------------------------------------------------------------
    def pick_client(self, lo_pct: float, hi_pct: float) -> int:
        """A regular client that was there on the clean day (it will be there on the test day too)."""
        w = self.w
        base = self.c_day0 & (w.client_kind != 2)
        ok = base & (self.c_pct >= lo_pct) & (self.c_pct <= hi_pct) & (w.client_kind == 0)
        cand = [int(i) for i in np.flatnonzero(ok) if int(i) not in self.used_clients]
        if not cand:
            cand = [int(i) for i in np.flatnonzero(base) if int(i) not in self.used_clients]
        c = int(self.rng.choice(cand))
        self.used_clients.add(c)
        self.plan.client_mods.present.add(c)
        return c

    def entry(self, family: str, kind: str, hosts: list[str], details: dict) -> int:
        self.plan.anomalies.append({"family": family, "kind": kind, "hosts": hosts, "details": details})
        return len(self.plan.anomalies) - 1


def _client_day_shape(ctx: _Ctx) -> np.ndarray:
    r = ctx.rng
    return day_shape([r.uniform(7.5, 10)], [r.uniform(18, 22)], [0.8], [13.0], [0.2], [0.03],
                     ctx.w.deep_end, 0.3)[0]


# --- anomaly kinds -------------------------------------------------------------------------------


def _p2p_mesh(ctx: _Ctx, s: float) -> None:
    r = ctx.rng
    k = int(np.clip(round(lerp(2, 5, s) + r.uniform(-0.7, 0.7)), 2, 5))
    hosts = ctx.pick_hosts(k, ctx.act_pct > 0.15)
    choice = int(r.integers(6))
    proto, port = [("tcp", 6667), ("tcp", 8080), ("tcp", 4444), ("tcp", 445),
                   ("tcp", int(r.integers(1025, 65535))), ("udp", int(r.integers(1025, 65535)))][choice]
    topology = "mesh" if k <= 3 or r.random() < 0.6 else "star"
    if topology == "mesh":
        links = [(a, b) for a in hosts for b in hosts if a != b]
    else:
        links = [(hosts[0], b) for b in hosts[1:]] + [(b, hosts[0]) for b in hosts[1:]]
    per_link = max(8.0, lerp_log(15, 900, s) * r.uniform(0.7, 1.4) * ctx.scale)
    mix = lerp(0.1, 0.9, s)
    flat = np.full(N_BINS, 1.0 / N_BINS)
    lam = np.array([per_link * ((1 - mix) * ctx.shape[a] + mix * flat) for a, _ in links])
    svc = ctx.w.svcs.code(proto, port)
    up_med, dn_med, sig = r.uniform(150, 3000), r.uniform(150, 6000), r.uniform(0.15, 0.5)
    e = ctx.entry("botnet", "p2p_mesh", [ctx.hip(h) for h in hosts], {
        "strength": round(s, 3), "proto": proto, "port": port, "topology": topology,
        "links": [[ctx.hip(a), ctx.hip(b)] for a, b in links],
        "expected_flows_per_link": round(per_link, 1), "around_the_clock_share": round(mix, 2),
        "up_bytes_median": round(up_med), "down_bytes_median": round(dn_med)})
    ctx.plan.test_streams.append(RateStream(
        e, [ctx.hcode(a) for a, _ in links], [ctx.hcode(b) for _, b in links], svc, lam,
        up_med, sig, dn_med, sig))


def _coordinated_beacon(ctx: _Ctx, s: float) -> None:
    r = ctx.rng
    k = int(np.clip(round(lerp(2, 5, s) + r.uniform(-0.7, 0.7)), 2, 5))
    hosts = ctx.pick_hosts(k, ctx.act_pct > 0.1)
    dst = ctx.random_public_ip() if r.random() < 0.3 else ctx.new_ip(cat.ATTACKER_CIDRS)
    port = 443 if r.random() >= 0.5 * s else int(r.choice([8443, 80, 8080, 4443]))
    period = lerp_log(1800, 60, s) * r.uniform(0.8, 1.25) * ctx.padj
    jitter = lerp(0.3, 0.03, s) * r.uniform(0.8, 1.2)
    cv = lerp(0.25, 0.03, s)
    awake_only = bool(r.random() > s)
    up_med, dn_med = r.uniform(200, 1500), r.uniform(150, 4000)
    dcode = ctx.w.book.code(dst)
    svc = ctx.w.svcs.code("tcp", port)
    starts, periods = {}, {}
    e = ctx.entry("botnet", "coordinated_beacon", [ctx.hip(h) for h in hosts], {})
    for h in hosts:
        start_h = float(r.uniform(0, 10))
        t, eff = periodic_times(r, start_h, 24.0, period, jitter, ctx.awake(h) if awake_only else None)
        starts[ctx.hip(h)] = round(start_h, 2)
        periods[ctx.hip(h)] = round(eff, 1)
        ctx.plan.test_streams.append(EventStream(
            e, t, ctx.hcode(h), dcode, svc, similar_sizes(r, len(t), up_med, cv),
            similar_sizes(r, len(t), dn_med, cv)))
    ctx.plan.anomalies[e]["details"] = {
        "strength": round(s, 3), "dst_ip": dst, "proto": "tcp", "port": port,
        "period_s": periods, "jitter": round(jitter, 3), "size_cv": round(cv, 3),
        "only_while_host_active": awake_only, "start_hour": starts,
        "up_bytes_median": round(up_med), "down_bytes_median": round(dn_med)}


def _https_upload(ctx: _Ctx, s: float) -> None:
    r, w = ctx.rng, ctx.w
    mask = (ctx.act_pct > 0.4) & (ctx.act_pct < 0.95) if s < 0.5 else ctx.act_pct > 0.1
    (h,) = ctx.pick_hosts(1, mask)
    mode = str(r.choice(["new_rare", "popular_org_new_ip", "popular_known"], p=[0.4, 0.35, 0.25]))
    if mode == "new_rare":
        dst = ctx.random_public_ip() if r.random() < 0.4 else ctx.new_ip(cat.ATTACKER_CIDRS)
    elif mode == "popular_org_new_ip":
        big = [i for i, o in enumerate(cat.DEST_ORGS) if o.name.split(" ")[0] in
               ("GOOGLE", "MICROSOFT", "CLOUDFLARENET", "AMAZON-02", "FACEBOOK")]
        org = cat.DEST_ORGS[int(r.choice(big))]
        dst = ctx.new_ip(org.head_cidrs)
    else:
        head = np.flatnonzero(w.ext_head & (w.ext_w[h] > 0))
        top = head[np.argsort(-w.ext_w[h, head])][:5]
        dst = cat.ip_str(w.ext_ints[int(r.choice(top))])
    base_up = ctx.exp_flows[h] * (1 - w.f_int[h]) * float(np.exp(w.mu_up[h, 2] + 0.125))
    # a few hundred MB (stealthy) to GBs (obvious) at scale 1, and at least a few times (stealthy)
    # to tens of times (obvious) the host's own usual upload
    total = max(lerp_log(150e6, 6e9, s) * r.uniform(0.8, 1.25) * ctx.scale,
                lerp_log(3, 25, s) * r.uniform(1.0, 1.3) * base_up)
    perflow = lerp_log(0.5e6, 40e6, s) * r.uniform(0.6, 1.6)
    n = max(6.0, round(total / perflow))
    perflow = total / n
    spread = bool(r.random() > s)
    if spread:
        shape, window = ctx.shape[h], "the host's working hours"
    else:
        length = float(r.uniform(1, 4))
        if r.random() < 0.3:
            t0 = float(r.uniform(0, 5))
        else:
            t0 = float(r.uniform(w.start[h], max(w.start[h], w.end[h] - length)))
        shape, window = window_shape([(t0, t0 + length)]), [round(t0, 2), round(t0 + length, 2)]
    sig = 0.35
    e = ctx.entry("exfiltration", "https_upload", [ctx.hip(h)], {
        "strength": round(s, 3), "dst_ip": dst, "dst_kind": mode, "proto": "tcp", "port": 443,
        "target_up_bytes": int(total), "expected_flows": int(n), "window_hours": window,
        "baseline_external_up_bytes": int(base_up), "ratio_to_baseline": round(total / max(base_up, 1), 2)})
    # an exact schedule: n flows whose sizes add up to the target exactly
    n = int(n)
    ts = times_from_shape(r, n, shape)
    sizes = r.lognormal(0, sig, n)
    up = np.maximum(np.floor(sizes / sizes.sum() * total), 1000).astype(np.int64)
    up[int(np.argmax(up))] += int(total) - int(up.sum())
    dn = np.maximum(np.rint(r.lognormal(np.log(r.uniform(3000, 20000)), 0.5, n)), 500).astype(np.int64)
    ctx.plan.test_streams.append(EventStream(e, ts, ctx.hcode(h), w.book.code(dst), ctx.https, up, dn))


def _dns_tunnel(ctx: _Ctx, s: float) -> None:
    r, w = ctx.rng, ctx.w
    (h,) = ctx.pick_hosts(1, ctx.act_pct > 0.05)
    if r.random() < 0.65:
        resolver = w.book.ips[int(w.dns_codes[int(np.argmax(w.pref_dns[h]))])]
        rkind = "company_dns"
    elif r.random() < 0.5:
        resolver, rkind = ctx.public_resolver(), "public_resolver"
    else:
        resolver, rkind = ctx.random_public_ip(), "unknown_external"
    base = ctx.exp_flows[h] * w.f_int[h] * w.f_dns[h]
    mult = lerp_log(3, 40, s) * r.uniform(0.8, 1.25)
    n = max(30.0, mult * base)
    # tunnelled queries carry encoded data: clearly longer than the network's usual queries
    up_med = max(lerp(230, 900, s), lerp(1.6, 5.0, s) * w.medians["dns_up"]) * r.uniform(0.9, 1.1)
    mix = lerp(0.0, 0.6, s)
    shape = (1 - mix) * ctx.shape[h] + mix / N_BINS
    e = ctx.entry("exfiltration", "dns_tunnel", [ctx.hip(h)], {
        "strength": round(s, 3), "resolver_ip": resolver, "resolver_kind": rkind, "proto": "udp",
        "port": 53, "expected_flows": int(n), "baseline_dns_flows": round(float(base), 1),
        "flows_multiplier": round(n / max(base, 1e-9), 2), "up_bytes_median": round(up_med)})
    ctx.plan.test_streams.append(RateStream(
        e, [ctx.hcode(h)], [w.book.code(resolver)], ctx.dns, n * shape[None, :],
        up_med, 0.15, r.uniform(120, 400), 0.3, up_lo=100, up_hi=1400, dn_lo=60, dn_hi=1500))


def _dns_new_resolver(ctx: _Ctx, s: float) -> None:
    r, w = ctx.rng, ctx.w
    (h,) = ctx.pick_hosts(1, ctx.act_pct > 0.05)
    u = r.random()
    if u < 0.45:
        resolver, rkind = ctx.random_public_ip(), "random_public"
    elif u < 0.75:
        resolver, rkind = ctx.new_ip(cat.ATTACKER_CIDRS), "hosting_provider"
    else:
        resolver, rkind = ctx.public_resolver(), "public_resolver"
    period = lerp_log(3600, 60, s) * r.uniform(0.8, 1.25) * ctx.padj
    jitter = lerp(0.35, 0.05, s)
    cv = lerp(0.3, 0.05, s)
    start_h = float(r.uniform(0, 12))
    awake_only = bool(r.random() > s)
    t, period = periodic_times(r, start_h, 24.0, period, jitter, ctx.awake(h) if awake_only else None)
    up_med, dn_med = r.uniform(60, 120), r.uniform(80, 300)
    e = ctx.entry("cnc", "dns_new_resolver", [ctx.hip(h)], {
        "strength": round(s, 3), "resolver_ip": resolver, "resolver_kind": rkind, "proto": "udp",
        "port": 53, "period_s": round(period, 1), "jitter": round(jitter, 3), "start_hour": round(start_h, 2),
        "only_while_host_active": awake_only})
    ctx.plan.test_streams.append(EventStream(
        e, t, ctx.hcode(h), w.book.code(resolver), ctx.dns, similar_sizes(r, len(t), up_med, cv),
        similar_sizes(r, len(t), dn_med, cv)))


def _dns_off_hours(ctx: _Ctx, s: float) -> None:
    """DNS through the usual company resolver, periodically, in hours the host is silent: at
    least 4 edge widths (+ 0.6 h for day-to-day jitter) outside its working hours, no night floor."""
    r, w = ctx.rng, ctx.w
    margin = 0.6 + 4 * w.width
    quiet_before = w.start - margin  # silent from 0 h (no night floor) until here
    quiet_after = w.end + margin  # and from here to midnight
    ok = (w.floor == 0) & (ctx.act_pct > 0.1)
    night_ok = ok & (quiet_before >= 1.6)
    evening_ok = ok & (quiet_after <= 22.4)
    night = bool(night_ok.any() and (r.random() < 0.65 or not evening_ok.any()))
    if not night and not evening_ok.any():
        night_ok = (w.floor == 0) | (ctx.act_pct > 0)  # degenerate world: best effort
        night = True
    (h,) = ctx.pick_hosts(1, night_ok if night else evening_ok)
    if night:
        hi = max(float(quiet_before[h]), 1.0)
        t0 = float(r.uniform(0.1, max(0.2, hi - 1.5)))
        t1 = min(hi, t0 + float(r.uniform(1.5, 3.0)))
    else:
        t0 = float(quiet_after[h] + r.uniform(0, 0.5))
        t1 = min(23.95, t0 + float(r.uniform(1.5, 3.0)))
    t0, t1 = round(t0, 2), round(t1, 2)
    period = lerp_log(1800, 60, s) * r.uniform(0.8, 1.25) * ctx.padj
    jitter = lerp(0.35, 0.05, s)
    t, period = periodic_times(r, t0, t1, period, jitter, min_events=6)
    server = w.book.ips[int(w.dns_codes[int(np.argmax(w.pref_dns[h]))])]
    e = ctx.entry("cnc", "dns_off_hours", [ctx.hip(h)], {
        "strength": round(s, 3), "resolver_ip": server, "proto": "udp", "port": 53,
        "window_hours": [t0, t1], "period_s": round(period, 1), "jitter": round(jitter, 3),
        "host_baseline_hours": [round(float(w.start[h]), 2), round(float(w.end[h]), 2)]})
    ctx.plan.test_streams.append(EventStream(
        e, t, ctx.hcode(h), w.book.code(server), ctx.dns,
        similar_sizes(r, len(t), w.medians["dns_up"] * r.uniform(0.8, 1.3), 0.2),
        similar_sizes(r, len(t), w.medians["dns_dn"] * r.uniform(0.8, 1.3), 0.25)))


def _abuse(ctx: _Ctx, kind: str, s: float) -> None:
    r, w = ctx.rng, ctx.w
    q = ctx.cq
    med_up, med_dn = w.medians["srv_up"], w.medians["srv_dn"]
    existing = None
    if kind == "unusual_origin":
        ip = ctx.new_ip(cat.UNUSUAL_CLIENT_CIDRS)
    elif r.random() < 0.5:
        # a client of the clean day turns rogue: on the test day all its flows are the anomaly's
        existing = ctx.pick_client(0.3, 0.9)
        ctx.plan.client_mods.volume[existing] = 0.0
        ip = cat.ip_str(int(w.client_ints[existing]))
    else:
        pool = [c for c, _ in cat.PT_CLIENT_CIDRS] if r.random() < 0.7 else [c for c, _ in cat.FOREIGN_CLIENT_CIDRS]
        ip = ctx.new_ip(pool)
    up_med, dn_med, up_sig, dn_sig = med_up, med_dn, 0.5, 0.55
    dn_hi = 1.5e6
    day = _client_day_shape(ctx)
    flat = np.full(N_BINS, 1.0 / N_BINS)
    if kind == "flood":
        n = lerp_log(2.5, 60, s) * r.uniform(0.8, 1.25) * q[99]
        around_the_clock = bool(s < 0.4 or r.random() < 0.5)  # a weak flood always has this cue too
        shape = flat if around_the_clock else day
        details = {"flows_vs_p99_client": round(n / q[99], 2), "around_the_clock": around_the_clock}
    elif kind == "bulk_download":
        n = r.uniform(q[50], q[90]) * lerp(1, 3, s)
        dn_med = med_dn * lerp_log(5, 200, s) * r.uniform(0.8, 1.25)
        dn_hi = 5e9
        shape = day
        details = {"download_vs_median": round(dn_med / med_dn, 1)}
    elif kind == "off_hours":
        n = lerp_log(q[75], 10 * q[99], s) * r.uniform(0.8, 1.25)
        frac = lerp(0.7, 1.0, s)
        shape = frac * window_shape([(0.0, 7.0), (20.5, 24.0)]) + (1 - frac) * day
        details = {"off_hours_share": round(frac, 2), "off_hours": [[0, 7], [20.5, 24]]}
    else:  # unusual_origin: scanning / brute force from an odd country or hoster
        n = lerp_log(q[99], 20 * q[99], s) * r.uniform(0.8, 1.25)
        up_med = lerp_log(med_up, 800, s)
        dn_med = lerp_log(med_dn, 3000, s)
        shape = flat
        details = {"origin_block": next(c for c in cat.UNUSUAL_CLIENT_CIDRS
                                        if cat.net_bounds(c)[0] <= cat.ip_int(ip) < sum(cat.net_bounds(c)))}
    n = max(n, 20.0)
    npub = len(w.pub_servers)
    share = r.dirichlet(np.full(npub, 1.0)) if npub > 1 else np.ones(1)
    details = {"strength": round(s, 3), "expected_flows": int(n),
               "clients_p50_p99_flows": [round(q[50], 1), round(q[99], 1)],
               "in_clean_day": existing is not None, **details}
    e = ctx.entry("external_abuse", kind, [ip], details)
    ctx.plan.servers_streams.append(RateStream(
        e, np.full(npub, w.book.code(ip)), w.pub_codes, w.svcs.code("tcp", 443),
        n * share[:, None] * shape[None, :], up_med, up_sig, dn_med, dn_sig,
        up_lo=300, up_hi=2e5, dn_lo=500, dn_hi=dn_hi))


_KIND_FN = {
    "p2p_mesh": _p2p_mesh, "coordinated_beacon": _coordinated_beacon, "https_upload": _https_upload,
    "dns_tunnel": _dns_tunnel, "dns_new_resolver": _dns_new_resolver, "dns_off_hours": _dns_off_hours,
}


# --- benign changes ----------------------------------------------------------------------------------


def _benign(ctx: _Ctx, kind: str) -> None:
    r, w = ctx.rng, ctx.w
    mods = ctx.plan.host_mods
    B = ctx.plan.benign
    if kind == "new_device":
        free = [v for v in w.free_ints if v not in ctx.taken_ints]
        v = int(r.choice(free))
        ctx.taken_ints.add(v)
        head = np.flatnonzero(w.ext_head)
        k = int(r.integers(8, min(20, len(head)) + 1))
        top = head[np.argsort(-w.ext_pop[head])][:k]
        row = np.zeros(len(w.ext_ints))
        row[top] = w.ext_pop[top] * r.lognormal(0, 0.5, len(top))
        act = float(np.median(w.act) * r.lognormal(0, 0.5))
        nh = NewHost(v, act, float(np.median(w.f_int)), float(np.median(w.f_dns)),
                     float(np.median(w.start) + r.normal(0, 0.5)), float(np.median(w.end) + r.normal(0, 0.7)), row)
        mods.new_hosts.append(nh)
        B.append({"kind": "new_device", "hosts": [cat.ip_str(v)], "details": {
            "uses": "internal servers and the most popular external services only",
            "popular_destinations": [cat.ip_str(w.ext_ints[i]) for i in top]}})
    elif kind == "volume_increase":
        (h,) = ctx.pick_hosts(1, ctx.act_pct > 0.1)
        f = float(r.uniform(1.3, 1.8))
        mods.volume[h] = f
        B.append({"kind": "volume_increase", "hosts": [ctx.hip(h)], "details": {"factor": round(f, 2)}})
    elif kind == "new_popular_destinations":
        (h,) = ctx.pick_hosts(1, ctx.act_pct > 0.1)
        unused = np.flatnonzero(w.ext_head & (w.ext_w[h] == 0))
        k = int(r.integers(2, 6))
        chosen = [int(x) for x in r.choice(unused, size=min(len(unused), k), replace=False)] if len(unused) else []
        big = [i for i, o in enumerate(cat.DEST_ORGS) if o.weight >= 0.3]
        while len(chosen) < k:
            oi = int(r.choice(big))
            chosen.append(ctx.add_ext(ctx.new_ip(cat.DEST_ORGS[oi].head_cidrs), oi))
        share = float(r.uniform(0.05, 0.15))
        mods.new_dest[h] = (chosen, share)
        B.append({"kind": "new_popular_destinations", "hosts": [ctx.hip(h)], "details": {
            "dst_ips": [cat.ip_str(w.ext_ints[i]) for i in chosen], "share_of_external_flows": round(share, 3)}})
    elif kind == "late_worker":
        (h,) = ctx.pick_hosts(1, (ctx.act_pct > 0.1) & (w.end < 19.5))
        shift = float(min(r.uniform(2.5, 5.0), 23.5 - w.end[h]))
        mods.end_shift[h] = shift
        B.append({"kind": "late_worker", "hosts": [ctx.hip(h)], "details": {
            "baseline_end_hour": round(float(w.end[h]), 2), "test_end_hour": round(float(w.end[h] + shift), 2),
            "note": "ordinary mix of HTTPS and DNS, just later in the evening"}})
    elif kind == "busy_external_client":
        c = ctx.pick_client(0.5, 0.92)
        f = float(r.uniform(3, 6))
        ctx.plan.client_mods.volume[c] = f
        B.append({"kind": "busy_external_client", "hosts": [cat.ip_str(int(w.client_ints[c]))], "details": {
            "factor": round(f, 2), "expected_flows": int(ctx.c_exp[c] * f), "note": "daytime, ordinary sizes"}})


def _cdn_rotation(ctx: _Ctx, n: int) -> None:
    r, w = ctx.rng, ctx.w
    head = np.flatnonzero(w.ext_head)
    olds = r.choice(head, size=min(n, len(head)), replace=False)
    new_ips, pairs = [], []
    for old in olds:
        org = cat.DEST_ORGS[int(w.ext_org[old])]
        ip = ctx.new_ip(org.head_cidrs)
        new = ctx.add_ext(ip, int(w.ext_org[old]))
        frac = float(r.uniform(0.2, 0.6))
        ctx.plan.host_mods.rotation.append((new, int(old), frac))
        new_ips.append(ip)
        pairs.append({"new": ip, "takes_share_of": cat.ip_str(w.ext_ints[int(old)]), "fraction": round(frac, 2)})
    ctx.plan.benign.append({"kind": "new_cdn_addresses", "hosts": [], "details": {
        "dst_ips": new_ips, "rotations": pairs,
        "note": "popular services answering from new addresses of their own blocks; many hosts use them"}})


def make_plan(w: World, scenario: Scenario, seed: int, scale: float, scenario_key: int) -> Plan:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 3, scenario_key])))
    ctx = _Ctx(w, rng, scale)
    fams = list(scenario.families)
    if scenario.pick_families and fams:
        k = int(rng.integers(scenario.pick_families[0], scenario.pick_families[1] + 1))
        fams = [fams[i] for i in sorted(rng.choice(len(fams), size=min(k, len(fams)), replace=False))]
    lo, hi = scenario.strength
    for fam in fams:
        kinds = FAMILY_KINDS[fam]
        kmin, kmax = scenario.families[fam]
        k = int(rng.integers(kmin, kmax + 1))
        chosen = [kinds[i] for i in sorted(rng.choice(len(kinds), size=min(k, len(kinds)), replace=False))]
        for kind in chosen:
            s = float(rng.uniform(lo, hi))
            if fam == "external_abuse":
                _abuse(ctx, kind, s)
            else:
                _KIND_FN[kind](ctx, s)
    for kind, (bmin, bmax) in scenario.benign.items():
        k = int(rng.integers(bmin, bmax + 1))
        if kind == "new_cdn_addresses":
            if k:
                _cdn_rotation(ctx, k)
            continue
        for _ in range(k):
            _benign(ctx, kind)
    return ctx.plan
