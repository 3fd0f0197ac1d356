"""The company's own routines: behaviour present on BOTH days, built from the seed only.

Real office networks are full of machine-driven traffic that looks like an attack at first sight, and
all of it is in the clean day too (so a baseline knows it):

  periodic_updater   agents (OS/browser updaters, telemetry, endpoint protection) on most workstations
                     polling a vendor's popular HTTPS service on a timer with jitter, often after a DNS
                     lookup; machines left on overnight keep polling, laptops only while in use
  ntp_sync           time sync: udp/123 to a few public NTP servers every 256-2048 s, 76-byte packets
  monitoring_poller  an internal monitoring box polling many hosts (SNMP udp/161 or an agent port)
                     around the clock, every 1-10 minutes
  nas_backup         nightly backup of workstations to an internal NAS (SMB, rsync or SSH); machines
                     that were off at night catch up when switched on
  cloud_sync         a sync client (OneDrive, Google Drive, Dropbox, iCloud): document uploads when the
                     user saves, plus change polls on a timer
  public_resolver    a host sending part of its DNS straight to 8.8.8.8 & co. (user-driven, Poisson)
  night_worker       an evening shift (both days)
  search_crawler, uptime_monitor, evening_client: clients of the public servers (crawlers are in the
                     client population; uptime monitors poll on a timer around the clock; evening-only
                     home users are part of the population); some public servers also expose SSH
                     to a few administrators

Periods are physical; below scale 1 they are lengthened by 1/sqrt(scale) like the injected beacons, so
small files are not dominated by timers. Counts and volumes follow `scale`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import catalog as cat
from .model import BIN_CS, DAY_CS, World, client_presence, window_shape
from .streams import (
    EventStream,
    concat_events,
    sessions,
    similar_sizes,
    timer_times,
    times_from_shape,
)


@dataclass
class Timer:
    """One software timer: src polls dst every `period` s (+- jitter) while host `gate` is on."""

    entry: int
    src_host: int  # internal host index of the source (-1: an external client)
    src: int  # address code
    dst: int
    svc: int
    gate: int  # host index whose on-hours gate the polls (-1: around the clock)
    period: float
    jitter: float
    start_h: float
    up_med: float
    up_cv: float
    dn_med: float
    dn_cv: float
    dns_p: float = 0.0  # probability a poll is preceded by a DNS lookup (company resolver)
    payload_p: float = 0.0  # probability a poll downloads an update payload
    payload_med: float = 0.0
    first_at_start: bool = False  # checks in at start_h (installed / deployed then), then every period


@dataclass
class Routines:
    entries: list[dict] = field(default_factory=list)  # world-level benign entries (truth), hosts as ips
    entry_hosts: list[list[int]] = field(default_factory=list)  # internal host indices per entry ([] for clients)
    timers: list[Timer] = field(default_factory=list)  # internal sources
    client_timers: list[Timer] = field(default_factory=list)  # external clients -> public servers
    backups: list[tuple] = field(default_factory=list)  # (entry, host, sched_h, vol_med, chunk, dst, svc)
    uploads: list[tuple] = field(default_factory=list)  # (entry, host, per_day, size_med, dst, svc)
    ssh: list[tuple] = field(default_factory=list)  # (entry, client code, dst code, svc, per_day)
    monitor: int | None = None
    nas_ip: str | None = None
    sync: dict[int, dict] = field(default_factory=dict)  # host -> {"entry", "dst_ip", "service", "org"}
    ssh_server: str | None = None
    dns_of: np.ndarray | None = None  # per host: code of its usual company resolver

    def add(self, kind: str, hosts: list[int], ips: list[str], details: dict) -> int:
        self.entries.append({"kind": kind, "hosts": ips, "details": {"days": "both", **details}})
        self.entry_hosts.append(hosts)
        return len(self.entries) - 1


def padj(scale: float) -> float:
    return 1.0 / np.sqrt(min(scale, 1.0))


def _fresh(rng, w: World, cidrs) -> str:
    taken = w.known_ints()
    for _ in range(1000):
        v = int(cat.random_in(rng, cidrs[int(rng.integers(len(cidrs)))], 1)[0])
        if v not in taken and not any(b <= v < b + s for b, s in w.used_nets):
            w.extra_ints.add(v)
            ip = cat.ip_str(v)
            w.book.code(ip)
            return ip
    raise RuntimeError("no free address")


def _org_index(name: str) -> list[int]:
    return [i for i, o in enumerate(cat.DEST_ORGS) if cat.org_is(o.name, (name,))]


def build_routines(w: World, seed: int) -> Routines:
    """Draw the routines of the company (own random stream; independent of scenario and scale)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 7])))
    R = Routines()
    n = w.n_hosts
    hip = w.host_ip
    https, ntp = w.svcs.code("tcp", 443), w.svcs.code("udp", 123)
    R.dns_of = w.dns_codes[np.argmax(w.pref_dns, axis=1)].astype(np.int32)
    w.always_on = rng.random(n) < rng.uniform(0.1, 0.45)
    act_pct = np.argsort(np.argsort(w.act)) / max(n - 1, 1)

    # evening shift (both days): the host's working hours move to the afternoon and evening
    k = int(rng.choice([0, 0, 1, 1, 2]))
    shift = [int(x) for x in rng.choice(n, size=k, replace=False)]
    for h in shift:
        w.start[h] = rng.uniform(13.0, 16.0)
        w.end[h] = rng.uniform(21.5, 23.6)
        w.floor[h] = 0.0
    if shift:
        R.add("night_worker", shift, [hip(h) for h in shift], {
            "hours": {hip(h): [round(float(w.start[h]), 2), round(float(w.end[h]), 2)] for h in shift},
            "note": "evening shift on both days: ordinary mix of HTTPS and DNS"})

    # updaters / telemetry agents: 1-3 vendors
    vendors = [i for i, o in enumerate(cat.DEST_ORGS) if cat.org_is(o.name, cat.UPDATE_VENDORS)]
    vw = np.array([cat.DEST_ORGS[i].weight for i in vendors])
    n_agents = int(rng.integers(1, 4))
    for oi in rng.choice(vendors, size=n_agents, replace=False, p=vw / vw.sum()):
        org = cat.DEST_ORGS[int(oi)]
        known = [j for j in range(w.n_base_ext) if w.ext_head[j] and w.ext_org[j] == oi]
        dsts, browsed = [], set()
        for _ in range(int(rng.integers(1, 3))):
            if known and rng.random() < 0.5:  # an address people also browse
                ip = cat.ip_str(w.ext_ints[int(rng.choice(known))])
                browsed.add(ip)
            else:  # an endpoint only the agent uses
                ip = _fresh(rng, w, org.head_cidrs)
            dsts.append(ip)
        dsts = sorted(set(dsts))
        coverage = rng.uniform(0.3, 0.95)
        members = np.flatnonzero(rng.random(n) < coverage)
        if len(members) < 3:
            members = np.sort(rng.choice(n, size=3, replace=False))
        period = float(np.exp(rng.uniform(np.log(120), np.log(3600))))
        jitter = float(rng.uniform(0.02, 0.3))
        up_med, dn_med = float(rng.uniform(400, 3000)), float(rng.uniform(300, 8000))
        cv = float(rng.uniform(0.05, 0.5))
        dns_p = float(rng.uniform(0.2, 1.0))
        payload_p, payload_med = float(rng.uniform(0, 0.02)), float(np.exp(rng.uniform(np.log(1e6), np.log(5e7))))
        e = R.add("periodic_updater", members.tolist(), [hip(h) for h in members], {
            "vendor": org.name, "dst_ips": dsts, "also_browsed": sorted(browsed), "proto": "tcp", "port": 443,
            "period_s": round(period, 1),
            "jitter": round(jitter, 3), "size_cv": round(cv, 3), "dns_lookup_share": round(dns_p, 2),
            "update_payload_share": round(payload_p, 4), "new_today": False,
            "note": "polls while the machine is on: around the clock on machines left running"})
        codes = w.book.codes(dsts)
        for h in members:
            R.timers.append(Timer(e, int(h), int(w.host_codes[h]), int(codes[int(rng.integers(len(codes)))]), https,
                                  int(h), period * rng.uniform(0.97, 1.03), jitter, 0.0, up_med, cv, dn_med, cv,
                                  dns_p, payload_p, payload_med))

    # time sync: a few public NTP servers (and pool volunteers), many hosts
    srv = [str(x) for x in rng.choice(cat.NTP_SERVERS, size=int(rng.integers(1, 4)), replace=False)]
    if rng.random() < 0.4:
        srv += [_fresh(rng, w, cat.NTP_POOL_CIDRS) for _ in range(int(rng.integers(1, 4)))]
    for ip in srv:
        w.extra_ints.add(cat.ip_int(ip))
    scodes = w.book.codes(srv)
    coverage = rng.uniform(0.4, 1.0)
    members = np.flatnonzero(rng.random(n) < coverage)
    if len(members) < 3:
        members = np.sort(rng.choice(n, size=3, replace=False))
    p_multi = rng.uniform(0.0, 0.4)  # ntpd/chrony with several servers; Windows/macOS: one
    periods = {}
    e = R.add("ntp_sync", members.tolist(), [hip(h) for h in members], {"servers": srv, "proto": "udp", "port": 123})
    for h in members:
        period = float(rng.choice([256, 512, 1024, 1024, 1024, 2048]))
        jitter = float(rng.uniform(0.01, 0.05))
        periods[hip(h)] = period
        targets = scodes if rng.random() < p_multi else scodes[[int(rng.integers(len(scodes)))]]
        for c in targets:
            R.timers.append(Timer(e, int(h), int(w.host_codes[h]), int(c), ntp, int(h), period, jitter, 0.0,
                                  76, 0.0, 76, 0.0))
    R.entries[e]["details"]["period_s"] = periods

    # a monitoring box polling many hosts around the clock
    if rng.random() < 0.7:
        cand = np.flatnonzero(act_pct < 0.6)
        m = int(rng.choice(cand))
        R.monitor = m
        w.always_on[m] = True
        choice = int(rng.choice(4, p=[0.45, 0.25, 0.15, 0.15]))
        proto, port = [("udp", 161), ("tcp", 10050), ("tcp", 9100), ("tcp", 5985)][choice]
        svc = w.svcs.code(proto, port)
        targets = [int(x) for x in np.flatnonzero(rng.random(n) < rng.uniform(0.1, 0.8)) if x != m]
        period = float(np.exp(rng.uniform(np.log(60), np.log(600))))
        jitter = float(rng.uniform(0.002, 0.05))
        if proto == "udp":
            up, upcv, dn, dncv = rng.uniform(80, 250), 0.03, rng.uniform(100, 1400), 0.15
        else:
            up, upcv, dn, dncv = rng.uniform(100, 400), 0.1, rng.uniform(200, 4000), 0.3
        e = R.add("monitoring_poller", [m], [hip(m)], {
            "service": {"proto": proto, "port": port}, "targets": [hip(t) for t in targets] + [s["ip"] for s in w.servers],
            "period_s": round(period, 1), "jitter": round(jitter, 4), "new_today": False,
            "note": "polls each target while it is on (servers around the clock)"})
        for t in targets:
            R.timers.append(Timer(e, m, int(w.host_codes[m]), int(w.host_codes[t]), svc, t, period, jitter, 0.0,
                                  up, upcv, dn, dncv))
        for s in w.servers:
            R.timers.append(Timer(e, m, int(w.host_codes[m]), int(s["code"]), svc, -1, period, jitter, 0.0,
                                  up, upcv, dn, dncv))

    # nightly backup of workstations to a NAS (an internal server of its own)
    if rng.random() < 0.8 and w.free_ints:
        v = int(rng.choice(w.free_ints))
        w.free_ints.remove(v)
        ip = cat.ip_str(v)
        proto, port = [("tcp", 445), ("tcp", 873), ("tcp", 22)][int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
        w.servers.append({"ip": ip, "services": [(proto, port)], "code": w.book.code(ip)})
        R.nas_ip = ip
        svc = w.svcs.code(proto, port)
        k = max(3, round(rng.uniform(0.05, 0.4) * n))
        clients = np.sort(rng.choice(n, size=min(k, n), replace=False))
        sched = rng.uniform(19.5, 27.0)  # the company's schedule, per host staggered by the NAS
        vol_net = np.exp(rng.uniform(np.log(20e6), np.log(300e6)))
        chunk = np.exp(rng.uniform(np.log(20e6), np.log(200e6)))
        e = R.add("nas_backup", clients.tolist(), [hip(h) for h in clients], {
            "nas_ip": ip, "proto": proto, "port": port, "schedule_hour": round(float(sched % 24), 2),
            "median_bytes_per_run_scale1": int(vol_net),
            "note": "machines left on back up at night; the others catch up when switched on"})
        for h in clients:
            st = float((sched + rng.uniform(0, 2.5)) % 24)
            R.backups.append((e, int(h), st, float(vol_net * rng.lognormal(0, 0.8)), float(chunk),
                              w.book.code(ip), svc))

    # cloud sync clients: document uploads (human) + change polls (timer)
    n_srv = int(rng.integers(1, 3))
    picks = rng.choice(len(cat.SYNC_SERVICES), size=n_srv, replace=False)
    ends = []
    for j in picks:
        name, org, cidrs = cat.SYNC_SERVICES[int(j)]
        known = [x for x in range(w.n_base_ext) if w.ext_head[x] and int(w.ext_org[x]) in _org_index(org)]
        ends.append((name, org, cat.ip_str(w.ext_ints[int(rng.choice(known))]) if known and rng.random() < 0.5
                     else _fresh(rng, w, cidrs)))
    k = max(2, round(rng.uniform(0.03, 0.15) * n))
    users = np.sort(rng.choice(n, size=min(k, n), replace=False))
    which = rng.integers(0, len(ends), len(users))
    for j, (name, org, ip) in enumerate(ends):
        hs = users[which == j]
        if not len(hs):
            continue
        poll = float(np.exp(rng.uniform(np.log(60), np.log(600))))
        e = R.add("cloud_sync", hs.tolist(), [hip(h) for h in hs], {
            "service": name, "org": org, "dst_ip": ip, "proto": "tcp", "port": 443, "poll_period_s": round(poll, 1),
            "note": "uploads when the user saves documents (working hours) + change polls"})
        code = w.book.code(ip)
        for h in hs:
            per_day = float(rng.lognormal(np.log(15), 0.8))
            size = float(np.exp(rng.uniform(np.log(50e3), np.log(2e6))))
            R.uploads.append((e, int(h), per_day, size, code, https))
            R.timers.append(Timer(e, int(h), int(w.host_codes[h]), code, https, int(h), poll, 0.1, 0.0,
                                  rng.uniform(500, 1500), 0.2, rng.uniform(500, 3000), 0.3, 0.1))
            R.sync[int(h)] = {"entry": e, "dst_ip": ip, "service": name, "org": org}

    # DNS straight to a public resolver (developers, a browser or VPN setting): both days
    k = int(rng.choice([0, 1, 1, 2, 3]))
    pub = list(cat.PUBLIC_RESOLVERS[:5])
    w.alt_col = np.full(n, -1, dtype=np.int64)
    w.alt_share = np.zeros(n)
    hs = [int(x) for x in rng.choice(np.flatnonzero(act_pct > 0.3), size=k, replace=False)] if k else []
    for h in hs:
        ip = str(rng.choice(pub))
        v = cat.ip_int(ip)
        if v not in w.alt_dns_ints:
            w.alt_dns_ints.append(v)
            w.book.code(ip)
        w.alt_col[h] = w.alt_dns_ints.index(v)
        w.alt_share[h] = rng.uniform(0.2, 0.7)
    if hs:
        R.add("public_resolver", hs, [hip(h) for h in hs], {
            "resolvers": {hip(h): cat.ip_str(w.alt_dns_ints[int(w.alt_col[h])]) for h in hs},
            "share_of_dns": {hip(h): round(float(w.alt_share[h]), 2) for h in hs}, "new_today": False,
            "note": "user-driven lookups (Poisson, the host's working hours), not a timer"})

    # --- clients of the public servers -------------------------------------------------------------
    crawlers = [cat.ip_str(int(v)) for v, kk in zip(w.client_ints, w.client_kind) if kk == 2]
    if crawlers:
        R.add("search_crawler", [], crawlers, {"note": "busy, flat around the clock, light pages"})
    present1 = client_presence(w, 1)
    ev = [cat.ip_str(int(w.client_ints[i])) for i in np.flatnonzero(w.c_evening & present1)]
    if ev:
        R.add("evening_client", [], ev, {"note": "home users active only in the evening (population)",
                                         "clients_in_population": int(w.c_evening.sum())})
    if rng.random() < 0.85:
        name, cidrs = cat.MONITOR_CIDRS[int(rng.integers(len(cat.MONITOR_CIDRS)))]
        probes = [_fresh(rng, w, cidrs) for _ in range(int(rng.integers(1, 4)))]
        period = float(rng.choice([30, 60, 60, 120, 300, 300]))
        jitter = float(rng.uniform(0.005, 0.03))
        up, dn = float(rng.uniform(200, 700)), float(rng.uniform(300, 20000))
        e = R.add("uptime_monitor", [], probes, {"service": name, "period_s": period, "jitter": round(jitter, 4),
                                                 "note": "checks every public server on a timer, around the clock"})
        for ip in probes:
            for s in w.pub_servers:
                R.client_timers.append(Timer(e, -1, w.book.code(ip), int(s["code"]), https, -1,
                                             period * rng.uniform(0.99, 1.01), jitter, 0.0, up, 0.02, dn, 0.05))
    if rng.random() < 0.35:
        s = w.pub_servers[0]
        s["services"].append(("tcp", 22))
        R.ssh_server = s["ip"]
        pt = [c for c, _ in cat.PT_CLIENT_CIDRS]
        admins = [_fresh(rng, w, pt) for _ in range(int(rng.integers(1, 5)))]
        for ip in admins:
            R.ssh.append((len(R.entries), w.book.code(ip), int(s["code"]), w.svcs.code("tcp", 22),
                          float(rng.uniform(2, 10))))
        R.add("ssh_admin", [], admins, {"server": s["ip"], "proto": "tcp", "port": 22,
                                        "note": "administrators' SSH sessions, mostly working hours"})
    w.routines = R
    return R


# --- one day ------------------------------------------------------------------------------------


def on_masks(w: World, shape: np.ndarray, absent: np.ndarray | None) -> np.ndarray:
    """(n_hosts, N_BINS) bool: the machine is on (its user is active, or it is left running)."""
    n = w.n_hosts
    sh = shape[:n]
    on = sh >= 0.2 * sh.max(axis=1, keepdims=True)
    on[w.always_on] = True
    if absent is not None:
        on[absent] = False
    return on


def lookups_before(rng, t: np.ndarray, share: float, src: int, resolver: int, dns_svc: int, dns_up: float,
                   dns_dn: float) -> tuple | None:
    """DNS lookups 10-600 ms before a `share` of the connections at times t (the name's answer
    cached in between): a concat_events part, or None when none is drawn."""
    m = rng.random(len(t)) < share
    k = int(m.sum())
    if not k:
        return None
    td = np.maximum(t[m] - rng.integers(1, 60, k), 0)
    return (td, src, resolver, dns_svc,
            np.clip(np.rint(dns_up * rng.lognormal(0, 0.25, k)), 60, 512).astype(np.int64),
            np.clip(np.rint(dns_dn * rng.lognormal(0, 0.3, k)), 60, 1500).astype(np.int64))


def timer_events(rng, jobs: list[Timer], on: np.ndarray | None, pa: float, dns_of: np.ndarray | None,
                 dns_svc: int, dns_up: float, dns_dn: float) -> list[tuple]:
    """Flows of a list of timers (plus their DNS lookups) as concat_events parts."""
    parts = []
    for j in jobs:
        t = timer_times(rng, j.start_h, 24.0, j.period * pa, j.jitter, j.first_at_start)
        if j.gate >= 0 and on is not None:
            t = t[on[j.gate][t // BIN_CS]]
        n = len(t)
        if not n:
            continue
        up = similar_sizes(rng, n, j.up_med, j.up_cv)
        dn = similar_sizes(rng, n, j.dn_med, j.dn_cv)
        if j.payload_p > 0:
            big = rng.random(n) < j.payload_p
            if big.any():
                dn[big] = np.rint(rng.lognormal(np.log(j.payload_med), 0.8, int(big.sum()))).astype(np.int64)
        parts.append((t, j.src, j.dst, j.svc, up, dn))
        if j.dns_p > 0 and j.src_host >= 0 and dns_of is not None:
            look = lookups_before(rng, t, j.dns_p, j.src, int(dns_of[j.src_host]), dns_svc, dns_up, dns_dn)
            if look is not None:
                parts.append(look)
    return parts


def _by_entry(items, key=lambda x: x.entry):
    out: dict[int, list] = {}
    for it in items:
        out.setdefault(key(it), []).append(it)
    return out


def host_streams(w: World, day: int, scale: float, shape: np.ndarray, absent: np.ndarray | None) -> list[EventStream]:
    """The routines' flows from internal hosts on one day (own random stream per day)."""
    R: Routines = w.routines
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([w.seed, 8, day])))
    on = on_masks(w, shape, absent)
    pa = padj(scale)
    dns = w.svcs.code("udp", 53)
    parts: dict[int, list] = {}
    for e, jobs in _by_entry(R.timers).items():
        parts.setdefault(e, []).extend(timer_events(rng, jobs, on, pa, R.dns_of, dns, w.medians["dns_up"],
                                                    w.medians["dns_dn"]))
    for e, h, sched, vol_med, chunk, dst, svc in R.backups:
        if absent is not None and absent[h]:
            continue
        if w.always_on[h]:
            start = sched
        elif on[h].any():
            start = float(np.argmax(on[h])) / 6.0 + rng.uniform(0.05, 0.4)  # catch-up at power-on
        else:
            continue
        vol = vol_med * rng.lognormal(0, 0.5) * scale
        k = int(np.clip(np.ceil(vol / chunk), 2, 60))
        dur = rng.uniform(5, 60) * 6000
        start = min(start, 24.0 - dur / 360_000 - 0.01)  # the day file ends at midnight
        t = np.minimum(int(start * 360_000) + np.sort(rng.uniform(0, dur, k)).astype(np.int64), DAY_CS - 1)
        share = rng.dirichlet(np.full(k, 2.0))
        up = np.maximum(np.rint(share * vol), 4000).astype(np.int64)
        dn = (up * rng.uniform(0.005, 0.02) + rng.integers(1500, 6000, k)).astype(np.int64)
        parts.setdefault(e, []).append((t, int(w.host_codes[h]), dst, svc, up, dn))
    for e, h, per_day, size, dst, svc in R.uploads:
        if absent is not None and absent[h]:
            continue
        k = int(rng.poisson(per_day * scale))
        if not k:
            continue
        t = times_from_shape(rng, k, shape[h])
        up = np.clip(np.rint(rng.lognormal(np.log(size), 1.2, k)), 2000, 2e8).astype(np.int64)
        dn = np.clip(np.rint(rng.lognormal(np.log(4000), 0.5, k)), 500, 1e6).astype(np.int64)
        parts.setdefault(e, []).append((t, int(w.host_codes[h]), dst, svc, up, dn))
    out = []
    for e in sorted(parts):
        st = concat_events(("w", e), parts[e])
        if st is not None:
            out.append(st)
    return out


def client_streams(w: World, day: int, scale: float) -> list[EventStream]:
    """The routines' flows from external clients to the public servers on one day."""
    R: Routines = w.routines
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([w.seed, 9, day])))
    pa = padj(scale)
    parts: dict[int, list] = {}
    for e, jobs in _by_entry(R.client_timers).items():
        parts.setdefault(e, []).extend(timer_events(rng, jobs, None, pa, None, 0, 0, 0))
    office = 0.8 * window_shape([(8.0, 19.5)]) + 0.2 * window_shape([(19.5, 23.5)])
    for e, code, dst, svc, per_day in R.ssh:
        k = int(rng.poisson(per_day))
        flows = max(k, int(rng.poisson(per_day * 3 * scale)))
        if not k or not flows:
            continue
        t = sessions(rng, k, flows, office, 60, 3600)
        up = np.clip(np.rint(rng.lognormal(np.log(20e3), 1.0, len(t))), 2000, 5e7).astype(np.int64)
        dn = np.clip(np.rint(rng.lognormal(np.log(60e3), 1.2, len(t))), 3000, 5e8).astype(np.int64)
        parts.setdefault(e, []).append((t, code, dst, svc, up, dn))
    out = []
    for e in sorted(parts):
        st = concat_events(("w", e), parts[e])
        if st is not None:
            out.append(st)
    return out
