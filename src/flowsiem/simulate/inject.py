"""Injected anomalies and benign changes of the test day: a plan (truth entries, day modifications,
flow streams).

Every attack draws its knobs from ranges that describe real attacks. The per-anomaly strength s
(0 = stealthiest, 1 = most obvious) sets the *signal* knobs (volumes, rates, group sizes, timer
regularity), each from its own noisy copy of s so they are not locked together; *style* knobs
(topology, ports, destinations, time of day, around the clock or not) are drawn independently of s.

Benign changes are the look-alikes real networks have: new devices (also in the evening or left on
overnight), busier hosts, new sites, late and night workers, an agent rolled out today, a newly
deployed monitoring poller, a big cloud backup, DNS sent to a public resolver, colleagues starting
to use a service on a workstation, unusual but ordinary clients of the public servers.

Scaling with `scale`: counts and byte volumes are multiplied by `scale` (so the ratio to each host's
own baseline does not depend on it); periods are physical and only lengthened, by 1/sqrt(scale),
below scale 1 (so small test files are not dominated by timers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import catalog as cat
from .model import (
    N_BINS,
    World,
    client_presence,
    day_shape,
    lerp,
    lerp_log,
    window_shape,
)
from .routines import Routines, Timer, lookups_before, timer_events
from .scenarios import FAMILY_KINDS, Scenario
from .streams import (
    EventStream,
    RateStream,
    concat_events,
    periodic_times,
    sessions,
    similar_sizes,
    times_from_shape,
)

__all__ = ["ClientMods", "EventStream", "HostMods", "NewHost", "Plan", "RateStream", "make_plan"]


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
    shape: np.ndarray | None = None  # (N_BINS,) rhythm when not office hours


@dataclass
class HostMods:
    volume: dict[int, float] = field(default_factory=dict)
    end_shift: dict[int, float] = field(default_factory=dict)
    shift: dict[int, tuple[float, float]] = field(default_factory=dict)  # night work: start, end (next morning)
    new_dest: dict[int, tuple[list[int], float]] = field(default_factory=dict)  # ext idx, share
    rotation: list[tuple[int, int, float]] = field(default_factory=list)  # new ext, old ext, fraction
    alt_dns: dict[int, tuple[int, float]] = field(default_factory=dict)  # outside resolver column, share of DNS
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


BIG_ORGS = ("GOOGLE", "MICROSOFT", "CLOUDFLARENET", "AMAZON-02", "FACEBOOK", "Akamai", "APPLE")


class _Ctx:
    """State while planning: the world, an rng, which hosts/clients are taken, scale helpers."""

    def __init__(self, w: World, rng: np.random.Generator, scale: float):
        self.w, self.rng, self.scale = w, rng, scale
        self.R: Routines = w.routines
        self.padj = 1.0 / np.sqrt(min(scale, 1.0))
        self.used_hosts: set[int] = set() if self.R.monitor is None else {self.R.monitor}
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
        self.cq = {q: float(np.quantile(ref, q / 100)) for q in (25, 50, 75, 90, 95, 99)}
        self.c_max = float(ref.max())
        self.c_pct = np.argsort(np.argsort(w.c_act)) / max(m - 1, 1)
        self.c_day0 = client_presence(w, 0)
        self.used_resolvers: set[str] = {cat.ip_str(v) for v in w.alt_dns_ints}
        shift = [hs for e, hs in zip(self.R.entries, self.R.entry_hosts) if e["kind"] == "night_worker"]
        self.day_hours = np.ones(n, bool)  # hosts with office hours on the clean day (no evening shift)
        for hs in shift:
            self.day_hours[hs] = False

    # knobs ---------------------------------------------------------------------------------------
    def kn(self, s: float) -> float:
        """A knob's own copy of the strength: s plus noise, so knobs are not locked together."""
        return float(np.clip(s + 0.2 * self.rng.standard_normal(), 0.0, 1.0))

    def group(self, s: float, lo: int = 2, hi: int = 6) -> int:
        return int(np.clip(round(lerp(lo, hi, self.kn(s)) + self.rng.uniform(-0.7, 0.7)), lo, hi))

    def jitter(self, s: float, weak: float = 0.4, strong: float = 0.02) -> float:
        return float(np.clip(lerp(weak, strong, self.kn(s)) * self.rng.uniform(0.8, 1.2), 0.02, 0.45))

    # hosts ---------------------------------------------------------------------------------------
    def free_hosts(self, mask: np.ndarray | None = None) -> np.ndarray:
        free = np.array([i for i in range(self.w.n_hosts) if i not in self.used_hosts])
        pool = free if mask is None else free[mask[free]]
        return pool

    def pick_hosts(self, k: int, mask: np.ndarray | None = None, exclusive: bool = True) -> list[int]:
        free = self.free_hosts()
        pool = self.free_hosts(mask)
        if len(pool) < k:
            pool = free
        chosen = [int(x) for x in self.rng.choice(pool, size=min(k, len(pool)), replace=False)]
        if exclusive:
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

    def on(self, i: int, user_only: bool = False) -> np.ndarray:
        """Bins the machine is on: while its user is active, or all day when it is left running
        (unless the process only runs in the user's session)."""
        if self.w.always_on[i] and not user_only:
            return np.ones(N_BINS, bool)
        return self.awake(i)

    def routine_dns(self, i: int) -> float:
        """Expected DNS lookups a day that the host's agents make before their polls."""
        on_s = float(self.on(i).sum()) * 600.0
        return sum(j.dns_p * on_s / (j.period * self.padj) for j in self.R.timers if j.src_host == i and j.dns_p > 0)

    def on_shape(self, i: int) -> np.ndarray:
        m = self.on(i).astype(float)
        return m / m.sum()

    def new_ip(self, cidrs) -> str:
        for _ in range(1000):
            v = int(cat.random_in(self.rng, cidrs[int(self.rng.integers(len(cidrs)))], 1)[0])
            if v not in self.taken_ints and not any(b <= v < b + s for b, s in self.w.used_nets):
                self.taken_ints.add(v)
                return cat.ip_str(v)
        raise RuntimeError("no free address")

    def big_org_ip(self) -> tuple[str, str]:
        big = [i for i, o in enumerate(cat.DEST_ORGS) if cat.org_is(o.name, BIG_ORGS)]
        org = cat.DEST_ORGS[int(self.rng.choice(big))]
        return self.new_ip(org.head_cidrs), org.name

    def public_resolver(self) -> str:
        free = [ip for ip in cat.PUBLIC_RESOLVERS if ip not in self.used_resolvers]
        ip = str(self.rng.choice(free))
        self.used_resolvers.add(ip)
        return ip

    def random_public_ip(self) -> str:
        v = cat.random_public(self.rng, self.taken_ints, cat.catalogue_nets() + self.w.used_nets)
        self.taken_ints.add(v)
        return cat.ip_str(v)

    def c2_address(self, p_random: float = 0.3, p_cloud: float = 0.15) -> tuple[str, str]:
        u = self.rng.random()
        if u < p_random:
            return self.random_public_ip(), "random_public"
        if u < p_random + p_cloud:
            ip, org = self.big_org_ip()
            return ip, f"cloud ({org})"
        return self.new_ip(cat.ATTACKER_CIDRS), "hosting_provider"

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
        ok = base & (self.c_pct >= lo_pct) & (self.c_pct <= hi_pct) & (w.client_kind == 0) & ~w.c_evening
        cand = [int(i) for i in np.flatnonzero(ok) if int(i) not in self.used_clients]
        if not cand:
            cand = [int(i) for i in np.flatnonzero(base) if int(i) not in self.used_clients]
        c = int(self.rng.choice(cand))
        self.used_clients.add(c)
        self.plan.client_mods.present.add(c)
        return c

    def client_ip(self, origin: str, p_existing: float = 0.0) -> tuple[str, bool, str]:
        """(ip, existing, origin): a clean-day client that changes today (its ordinary flows are
        replaced by the entry's) or a new address of the given origin."""
        if self.rng.random() < p_existing:
            c = self.pick_client(0.3, 0.9)
            self.plan.client_mods.volume[c] = 0.0
            return cat.ip_str(int(self.w.client_ints[c])), True, "clean-day client"
        if origin == "residential":
            origin = "PT residential" if self.rng.random() < 0.7 else "foreign residential"
        pools = {"PT residential": [c for c, _ in cat.PT_CLIENT_CIDRS],
                 "foreign residential": [c for c, _ in cat.FOREIGN_CLIENT_CIDRS],
                 "unusual origin": list(cat.UNUSUAL_CLIENT_CIDRS), "hosting provider": list(cat.ATTACKER_CIDRS)}
        return self.new_ip(pools[origin]), False, origin

    def servers_stream(self, key, ip: str, n: float, shape: np.ndarray, up_med, up_sig, dn_med, dn_sig,
                       svc=None, servers=None, dn_hi=1.5e6, up_hi=2e5) -> None:
        w = self.w
        codes = w.pub_codes if servers is None else np.asarray(servers, dtype=np.int32)
        k = len(codes)
        share = self.rng.dirichlet(np.full(k, 1.0)) if k > 1 else np.ones(1)
        self.plan.servers_streams.append(RateStream(
            key, np.full(k, w.book.code(ip)), codes, self.https if svc is None else svc,
            n * share[:, None] * shape[None, :], up_med, up_sig, dn_med, dn_sig,
            up_lo=300, up_hi=up_hi, dn_lo=300, dn_hi=dn_hi))

    def entry(self, family: str, kind: str, hosts: list[str], details: dict) -> tuple:
        self.plan.anomalies.append({"family": family, "kind": kind, "hosts": hosts, "details": details})
        return ("a", len(self.plan.anomalies) - 1)

    def benign(self, kind: str, hosts: list[str], details: dict) -> tuple:
        self.plan.benign.append({"kind": kind, "hosts": hosts, "details": {"days": "test", **details}})
        return ("b", len(self.plan.benign) - 1)


def _client_day_shape(ctx: _Ctx, start=(7.5, 10), end=(18, 22), floor: float = 0.03) -> np.ndarray:
    r = ctx.rng
    return day_shape([r.uniform(*start)], [r.uniform(*end)], [0.8], [13.0], [0.2], [floor],
                     ctx.w.deep_end, 0.3)[0]


def _window(ctx: _Ctx, lo: float, hi: float, length: tuple[float, float]) -> list[float]:
    ln = float(ctx.rng.uniform(*length))
    t0 = float(ctx.rng.uniform(lo, max(lo, hi - ln)))
    return [round(t0, 2), round(min(24.0, t0 + ln), 2)]


def _service(r, options) -> tuple[str, int]:
    proto, port = options[int(r.integers(len(options)))]
    if port is None:
        port = int(r.integers(1025, 65535))
    return proto, int(port)


# --- botnet -------------------------------------------------------------------------------------


def _p2p_mesh(ctx: _Ctx, s: float) -> None:
    """Peer-to-peer bots: new host-to-host links on a service the network does not use that way."""
    r, w = ctx.rng, ctx.w
    k = ctx.group(s)
    hosts = ctx.pick_hosts(k, ctx.act_pct > 0.15)
    proto, port = _service(r, [("tcp", 6667), ("tcp", 8080), ("tcp", 4444), ("tcp", 445), ("tcp", 139),
                               ("tcp", None), ("udp", None)])
    topology = "mesh" if k <= 3 or r.random() < 0.5 else "partial"
    if topology == "mesh":
        links = [(a, b) for a in hosts for b in hosts if a != b]
    else:  # each bot knows 1-3 peers (and they answer)
        links = set()
        for a in hosts:
            for b in r.choice([x for x in hosts if x != a], size=int(r.integers(1, min(3, k - 1) + 1)), replace=False):
                links.add((a, int(b)))
        links = sorted(links)
    per_link = max(6.0, lerp_log(15, 900, ctx.kn(s)) * r.uniform(0.7, 1.4) * ctx.scale)
    mix = float(r.uniform(0.0, 0.9))  # share of the traffic spread over the hours both machines are on
    lam = []
    for a, b in links:
        both = ctx.on(a) & ctx.on(b)
        flat = both / both.sum() if both.any() else np.full(N_BINS, 1.0 / N_BINS)
        lam.append(per_link * ((1 - mix) * ctx.shape[a] + mix * flat))
    svc = w.svcs.code(proto, port)
    up_med, dn_med, sig = r.uniform(150, 3000), r.uniform(150, 6000), lerp(0.6, 0.15, ctx.kn(s))
    e = ctx.entry("botnet", "p2p_mesh", [ctx.hip(h) for h in hosts], {
        "strength": round(s, 3), "proto": proto, "port": port, "topology": topology,
        "links": [[ctx.hip(a), ctx.hip(b)] for a, b in links],
        "expected_flows_per_link": round(per_link, 1), "around_the_clock_share": round(mix, 2),
        "size_sigma": round(sig, 2), "up_bytes_median": round(up_med), "down_bytes_median": round(dn_med)})
    ctx.plan.test_streams.append(RateStream(
        e, [ctx.hcode(a) for a, _ in links], [ctx.hcode(b) for _, b in links], svc, np.array(lam),
        up_med, sig, dn_med, sig))


STAR_SERVICES = [("tcp", 445), ("tcp", 139), ("tcp", 8080), ("tcp", 4444), ("tcp", 8443), ("tcp", 5985),
                 ("tcp", 50050), ("tcp", None), ("udp", None)]


def _star(ctx: _Ctx, s: float, slow: bool = False) -> None:
    """A relay: several bots poll one internal workstation (the hub, itself infected) on a timer; the
    hub usually beacons out to the C2 for all of them (e.g. SMB beacons chained through a pivot)."""
    r, w = ctx.rng, ctx.w
    k = ctx.group(s)
    (hub,) = ctx.pick_hosts(1, (ctx.act_pct > 0.1) & (ctx.act_pct < 0.95))
    pollers = ctx.pick_hosts(k, ctx.act_pct > 0.05)
    if slow:
        proto, port = ("tcp", 445) if r.random() < 0.7 else ("tcp", 139)
        period = float(r.uniform(900, 1800))
        jitter = float(r.uniform(0.05, 0.4))
    else:
        proto, port = _service(r, STAR_SERVICES)
        period = lerp_log(1800, 60, ctx.kn(s)) * r.uniform(0.8, 1.25)
        jitter = ctx.jitter(s)
    period *= ctx.padj
    cv = lerp(0.4, 0.02, ctx.kn(s))
    user_only = bool(r.random() < 0.3)
    up_med, dn_med = r.uniform(100, 1500), r.uniform(100, 3000)
    svc = w.svcs.code(proto, port)
    kind = "slow_star" if slow else "star"
    e = ctx.entry("botnet", kind, [ctx.hip(h) for h in pollers] + [ctx.hip(hub)], {})
    periods, parts = {}, []
    hub_on = ctx.on(hub)
    for p in pollers:
        start_h = float(r.uniform(0, 10))
        t, eff = periodic_times(r, start_h, 24.0, period, jitter, ctx.on(p, user_only) & hub_on,
                                min_events=6 if slow else 8)
        periods[ctx.hip(p)] = round(eff, 1)
        parts.append((t, ctx.hcode(p), ctx.hcode(hub), svc, similar_sizes(r, len(t), up_med, cv),
                      similar_sizes(r, len(t), dn_med, cv)))
    relay = None
    if r.random() < 0.6:
        dst, dkind = ctx.c2_address()
        rport = 443 if r.random() < 0.7 else int(r.choice([80, 8443, 8080]))
        rperiod = lerp_log(1800, 120, ctx.kn(s)) * r.uniform(0.8, 1.25) * ctx.padj
        t, eff = periodic_times(r, float(r.uniform(0, 10)), 24.0, rperiod, ctx.jitter(s), hub_on)
        parts.append((t, ctx.hcode(hub), w.book.code(dst), w.svcs.code("tcp", rport),
                      similar_sizes(r, len(t), r.uniform(300, 3000), cv), similar_sizes(r, len(t), r.uniform(200, 5000), cv)))
        relay = {"dst_ip": dst, "dst_kind": dkind, "proto": "tcp", "port": rport, "period_s": round(eff, 1)}
    ctx.plan.test_streams.append(concat_events(e, parts))
    ctx.plan.anomalies[e[1]]["details"] = {
        "strength": round(s, 3), "hub": ctx.hip(hub), "pollers": [ctx.hip(p) for p in pollers],
        "proto": proto, "port": port, "period_s": periods, "jitter": round(jitter, 3), "size_cv": round(cv, 3),
        "only_while_user_active": user_only, "relay": relay,
        "up_bytes_median": round(up_med), "down_bytes_median": round(dn_med)}


def _slow_star(ctx: _Ctx, s: float) -> None:
    _star(ctx, s, slow=True)


def _coordinated_beacon(ctx: _Ctx, s: float) -> None:
    """Several infected hosts beaconing to the same new external C2."""
    r, w = ctx.rng, ctx.w
    k = ctx.group(s)
    hosts = ctx.pick_hosts(k, ctx.act_pct > 0.1)
    dst, dkind = ctx.c2_address(0.25, 0.2)
    port = 443 if r.random() < 0.6 else int(r.choice([8443, 80, 8080, 4443, 8888]))
    period = lerp_log(1800, 60, ctx.kn(s)) * r.uniform(0.8, 1.25) * ctx.padj
    jitter = ctx.jitter(s)
    cv = lerp(0.35, 0.02, ctx.kn(s))
    user_only = bool(r.random() < 0.35)
    up_med, dn_med = r.uniform(200, 1500), r.uniform(150, 4000)
    # Many implants reach their C2 by a domain name (easy to move), resolving it before some
    # check-ins like any software; others carry a bare address. Both are drawn.
    dns_p = float(r.uniform(0.2, 1.0)) if r.random() < 0.4 else 0.0
    dcode = w.book.code(dst)
    svc = w.svcs.code("tcp", port)
    starts, periods, parts, lookups = {}, {}, [], 0
    e = ctx.entry("botnet", "coordinated_beacon", [ctx.hip(h) for h in hosts], {})
    for h in hosts:
        start_h = float(r.uniform(0, 10))
        t, eff = periodic_times(r, start_h, 24.0, period, jitter, ctx.on(h, user_only))
        starts[ctx.hip(h)] = round(start_h, 2)
        periods[ctx.hip(h)] = round(eff, 1)
        parts.append((t, ctx.hcode(h), dcode, svc, similar_sizes(r, len(t), up_med, cv),
                      similar_sizes(r, len(t), dn_med, cv)))
        look = lookups_before(r, t, dns_p, ctx.hcode(h), int(ctx.R.dns_of[h]), ctx.dns,
                              w.medians["dns_up"], w.medians["dns_dn"]) if dns_p and len(t) else None
        if look is not None:
            parts.append(look)
            lookups += len(look[0])
    ctx.plan.test_streams.append(concat_events(e, parts))
    ctx.plan.anomalies[e[1]]["details"] = {
        "strength": round(s, 3), "dst_ip": dst, "dst_kind": dkind, "proto": "tcp", "port": port,
        "period_s": periods, "jitter": round(jitter, 3), "size_cv": round(cv, 3),
        "only_while_user_active": user_only, "start_hour": starts,
        "up_bytes_median": round(up_med), "down_bytes_median": round(dn_med), "dns_lookup_share": round(dns_p, 2),
        "dns_lookups": lookups}  # "flows" counts them too


# --- exfiltration -----------------------------------------------------------------------------


def _https_upload(ctx: _Ctx, s: float) -> None:
    r, w = ctx.rng, ctx.w
    timing = str(r.choice(["spread", "burst", "night"], p=[0.35, 0.35, 0.3]))
    night_ok = w.always_on & (ctx.act_pct > 0.1)
    if timing == "night" and not ctx.free_hosts(night_ok).size:
        timing = "burst"
    (h,) = ctx.pick_hosts(1, night_ok if timing == "night" else ctx.act_pct > 0.1)
    mode = str(r.choice(["new_rare", "popular_org_new_ip", "popular_known"], p=[0.45, 0.4, 0.15]))
    if mode == "new_rare":
        dst = ctx.random_public_ip() if r.random() < 0.4 else ctx.new_ip(cat.ATTACKER_CIDRS)
    elif mode == "popular_org_new_ip":
        dst, _ = ctx.big_org_ip()
    else:
        head = np.flatnonzero(w.ext_head & (w.ext_w[h] > 0))
        top = head[np.argsort(-w.ext_w[h, head])][:5]
        dst = cat.ip_str(w.ext_ints[int(r.choice(top))])
    base_up = ctx.exp_flows[h] * (1 - w.f_int[h]) * float(np.exp(w.mu_up[h, 2] + 0.125))
    # ~200 MB (weak) to several GB (strong) at scale 1; to a service the host already uses only
    # big ones (a few GB); never less than twice the host's own usual upload (the evidence)
    total = lerp_log(200e6, 6e9, ctx.kn(s)) * r.uniform(0.8, 1.25) * ctx.scale
    if mode == "popular_known":
        total = max(total, r.uniform(2.5e9, 4e9) * ctx.scale)
    total = max(total, r.uniform(2.0, 3.0) * base_up)
    perflow = float(np.exp(r.uniform(np.log(1e6), np.log(100e6))))  # tool's chunk / POST size
    n = int(max(6.0, round(total / perflow)))
    if timing == "spread":
        shape, window = ctx.shape[h], "the host's working hours"
    elif timing == "burst":
        window = _window(ctx, float(w.start[h]), float(w.end[h]), (0.5, 4.0))
        shape = window_shape([tuple(window)])
    else:
        window = _window(ctx, 0.0, 5.5, (0.5, 4.0)) if r.random() < 0.6 else _window(ctx, 20.0, 24.0, (0.5, 3.5))
        shape = window_shape([tuple(window)])
    e = ctx.entry("exfiltration", "https_upload", [ctx.hip(h)], {
        "strength": round(s, 3), "dst_ip": dst, "dst_kind": mode, "proto": "tcp", "port": 443,
        "timing": timing, "target_up_bytes": int(total), "expected_flows": n, "window_hours": window,
        "baseline_external_up_bytes": int(base_up), "ratio_to_baseline": round(total / max(base_up, 1), 2)})
    # an exact schedule: n flows whose sizes add up to the target exactly
    ts = times_from_shape(r, n, shape)
    sizes = r.lognormal(0, 0.35, n)
    up = np.maximum(np.floor(sizes / sizes.sum() * total), 1000).astype(np.int64)
    up[int(np.argmax(up))] += int(total) - int(up.sum())
    dn = np.maximum(np.rint(r.lognormal(np.log(r.uniform(3000, 20000)), 0.5, n)), 500).astype(np.int64)
    ctx.plan.test_streams.append(EventStream(e, ts, ctx.hcode(h), w.book.code(dst), ctx.https, up, dn))


def _dns_tunnel(ctx: _Ctx, s: float) -> None:
    r, w = ctx.rng, ctx.w
    (h,) = ctx.pick_hosts(1, ctx.act_pct > 0.05)
    u = r.random()
    if u < 0.6:
        resolver = w.book.ips[int(ctx.R.dns_of[h])]
        rkind = "company_dns"
    elif u < 0.8:
        resolver, rkind = ctx.public_resolver(), "public_resolver"
    else:
        resolver, rkind = ctx.random_public_ip(), "unknown_external"
    base = ctx.exp_flows[h] * w.f_int[h] * w.f_dns[h] + ctx.routine_dns(h)  # its own lookups and its agents'
    mult = lerp_log(3, 40, ctx.kn(s)) * r.uniform(0.8, 1.25)
    n = max(30.0, mult * base)
    # tunnelled queries carry encoded data: longer than the network's usual queries
    up_med = max(lerp(230, 900, ctx.kn(s)), lerp(1.6, 5.0, ctx.kn(s)) * w.medians["dns_up"]) * r.uniform(0.9, 1.1)
    mix = float(r.uniform(0.0, 0.6))  # share spread over every hour the machine is on
    shape = (1 - mix) * ctx.shape[h] + mix * ctx.on_shape(h)
    e = ctx.entry("exfiltration", "dns_tunnel", [ctx.hip(h)], {
        "strength": round(s, 3), "resolver_ip": resolver, "resolver_kind": rkind, "proto": "udp",
        "port": 53, "expected_flows": int(n), "baseline_dns_flows": round(float(base), 1),
        "flows_multiplier": round(n / max(base, 1e-9), 2), "up_bytes_median": round(up_med),
        "around_the_clock_share": round(mix, 2)})
    ctx.plan.test_streams.append(RateStream(
        e, [ctx.hcode(h)], [w.book.code(resolver)], ctx.dns, n * shape[None, :],
        up_med, 0.15, r.uniform(120, 400), 0.3, up_lo=100, up_hi=1400, dn_lo=60, dn_hi=1500))


# --- C&C over DNS ---------------------------------------------------------------------------------


def _dns_new_resolver(ctx: _Ctx, s: float) -> None:
    """Periodic DNS to a resolver that is not the company's; sometimes several infected hosts of the
    same campaign use the same one."""
    r, w = ctx.rng, ctx.w
    k = int(r.choice([1, 2, 3], p=[0.6, 0.25, 0.15]))
    hosts = ctx.pick_hosts(k, ctx.act_pct > 0.05)
    u = r.random()
    if u < 0.4:
        resolver, rkind = ctx.random_public_ip(), "random_public"
    elif u < 0.7:
        resolver, rkind = ctx.new_ip(cat.ATTACKER_CIDRS), "hosting_provider"
    else:
        resolver, rkind = ctx.public_resolver(), "public_resolver"
    period = lerp_log(3600, 60, ctx.kn(s)) * r.uniform(0.8, 1.25) * ctx.padj
    jitter = ctx.jitter(s)
    cv = lerp(0.3, 0.03, ctx.kn(s))
    user_only = bool(r.random() < 0.35)
    up_med, dn_med = r.uniform(60, 120), r.uniform(80, 300)
    starts, periods, parts = {}, {}, []
    rcode = w.book.code(resolver)
    for h in hosts:
        start_h = float(r.uniform(0, 12))
        t, eff = periodic_times(r, start_h, 24.0, period, jitter, ctx.on(h, user_only))
        starts[ctx.hip(h)], periods[ctx.hip(h)] = round(start_h, 2), round(eff, 1)
        parts.append((t, ctx.hcode(h), rcode, ctx.dns, similar_sizes(r, len(t), up_med, cv),
                      similar_sizes(r, len(t), dn_med, cv)))
    e = ctx.entry("cnc", "dns_new_resolver", [ctx.hip(h) for h in hosts], {
        "strength": round(s, 3), "resolver_ip": resolver, "resolver_kind": rkind, "proto": "udp",
        "port": 53, "period_s": periods, "jitter": round(jitter, 3), "size_cv": round(cv, 3),
        "start_hour": starts, "only_while_user_active": user_only})
    ctx.plan.test_streams.append(concat_events(e, parts))


def _dns_off_hours(ctx: _Ctx, s: float) -> None:
    """DNS through the usual company resolver, periodically, in hours the host's user is away: at
    least 4 edge widths (+ 0.6 h for day-to-day jitter) outside its working hours. Most hosts are
    silent then; a machine left running (its agents poll at night on both days) is the harder case."""
    r, w = ctx.rng, ctx.w
    margin = 0.6 + 4 * w.width
    quiet_before = w.start - margin  # silent from 0 h (no night floor) until here
    quiet_after = w.end + margin  # and from here to midnight
    ok = (w.floor == 0) & (ctx.act_pct > 0.1)
    left_on = bool(r.random() < 0.35)
    ok_on = ok & w.always_on
    if left_on and ctx.free_hosts(ok_on).size:
        ok = ok_on
    else:
        left_on = False
        ok = ok & ~w.always_on
    night_ok = ok & (quiet_before >= 1.6)
    evening_ok = ok & (quiet_after <= 22.4)
    night = bool(ctx.free_hosts(night_ok).size and (r.random() < 0.65 or not ctx.free_hosts(evening_ok).size))
    if not night and not ctx.free_hosts(evening_ok).size:
        night_ok = (w.floor == 0) | (ctx.act_pct > 0)  # degenerate world: best effort
        night = True
    (h,) = ctx.pick_hosts(1, night_ok if night else evening_ok)
    if night:
        hi = max(float(quiet_before[h]), 1.0)
        t0 = float(r.uniform(0.1, max(0.2, hi - 1.5)))
        t1 = min(hi, t0 + float(r.uniform(1.5, 4.0)))
    else:
        t0 = float(quiet_after[h] + r.uniform(0, 0.5))
        t1 = min(23.95, t0 + float(r.uniform(1.5, 4.0)))
    t0, t1 = round(t0, 2), round(t1, 2)
    # on a machine left running its agents already poll at night (both days): a beacon there only
    # stands out if it is denser than their lookups, so its period is at most ~15 minutes
    period = lerp_log(900 if left_on else 1800, 60, ctx.kn(s)) * r.uniform(0.8, 1.25) * ctx.padj
    jitter = ctx.jitter(s)
    t, period = periodic_times(r, t0, t1, period, jitter, min_events=6)
    server = w.book.ips[int(ctx.R.dns_of[h])]
    e = ctx.entry("cnc", "dns_off_hours", [ctx.hip(h)], {
        "strength": round(s, 3), "resolver_ip": server, "proto": "udp", "port": 53,
        "window_hours": [t0, t1], "period_s": round(period, 1), "jitter": round(jitter, 3),
        "machine_left_on": left_on,
        "host_baseline_hours": [round(float(w.start[h]), 2), round(float(w.end[h]), 2)]})
    ctx.plan.test_streams.append(EventStream(
        e, t, ctx.hcode(h), w.book.code(server), ctx.dns,
        similar_sizes(r, len(t), w.medians["dns_up"] * r.uniform(0.8, 1.3), 0.2),
        similar_sizes(r, len(t), w.medians["dns_dn"] * r.uniform(0.8, 1.3), 0.25)))


# --- external abuse -------------------------------------------------------------------------------


def _abuse(ctx: _Ctx, kind: str, s: float) -> None:
    r, w = ctx.rng, ctx.w
    q = ctx.cq
    med_up, med_dn = w.medians["srv_up"], w.medians["srv_dn"]
    up_med, dn_med, up_sig, dn_sig = med_up, med_dn, 0.5, 0.55
    dn_hi, up_hi = 1.5e6, 2e5
    day = _client_day_shape(ctx)
    flat = np.full(N_BINS, 1.0 / N_BINS)
    svc, servers, events = None, None, None
    origin_pick = str(r.choice(["residential", "hosting provider"], p=[0.7, 0.3]))
    if kind == "flood":
        ip, existing, origin = ctx.client_ip(origin_pick, 0.4)
        n = lerp_log(2.5, 60, ctx.kn(s)) * r.uniform(0.8, 1.25) * q[99]
        timing = str(r.choice(["daytime", "burst", "around_the_clock"], p=[0.4, 0.3, 0.3]))
        if timing == "daytime":
            shape, window = day, None
        elif timing == "burst":
            window = _window(ctx, 8.0, 21.0, (0.5, 4.0))
            shape = window_shape([tuple(window)])
        else:
            shape, window = flat, [0, 24]
        details = {"flows_vs_p99_client": round(n / q[99], 2), "timing": timing, "window_hours": window}
    elif kind == "bulk_download":
        ip, existing, origin = ctx.client_ip(origin_pick, 0.4)
        n = r.uniform(q[50], q[90]) * lerp(1, 3, ctx.kn(s))
        dn_med = med_dn * lerp_log(5, 200, ctx.kn(s)) * r.uniform(0.8, 1.25)
        dn_hi = 5e9
        evening = bool(r.random() < 0.3)
        shape = _client_day_shape(ctx, (17, 19.5), (22.5, 23.8)) if evening else day
        details = {"download_vs_median": round(dn_med / med_dn, 1), "timing": "evening" if evening else "daytime"}
    elif kind == "off_hours":
        ip, existing, origin = ctx.client_ip(origin_pick, 0.4)
        n = lerp_log(q[75], 10 * q[99], ctx.kn(s)) * r.uniform(0.8, 1.25)
        frac = float(r.uniform(0.7, 1.0))
        shape = frac * window_shape([(0.0, 7.0), (20.5, 24.0)]) + (1 - frac) * day
        details = {"off_hours_share": round(frac, 2), "off_hours": [[0, 7], [20.5, 24]]}
    elif kind == "unusual_origin":  # heavy scanning / scraping from an odd country or hoster
        ip, existing, origin = ctx.client_ip("unusual origin")
        n = lerp_log(q[99], 20 * q[99], ctx.kn(s)) * r.uniform(0.8, 1.25)
        up_med = lerp_log(med_up, 800, ctx.kn(s))
        dn_med = lerp_log(med_dn, 3000, ctx.kn(s))
        shape = flat
        details = {}
    elif kind == "low_and_slow":
        # ordinary volume, but a machine: requests on a timer around the clock, from a rare origin
        ip, existing, origin = ctx.client_ip("unusual origin" if r.random() < 0.6 else "hosting provider")
        n = max(24.0, r.uniform(q[50], q[90]))
        period = 86400.0 / n
        jitter = float(np.clip(lerp(0.5, 0.05, ctx.kn(s)) * r.uniform(0.8, 1.2), 0.03, 0.6))
        cv = lerp(0.4, 0.05, ctx.kn(s))
        t, _ = periodic_times(r, 0.0, 24.0, period, jitter, min_events=0)
        srv = w.pub_codes[r.integers(0, len(w.pub_codes), len(t))]
        events = (t, srv, similar_sizes(r, len(t), r.uniform(400, 2500), cv, 300),
                  similar_sizes(r, len(t), r.uniform(1500, 40000), cv, 300))
        shape = flat
        details = {"period_s": round(period, 1), "jitter": round(jitter, 3), "size_cv": round(cv, 3),
                   "flows_vs_median_client": round(n / q[50], 2)}
    elif kind == "deep_night":
        ip, existing, origin = ctx.client_ip(str(r.choice(
            ["PT residential", "foreign residential", "unusual origin", "hosting provider"], p=[0.4, 0.2, 0.2, 0.2])))
        n = max(8.0, lerp_log(q[25], q[90], ctx.kn(s)) * r.uniform(0.8, 1.25))
        window = _window(ctx, 1.0, 5.0, (1.5, 4.0))
        shape = window_shape([tuple(window)])
        details = {"window_hours": window, "flows_vs_median_client": round(n / q[50], 2)}
    else:  # brute_force: many short connections to one login service, from a hosting provider
        ip, existing, origin = ctx.client_ip("hosting provider")
        n = lerp_log(q[99], 30 * q[99], ctx.kn(s)) * r.uniform(0.8, 1.25)
        ssh = ctx.R.ssh_server is not None and r.random() < 0.7
        target = ctx.R.ssh_server if ssh else w.pub_servers[int(r.integers(len(w.pub_servers)))]["ip"]
        servers = [w.book.code(target)]
        svc = w.svcs.code("tcp", 22) if ssh else ctx.https
        if ssh:
            up_med, dn_med = r.uniform(1500, 3200), r.uniform(2000, 4200)
        else:
            up_med, dn_med = r.uniform(700, 2000), r.uniform(500, 3000)
        up_sig = dn_sig = lerp(0.25, 0.05, ctx.kn(s))
        timing = str(r.choice(["around_the_clock", "window"]))
        window = [0, 24] if timing == "around_the_clock" else _window(ctx, 0.0, 24.0, (1.0, 6.0))
        shape = window_shape([tuple(window)])
        details = {"target": target, "proto": "tcp", "port": 22 if ssh else 443,
                   "endpoint": "ssh" if ssh else "login page", "timing": timing, "window_hours": window,
                   "flows_vs_p99_client": round(n / q[99], 2)}
    n = max(n, 20.0)
    details = {"strength": round(s, 3), "expected_flows": int(n) if events is None else len(events[0]),
               "clients_p50_p99_flows": [round(q[50], 1), round(q[99], 1)],
               "in_clean_day": existing, "origin": origin, **details}
    if kind in ("unusual_origin", "low_and_slow"):
        details["origin_block"] = next((c for c in cat.UNUSUAL_CLIENT_CIDRS + cat.ATTACKER_CIDRS
                                        if cat.net_bounds(c)[0] <= cat.ip_int(ip) < sum(cat.net_bounds(c))), None)
    e = ctx.entry("external_abuse", kind, [ip], details)
    if events is not None:
        t, srv, up, dn = events
        ctx.plan.servers_streams.append(EventStream(e, t, w.book.code(ip), srv, ctx.https, up, dn))
        return
    ctx.servers_stream(e, ip, n, shape, up_med, up_sig, dn_med, dn_sig, svc=svc, servers=servers,
                       dn_hi=dn_hi, up_hi=up_hi)


_KIND_FN = {
    "p2p_mesh": _p2p_mesh, "star": _star, "slow_star": _slow_star, "coordinated_beacon": _coordinated_beacon,
    "https_upload": _https_upload, "dns_tunnel": _dns_tunnel, "dns_new_resolver": _dns_new_resolver,
    "dns_off_hours": _dns_off_hours,
}


# --- benign changes ----------------------------------------------------------------------------------


def _new_device(ctx: _Ctx) -> None:
    r, w = ctx.rng, ctx.w
    free = [v for v in w.free_ints if v not in ctx.taken_ints]
    if not free:
        return
    v = int(r.choice(free))
    ctx.taken_ints.add(v)
    head = np.flatnonzero(w.ext_head[: w.n_base_ext])
    k = int(r.integers(8, min(20, len(head)) + 1))
    top = head[np.argsort(-w.ext_pop[head])][:k]
    tail = np.flatnonzero(~w.ext_head[: w.n_base_ext])
    mine = r.choice(tail, size=min(len(tail), int(r.integers(2, 12))), replace=False,
                    p=w.ext_pop[tail] / w.ext_pop[tail].sum()) if len(tail) else np.zeros(0, int)
    row = np.zeros(len(w.ext_ints))
    row[top] = w.ext_pop[top] * r.lognormal(0, 0.5, len(top))
    if len(mine):
        row[mine] = row[top].sum() * r.uniform(0.03, 0.2) * r.dirichlet(np.ones(len(mine)))
    rhythm = str(r.choice(["office", "evening", "overnight"], p=[0.6, 0.2, 0.2]))
    act = float(np.median(w.act) * r.lognormal(0, 0.5))
    start, end = float(np.median(w.start) + r.normal(0, 0.5)), float(np.median(w.end) + r.normal(0, 0.7))
    shape = None
    if rhythm == "evening":  # a laptop used after dinner
        start, end = float(r.uniform(17.0, 20.0)), float(r.uniform(22.5, 23.9))
        act *= r.uniform(0.2, 0.8)
    elif rhythm == "overnight":  # left on: a few lookups and web flows through the night
        act *= r.uniform(0.03, 0.2)
        shape = 0.3 * np.full(N_BINS, 1.0 / N_BINS) + 0.7 * window_shape([(0.0, 7.0), (19.0, 24.0)])
    nh = NewHost(v, act, float(np.median(w.f_int)), float(np.median(w.f_dns)), start, end, row, shape)
    ctx.plan.host_mods.new_hosts.append(nh)
    ctx.benign("new_device", [cat.ip_str(v)], {
        "rhythm": rhythm, "hours": None if shape is not None else [round(start, 2), round(end, 2)],
        "uses": "internal servers, the most popular external services and a few sites of its own",
        "destinations": [cat.ip_str(w.ext_ints[i]) for i in np.r_[top, mine].astype(int)]})


def _new_agent(ctx: _Ctx) -> None:
    """An agent rolled out today to a group of hosts, polling a new address of a big vendor."""
    r, w = ctx.rng, ctx.w
    k = int(np.clip(round(r.uniform(3, 25)), 3, max(3, w.n_hosts // 3)))
    roll = float(r.uniform(9, 15))
    # the deployment tool reaches the machines that are on after the rollout starts; each installs
    # the agent within half an hour of coming online, and the agent checks in right away
    on = np.array([ctx.on(i) for i in range(w.n_hosts)])
    b0 = int(roll * 6)
    reachable = on[:, b0:].any(axis=1) & (ctx.act_pct > 0.02)
    hosts = ctx.pick_hosts(k, reachable, exclusive=False)
    hosts = [h for h in hosts if on[h, b0:].any()]
    install = {h: max(roll, (b0 + int(np.argmax(on[h, b0:]))) / 6.0) + r.uniform(0, 0.5) for h in hosts}
    hosts = [h for h in hosts if install[h] < 23.9]
    if not hosts:
        return
    dst, org = ctx.big_org_ip()
    period = float(np.exp(r.uniform(np.log(120), np.log(3600))))
    jitter = float(r.uniform(0.02, 0.3))
    cv = float(r.uniform(0.05, 0.5))
    up, dn = float(r.uniform(400, 3000)), float(r.uniform(300, 8000))
    dns_p = float(r.uniform(0.2, 1.0))
    e = ctx.benign("periodic_updater", [ctx.hip(h) for h in hosts], {
        "vendor": org, "dst_ips": [dst], "also_browsed": [], "proto": "tcp", "port": 443, "period_s": round(period, 1),
        "jitter": round(jitter, 3), "size_cv": round(cv, 3), "dns_lookup_share": round(dns_p, 2),
        "rollout_hour": round(roll, 2), "new_today": True,
        "note": "a new agent pushed today to a group of hosts; polls a new address of a big vendor"})
    code = w.book.code(dst)
    jobs = [Timer(0, h, ctx.hcode(h), code, ctx.https, h, period * ctx.padj * r.uniform(0.97, 1.03), jitter,
                  install[h], up, cv, dn, cv, dns_p, first_at_start=True) for h in hosts]
    parts = timer_events(r, jobs, on, 1.0, ctx.R.dns_of, ctx.dns, w.medians["dns_up"], w.medians["dns_dn"])
    st = concat_events(e, parts)
    if st is not None:
        ctx.plan.test_streams.append(st)


MONITOR_SERVICES = [("udp", 161), ("tcp", 10050), ("tcp", 9100), ("tcp", 5985), ("tcp", 9182)]


def _new_monitoring(ctx: _Ctx) -> None:
    """A monitoring poller deployed today: one host polls many on a timer (fan-out, tiny requests)."""
    r, w = ctx.rng, ctx.w
    (m,) = ctx.pick_hosts(1, ctx.act_pct < 0.6)
    used = {(t.svc) for t in ctx.R.timers}
    opts = [x for x in MONITOR_SERVICES if w.svcs.code(*x) not in used] or MONITOR_SERVICES
    proto, port = opts[int(r.integers(len(opts)))]
    svc = w.svcs.code(proto, port)
    targets = [int(x) for x in np.flatnonzero(r.random(w.n_hosts) < r.uniform(0.1, 0.6)) if x != m]
    period = float(np.exp(r.uniform(np.log(120), np.log(900))))
    jitter = float(r.uniform(0.002, 0.05))
    t0 = float(r.uniform(9, 16))
    up, dn = (r.uniform(80, 250), r.uniform(100, 1400)) if proto == "udp" else (r.uniform(100, 400), r.uniform(200, 4000))
    e = ctx.benign("monitoring_poller", [ctx.hip(m)], {
        "service": {"proto": proto, "port": port}, "targets": [ctx.hip(t) for t in targets],
        "period_s": round(period, 1), "jitter": round(jitter, 4), "deployed_hour": round(t0, 2), "new_today": True,
        "note": "newly deployed monitoring: one host polls many (fan-out) on a tight timer"})
    jobs = [Timer(0, m, ctx.hcode(m), ctx.hcode(t), svc, t, period * ctx.padj, jitter, t0, up, 0.05, dn, 0.2,
                  first_at_start=True) for t in targets]
    jobs += [Timer(0, m, ctx.hcode(m), int(s["code"]), svc, -1, period * ctx.padj, jitter, t0, up, 0.05, dn, 0.2,
                   first_at_start=True) for s in w.servers]
    on = np.array([ctx.on(i) for i in range(w.n_hosts)])
    st = concat_events(e, timer_events(r, jobs, on, 1.0, None, 0, 0, 0))
    if st is not None:
        ctx.plan.test_streams.append(st)


def _cloud_backup(ctx: _Ctx) -> None:
    """A sync client uploading a few hundred MB to ~2 GB in working hours (someone dropped a folder
    into OneDrive/Dropbox) to the service it already used on the clean day."""
    r, w = ctx.rng, ctx.w
    cand = [h for h in sorted(ctx.R.sync) if h not in ctx.used_hosts]
    if not cand:
        return
    h = int(r.choice(cand))
    ctx.used_hosts.add(h)
    ctx.plan.host_mods.keep.add(h)
    info = ctx.R.sync[h]
    total = float(np.exp(r.uniform(np.log(200e6), np.log(2e9)))) * ctx.scale
    chunk = float(np.exp(r.uniform(np.log(4e6), np.log(64e6))))
    n = int(max(4, round(total / chunk)))
    window = _window(ctx, float(w.start[h]) + 0.3, float(w.end[h]) - 0.3, (0.5, 4.0))
    e = ctx.benign("cloud_backup", [ctx.hip(h)], {
        "service": info["service"], "org": info["org"], "dst_ip": info["dst_ip"], "proto": "tcp", "port": 443,
        "target_up_bytes": int(total), "expected_flows": n, "window_hours": window,
        "note": "a big upload to the sync service the host already used on the clean day"})
    ts = times_from_shape(r, n, window_shape([tuple(window)]))
    sizes = r.lognormal(0, 0.3, n)
    up = np.maximum(np.floor(sizes / sizes.sum() * total), 1000).astype(np.int64)
    up[int(np.argmax(up))] += int(total) - int(up.sum())
    dn = np.maximum(np.rint(r.lognormal(np.log(3000), 0.4, n)), 500).astype(np.int64)
    ctx.plan.test_streams.append(EventStream(e, ts, ctx.hcode(h), w.book.code(info["dst_ip"]), ctx.https, up, dn))


def _public_resolver_today(ctx: _Ctx) -> None:
    r, w = ctx.rng, ctx.w
    (h,) = ctx.pick_hosts(1, (w.alt_col < 0) & (ctx.act_pct > 0.3))
    free = [ip for ip in cat.PUBLIC_RESOLVERS[:5] if ip not in ctx.used_resolvers] or list(cat.PUBLIC_RESOLVERS[:5])
    ip = str(r.choice(free))
    v = cat.ip_int(ip)
    if v not in w.alt_dns_ints:
        w.alt_dns_ints.append(v)
        w.book.code(ip)
    share = float(r.uniform(0.2, 0.8))
    ctx.plan.host_mods.alt_dns[h] = (w.alt_dns_ints.index(v), share)
    ctx.benign("public_resolver", [ctx.hip(h)], {
        "resolvers": {ctx.hip(h): ip}, "share_of_dns": {ctx.hip(h): round(share, 2)}, "new_today": True,
        "note": "user-driven lookups (Poisson, the host's working hours), not a timer"})


SHARED_SERVICES = {
    "file_share": [("tcp", 445)],
    "dev_web_server": [("tcp", 8080), ("tcp", 8000), ("tcp", 3000), ("tcp", 5000)],
    "screen_share": [("tcp", 5900), ("tcp", 3389)],
}


def _shared_service(ctx: _Ctx) -> None:
    """Colleagues start using a service on a colleague's workstation: human sessions, working hours."""
    r, w = ctx.rng, ctx.w
    (hub,) = ctx.pick_hosts(1, (ctx.act_pct > 0.1) & (ctx.act_pct < 0.97))
    what = str(r.choice(list(SHARED_SERVICES), p=[0.35, 0.35, 0.3]))
    proto, port = SHARED_SERVICES[what][int(r.integers(len(SHARED_SERVICES[what])))]
    svc = w.svcs.code(proto, port)
    k = int(r.integers(3, 9))
    users = ctx.pick_hosts(k, ctx.act_pct > 0.05)
    parts, flows = [], {}
    hub_awake = ctx.awake(hub)
    for u in users:
        f = int(max(4, round(r.uniform(20, 300) * ctx.scale)))
        shape = ctx.shape[u] * hub_awake
        if shape.sum() <= 0:
            shape = ctx.shape[u]
        t = sessions(r, int(r.poisson(r.uniform(1.5, 6))) or 1, f, shape, 120, 3600)
        n = len(t)
        if what == "file_share":
            up = np.clip(np.rint(r.lognormal(np.log(3000), 1.2, n)), 200, 5e8)
            dn = np.clip(np.rint(r.lognormal(np.log(60000), 1.8, n)), 300, 2e9)
        elif what == "dev_web_server":
            up = np.clip(np.rint(r.lognormal(np.log(1200), 0.6, n)), 200, 1e7)
            dn = np.clip(np.rint(r.lognormal(np.log(20000), 1.3, n)), 300, 1e8)
        else:
            up = np.clip(np.rint(r.lognormal(np.log(200e3), 1.0, n)), 2000, 1e9)
            dn = np.clip(np.rint(r.lognormal(np.log(5e6), 1.2, n)), 5000, 5e9)
        parts.append((t, ctx.hcode(u), ctx.hcode(hub), svc, up.astype(np.int64), dn.astype(np.int64)))
        flows[ctx.hip(u)] = n
    e = ctx.benign("shared_service", [ctx.hip(hub)] + [ctx.hip(u) for u in users], {
        "hub": ctx.hip(hub), "users": [ctx.hip(u) for u in users], "service": what, "proto": proto, "port": port,
        "expected_flows_per_user": flows,
        "note": "colleagues use a service on a workstation: human sessions in working hours, not a timer"})
    ctx.plan.test_streams.append(concat_events(e, parts))


def _external_client(ctx: _Ctx, kind: str) -> None:
    r, w = ctx.rng, ctx.w
    q = ctx.cq
    med_up, med_dn = w.medians["srv_up"], w.medians["srv_dn"]
    if kind == "evening_client":
        ip, existing, origin = ctx.client_ip("residential", 0.5)
        n = r.uniform(q[50], q[99])
        shape = _client_day_shape(ctx, (18.0, 20.0), (23.0, 23.9), 0.003)
        details = {"hours": "evening only", "note": "a home user after work, ordinary requests"}
    elif kind == "late_night_client":
        ip, existing, origin = ctx.client_ip("residential", 0.5)
        n = r.uniform(q[50], q[95])
        end = float(r.uniform(1.5, 3.0))
        share = float(r.uniform(0.25, 0.4))
        shape = (1 - share) * window_shape([(float(r.uniform(18.5, 20.5)), 24.0)]) + share * window_shape([(0.0, end)])
        details = {"after_midnight_share": round(share, 2), "until_hour": round(end, 2),
                   "note": "works late: about a third of its flows after midnight, ordinary requests"}
    else:  # busy_external_client
        if r.random() < 0.5:
            c = ctx.pick_client(0.5, 0.92)
            f = float(r.uniform(2, 6))
            ctx.plan.client_mods.volume[c] = f
            ctx.benign("busy_external_client", [cat.ip_str(int(w.client_ints[c]))], {
                "variant": "busier", "factor": round(f, 2), "expected_flows": int(ctx.c_exp[c] * f),
                "note": "its own rhythm and ordinary sizes"})
            return
        ip, existing, origin = ctx.client_ip("PT residential", 0.6)
        n = ctx.c_max * r.uniform(1.0, 2.0)
        shape = window_shape([(float(r.uniform(8, 9.5)), float(r.uniform(17.5, 19.5)))])
        details = {"variant": "above_busiest", "vs_busiest_clean_client": round(n / ctx.c_max, 2),
                   "note": "business hours, ordinary request sizes"}
    e = ctx.benign(kind, [ip], {"expected_flows": int(n), "in_clean_day": existing, "origin": origin, **details})
    ctx.servers_stream(e, ip, max(n, 4.0), shape, med_up, 0.5, med_dn, 0.55)


def _benign(ctx: _Ctx, kind: str) -> None:
    r, w = ctx.rng, ctx.w
    mods = ctx.plan.host_mods
    if kind == "new_device":
        _new_device(ctx)
    elif kind == "volume_increase":
        (h,) = ctx.pick_hosts(1, ctx.act_pct > 0.1)
        f = float(np.exp(r.uniform(np.log(1.3), np.log(3.0))))
        mods.volume[h] = f
        ctx.benign("volume_increase", [ctx.hip(h)], {"factor": round(f, 2)})
    elif kind == "new_popular_destinations":
        (h,) = ctx.pick_hosts(1, ctx.act_pct > 0.1)
        agents = {t.dst for t in ctx.R.timers if t.src_host == h}  # its agents' endpoints are not new
        unused = np.array([i for i in np.flatnonzero(w.ext_head & (w.ext_w[h] == 0))
                           if w.book.index[cat.ip_str(w.ext_ints[i])] not in agents], dtype=int)
        k = int(r.integers(2, 7))
        chosen = [int(x) for x in r.choice(unused, size=min(len(unused), k), replace=False)] if len(unused) else []
        big = [i for i, o in enumerate(cat.DEST_ORGS) if o.weight >= 0.3]
        while len(chosen) < k:
            oi = int(r.choice(big))
            chosen.append(ctx.add_ext(ctx.new_ip(cat.DEST_ORGS[oi].head_cidrs), oi))
        share = float(r.uniform(0.05, 0.3))
        mods.new_dest[h] = (chosen, share)
        ctx.benign("new_popular_destinations", [ctx.hip(h)], {
            "dst_ips": [cat.ip_str(w.ext_ints[i]) for i in chosen], "share_of_external_flows": round(share, 3),
            "expected_flows": round(share * float(ctx.exp_flows[h] * (1 - w.f_int[h])), 1)})
    elif kind == "late_worker":
        (h,) = ctx.pick_hosts(1, (ctx.act_pct > 0.1) & (w.end < 19.5) & ctx.day_hours)
        shift = float(min(r.uniform(1.5, 5.0), 23.5 - w.end[h]))
        mods.end_shift[h] = shift
        ctx.benign("late_worker", [ctx.hip(h)], {
            "baseline_end_hour": round(float(w.end[h]), 2), "test_end_hour": round(float(w.end[h] + shift), 2),
            "note": "ordinary mix of HTTPS and DNS, just later in the evening"})
    elif kind == "night_worker":
        (h,) = ctx.pick_hosts(1, (ctx.act_pct > 0.1) & (w.end < 20.0) & ctx.day_hours)
        start, end = float(r.uniform(18.0, 22.0)), float(r.uniform(0.5, 4.0))
        mods.shift[h] = (start, end)
        ctx.benign("night_worker", [ctx.hip(h)], {
            "baseline_hours": [round(float(w.start[h]), 2), round(float(w.end[h]), 2)],
            "test_hours": [round(start, 2), round(end, 2)],
            "note": "worked tonight: ordinary mix of HTTPS and DNS from the evening into the early hours"})
    elif kind == "periodic_updater":
        _new_agent(ctx)
    elif kind == "monitoring_poller":
        _new_monitoring(ctx)
    elif kind == "cloud_backup":
        _cloud_backup(ctx)
    elif kind == "public_resolver":
        _public_resolver_today(ctx)
    elif kind == "shared_service":
        _shared_service(ctx)
    elif kind in ("busy_external_client", "evening_client", "late_night_client"):
        _external_client(ctx, kind)
    else:
        raise ValueError(f"benign kind {kind!r} cannot be planned (it is part of the world)")


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
    ctx.benign("new_cdn_addresses", [], {
        "dst_ips": new_ips, "rotations": pairs,
        "note": "popular services answering from new addresses of their own blocks; many hosts use them"})


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
