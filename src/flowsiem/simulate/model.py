"""The synthetic company: its network, hosts, servers, destinations and public-server clients.

Everything here is drawn from the seed only (never from the scenario), so the clean day and the
clients' clean day are the same files for every scenario of a seed. Flow generation is vectorised:
for each 10-minute bin, Poisson counts per source, then one vectorised draw of destination
(inverse CDF over a per-source categorical, flattened so one searchsorted serves every source),
byte sizes (log-normal per source and traffic class) and timestamps.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import numpy as np

from . import catalog as cat

N_BINS = 144  # 10-minute bins
BIN_CS = 60_000  # a bin in hundredths of a second
DAY_CS = N_BINS * BIN_CS  # 8_640_000
HOURS = (np.arange(N_BINS) + 0.5) / 6.0  # bin centres in hours

# traffic classes (index into the byte model)
DNS, IHTTPS, EHTTPS, SRV, OTHER = 0, 1, 2, 3, 4
N_CLASSES = 5


def lerp(lo: float, hi: float, s: float) -> float:
    return lo + (hi - lo) * s


def lerp_log(lo: float, hi: float, s: float) -> float:
    return float(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * s))


# --- address book and services ----------------------------------------------------------------


class AddressBook:
    """Integer codes for every address any file can contain (flows carry codes, not strings)."""

    def __init__(self):
        self.ips: list[str] = []
        self.index: dict[str, int] = {}

    def code(self, ip: str) -> int:
        c = self.index.get(ip)
        if c is None:
            c = self.index[ip] = len(self.ips)
            self.ips.append(ip)
        return c

    def codes(self, ips) -> np.ndarray:
        return np.array([self.code(ip) for ip in ips], dtype=np.int32)

    def __contains__(self, ip: str) -> bool:
        return ip in self.index

    def arrow(self):
        import pyarrow as pa

        return pa.array(self.ips, type=pa.string())


class Services:
    """Integer codes for (proto, port)."""

    def __init__(self):
        self.items: list[tuple[str, int]] = []
        self.index: dict[tuple[str, int], int] = {}

    def code(self, proto: str, port: int) -> int:
        key = (proto, int(port))
        c = self.index.get(key)
        if c is None:
            c = self.index[key] = len(self.items)
            self.items.append(key)
        return c


# --- flows in bulk -----------------------------------------------------------------------------


@dataclass
class Batch:
    ts: np.ndarray  # int64 centiseconds since midnight
    src: np.ndarray  # int32 address codes
    dst: np.ndarray  # int32 address codes
    svc: np.ndarray  # int32 service codes
    up: np.ndarray  # int64
    down: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class ByteModel:
    """Per traffic class: log-normal spread of up/down bytes around each source's median, a
    heavy download tail, and clipping bounds."""

    up_sigma: np.ndarray
    dn_sigma: np.ndarray
    up_lo: np.ndarray
    up_hi: np.ndarray
    dn_lo: np.ndarray
    dn_hi: np.ndarray
    tail_p: np.ndarray
    tail_scale: np.ndarray


def flat_cdf(weights: np.ndarray) -> np.ndarray:
    """Row-normalised cumulative weights, each row shifted by its row index and flattened, so
    `searchsorted(flat, row + u)` draws from row `row` for a whole vector of rows at once."""
    w = np.asarray(weights, dtype=np.float64)
    tot = w.sum(axis=1, keepdims=True)
    tot[tot <= 0] = 1.0
    cdf = np.cumsum(w / tot, axis=1)
    cdf[:, -1] = 1.0
    cdf += np.arange(w.shape[0], dtype=np.float64)[:, None]
    return cdf.ravel()


def draw_rows(rng: np.random.Generator, flat: np.ndarray, k: int, rows: np.ndarray) -> np.ndarray:
    u = rng.random(len(rows)) * (1.0 - 1e-9)
    idx = np.searchsorted(flat, rows + u, side="right") - rows.astype(np.int64) * k
    return np.clip(idx, 0, k - 1)


class Population:
    """Sources that draw flows from per-source target distributions (internal hosts, clients)."""

    def __init__(self, src_codes, lam, weights, tgt_dst, tgt_svc, tgt_cls, mu_up, mu_dn, bm: ByteModel):
        self.src_codes = np.asarray(src_codes, dtype=np.int32)
        self.lam_t = np.ascontiguousarray(np.asarray(lam, dtype=np.float64).T)  # (bins, n)
        self.k = weights.shape[1]
        self.flat = flat_cdf(weights)
        self.tgt_dst = np.asarray(tgt_dst, dtype=np.int32)
        self.tgt_svc = np.asarray(tgt_svc, dtype=np.int32)
        self.tgt_cls = np.asarray(tgt_cls, dtype=np.int8)
        self.mu_up = np.asarray(mu_up, dtype=np.float64)
        self.mu_dn = np.asarray(mu_dn, dtype=np.float64)
        self.bm = bm

    def expected_flows(self) -> np.ndarray:
        return self.lam_t.sum(axis=0)

    def emit(self, rng: np.random.Generator, b: int) -> Batch | None:
        counts = rng.poisson(self.lam_t[b])
        n = int(counts.sum())
        if n == 0:
            return None
        rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        t = draw_rows(rng, self.flat, self.k, rows)
        cls = self.tgt_cls[t]
        bm = self.bm
        up = np.exp(self.mu_up[rows, cls] + bm.up_sigma[cls] * rng.standard_normal(n))
        dn = np.exp(self.mu_dn[rows, cls] + bm.dn_sigma[cls] * rng.standard_normal(n))
        tail = rng.random(n) < bm.tail_p[cls]
        if tail.any():
            dn[tail] *= np.exp(rng.exponential(bm.tail_scale[cls[tail]]))
        up = np.clip(np.rint(up), bm.up_lo[cls], bm.up_hi[cls]).astype(np.int64)
        dn = np.clip(np.rint(dn), bm.dn_lo[cls], bm.dn_hi[cls]).astype(np.int64)
        ts = b * BIN_CS + rng.integers(0, BIN_CS, n, dtype=np.int64)
        return Batch(ts, self.src_codes[rows], self.tgt_dst[t], self.tgt_svc[t], up, dn)


# --- daily rhythm --------------------------------------------------------------------------------


def _phi(x):
    """Standard normal CDF (Abramowitz-Stegun 7.1.26 erf, |error| < 1.5e-7): edges with Gaussian
    tails, so a host is really silent a few widths away from its working hours."""
    z = np.asarray(x, dtype=np.float64) / np.sqrt(2.0)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-a * a)
    return 0.5 * (1.0 + np.sign(z) * erf)


def day_shape(start, end, width, lunch_c, lunch_depth, floor, deep_end, deep_factor) -> np.ndarray:
    """(n, N_BINS) rows summing to 1: a working-hours plateau with soft edges and a lunch dip,
    plus a night floor (itself damped before `deep_end`)."""
    start, end, width = (np.asarray(a, dtype=float)[:, None] for a in (start, end, width))
    lunch_c, lunch_depth, floor = (np.asarray(a, dtype=float)[:, None] for a in (lunch_c, lunch_depth, floor))
    work = _phi((HOURS - start) / width) * _phi((end - HOURS) / width)
    work *= 1.0 - lunch_depth * np.exp(-0.5 * ((HOURS - lunch_c) / 0.55) ** 2)
    night = floor * np.where(HOURS < deep_end, deep_factor, 1.0)
    shape = work + night
    return shape / shape.sum(axis=1, keepdims=True)


def wrap_shape(start, end, width, floor=0.0) -> np.ndarray:
    """(n, N_BINS) rows summing to 1: working hours that may run past midnight (end < start means
    the shift ends the next morning, which on a one-day file is the early hours), plus a floor."""
    start, end, width = (np.asarray(a, dtype=float)[:, None] for a in (start, end, width))
    floor = np.broadcast_to(np.asarray(floor, dtype=float), (start.shape[0],))[:, None]
    end = np.where(end <= start, end + 24.0, end)
    work = np.zeros((start.shape[0], N_BINS))
    for shift in (-24.0, 0.0):  # the shift that started yesterday evening, and today's
        h = HOURS[None, :] - shift
        work += _phi((h - start) / width) * _phi((end - h) / width)
    shape = work + floor
    return shape / shape.sum(axis=1, keepdims=True)


def window_shape(windows: list[tuple[float, float]]) -> np.ndarray:
    """(N_BINS,) uniform over the given [start, end) hour windows, summing to 1."""
    m = np.zeros(N_BINS)
    for a, b in windows:
        m += (HOURS >= a) & (HOURS < b)
    if m.sum() == 0:
        m[:] = 1.0
    return m / m.sum()


# --- the company -------------------------------------------------------------------------------


@dataclass
class World:
    seed: int
    book: AddressBook
    svcs: Services
    cidr: str
    net_kind: str
    host_ints: np.ndarray
    host_codes: np.ndarray
    free_ints: list[int]
    servers: list[dict]  # {"ip", "services": [(proto, port)], "code"}
    dns_codes: np.ndarray
    https_codes: np.ndarray
    # per-host parameters (n,)
    act: np.ndarray
    f_int: np.ndarray
    f_dns: np.ndarray
    pref_dns: np.ndarray
    pref_https: np.ndarray
    start: np.ndarray
    end: np.ndarray
    width: np.ndarray
    lunch_c: np.ndarray
    lunch_depth: np.ndarray
    floor: np.ndarray
    mu_up: np.ndarray  # (n, N_CLASSES)
    mu_dn: np.ndarray
    # external destinations (targets beyond the internal servers)
    ext_ints: list[int]
    ext_org: np.ndarray
    ext_head: np.ndarray  # bool
    ext_pop: np.ndarray  # global popularity
    ext_w: np.ndarray  # (n, n_ext) per-host baseline weights
    # network-wide knobs
    day_flows: float
    deep_end: float
    deep_factor: float
    sigma_day: float
    sigma_dest_day: float
    p_absent: float
    bm: ByteModel
    medians: dict
    used_nets: list[tuple[int, int]] = field(default_factory=list)
    n_base_ext: int = 0  # destinations of the clean day; the plan may append test-only ones
    # machines left running out of hours (their agents keep polling), per host; set by routines
    always_on: np.ndarray | None = None
    # DNS sent straight to outside resolvers: the resolvers, and per host its column and share of DNS
    alt_dns_ints: list[int] = field(default_factory=list)
    alt_col: np.ndarray | None = None
    alt_share: np.ndarray | None = None
    extra_ints: set[int] = field(default_factory=set)  # other addresses routines use (vendors, NTP, ...)
    routines: object = None  # routines.Routines: behaviour present on both days
    # clients of the public servers (filled by build_clients)
    pub_servers: list[dict] = field(default_factory=list)
    pub_codes: np.ndarray | None = None
    client_ints: np.ndarray | None = None
    client_codes: np.ndarray | None = None
    client_kind: np.ndarray | None = None  # 0 residential PT, 1 foreign residential, 2 crawler
    c_act: np.ndarray | None = None
    c_present: np.ndarray | None = None
    c_start: np.ndarray | None = None
    c_end: np.ndarray | None = None
    c_width: np.ndarray | None = None
    c_floor: np.ndarray | None = None
    c_pref: np.ndarray | None = None
    c_mu_up: np.ndarray | None = None
    c_mu_dn: np.ndarray | None = None
    servers_flows: float = 0.0
    c_evening: np.ndarray | None = None  # evening-only home users

    @property
    def n_hosts(self) -> int:
        return len(self.host_ints)

    def host_ip(self, i: int) -> str:
        return cat.ip_str(int(self.host_ints[i]))

    def known_ints(self) -> set[int]:
        s = set(int(x) for x in self.host_ints) | set(self.ext_ints)
        if self.client_ints is not None:
            s |= set(int(x) for x in self.client_ints)
        s |= {cat.ip_int(sv["ip"]) for sv in self.servers + self.pub_servers}
        s |= set(self.extra_ints) | set(self.alt_dns_ints)
        return s

    def host_targets(self):
        """Target table shared by both days: internal DNS, internal HTTPS, external HTTPS, outside
        resolvers (DNS sent straight to 8.8.8.8 and the like)."""
        dns = self.svcs.code("udp", 53)
        https = self.svcs.code("tcp", 443)
        ext_codes = self.book.codes([cat.ip_str(v) for v in self.ext_ints])
        alt_codes = self.book.codes([cat.ip_str(v) for v in self.alt_dns_ints])
        dst = np.concatenate([self.dns_codes, self.https_codes, ext_codes, alt_codes])
        svc = np.concatenate([np.full(len(self.dns_codes), dns), np.full(len(self.https_codes), https),
                              np.full(len(ext_codes), https), np.full(len(alt_codes), dns)])
        cls = np.concatenate([np.full(len(self.dns_codes), DNS), np.full(len(self.https_codes), IHTTPS),
                              np.full(len(ext_codes), EHTTPS), np.full(len(alt_codes), DNS)])
        return dst.astype(np.int32), svc, cls

    def host_weights(self, f_int, f_dns, pref_dns, pref_https, ext_w, alt_col=None, alt_share=None) -> np.ndarray:
        """Per host target weights; alt_col/alt_share: the outside resolver (column, -1 for none) and
        the share of the host's DNS sent to it instead of the company resolvers."""
        n = len(f_int)
        k = len(self.alt_dns_ints)
        ext = ext_w / np.maximum(ext_w.sum(axis=1, keepdims=True), 1e-300)
        a = np.zeros(n) if alt_share is None else np.asarray(alt_share, dtype=float)
        alt = np.zeros((n, k))
        if k and alt_col is not None:
            rows = np.flatnonzero(np.asarray(alt_col) >= 0)
            alt[rows, np.asarray(alt_col)[rows]] = (f_int * f_dns * a)[rows]
        else:
            a = np.zeros(n)
        return np.concatenate([
            (f_int * f_dns * (1 - a))[:, None] * pref_dns,
            (f_int * (1 - f_dns))[:, None] * pref_https,
            (1 - f_int)[:, None] * ext,
            alt,
        ], axis=1)

    def shape(self, idx=None, start=None, end=None) -> np.ndarray:
        sl = slice(None) if idx is None else idx
        return day_shape(self.start[sl] if start is None else start, self.end[sl] if end is None else end,
                         self.width[sl], self.lunch_c[sl], self.lunch_depth[sl], self.floor[sl],
                         self.deep_end, self.deep_factor)


def _pick_lan(rng: np.random.Generator) -> tuple[str, str]:
    r = rng.random()
    if r < 0.33:
        return f"10.{rng.integers(0, 256)}.{rng.integers(0, 256)}.0/24", "private 10/8"
    if r < 0.53:
        return f"172.{rng.integers(16, 32)}.{rng.integers(0, 256)}.0/24", "private 172.16/12"
    if r < 0.9:
        return f"192.168.{rng.integers(0, 256)}.0/24", "private 192.168/16"
    # a company numbering its LAN with public addresses (FCCN block, like Portuguese universities)
    third = int(rng.integers(0, 256))
    return f"193.136.{third}.0/24", "public (FCCN 193.136.0.0/16, like a university LAN)"


def build_world(seed: int) -> World:
    """The internal network and its habits (independent of scenario and scale)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0])))
    book, svcs = AddressBook(), Services()
    svcs.code("tcp", 443)
    svcs.code("udp", 53)

    cidr, net_kind = _pick_lan(rng)
    base = int(ipaddress.ip_network(cidr).network_address)

    # servers: 1-2 DNS, 1-2 HTTPS; addresses high in the /24, low, or scattered
    n_dns, n_https = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    n_srv = n_dns + n_https
    layout = rng.choice(["high", "low", "scattered"], p=[0.5, 0.25, 0.25])
    if layout == "high":
        lo = int(rng.integers(200, 250))
        pool = np.arange(lo, 255)
    elif layout == "low":
        pool = np.arange(1, int(rng.integers(8, 30)))
    else:
        pool = np.arange(1, 255)
    srv_last = np.sort(rng.choice(pool, size=n_srv, replace=False))
    rng.shuffle(srv_last)
    max_hosts = 254 - n_srv - 10  # room for new devices on the test day
    n_hosts = int(rng.integers(100, min(250, max_hosts) + 1))
    rest = np.setdiff1d(np.arange(1, 255), srv_last)
    if layout == "high":
        rest_sorted = rest  # hosts fill from the bottom (DHCP pool), with holes
        host_last = np.sort(rng.choice(rest_sorted[: min(len(rest_sorted), n_hosts + int(rng.integers(5, 40)))],
                                       size=n_hosts, replace=False))
    else:
        host_last = np.sort(rng.choice(rest, size=n_hosts, replace=False))
    free = sorted(set(np.setdiff1d(rest, host_last).tolist()))
    host_ints = base + host_last.astype(np.int64)
    host_codes = book.codes([cat.ip_str(int(v)) for v in host_ints])

    servers = []
    dns_ips, https_ips = [], []
    both = rng.random() < 0.2  # the first DNS server also serves HTTPS
    for j, last in enumerate(srv_last):
        ip = cat.ip_str(base + int(last))
        services = [("udp", 53)] if j < n_dns else [("tcp", 443)]
        if j == 0 and both:
            services.append(("tcp", 443))
        servers.append({"ip": ip, "services": services, "code": book.code(ip)})
        if ("udp", 53) in services:
            dns_ips.append(ip)
        if ("tcp", 443) in services:
            https_ips.append(ip)
    dns_codes = book.codes(dns_ips)
    https_codes = book.codes(https_ips)

    n = n_hosts
    # heavy-tailed activity
    sig_act = rng.uniform(0.6, 1.1)
    act = rng.lognormal(0.0, sig_act, n)
    act /= act.sum()
    # traffic mix: ~30 % of flows to internal servers, ~40 % of those DNS (the seed: 285k/960k, 115k/285k)
    m_int, m_dns = rng.uniform(0.24, 0.36), rng.uniform(0.34, 0.46)
    kappa = rng.uniform(15, 40)
    f_int = rng.beta(m_int * kappa, (1 - m_int) * kappa, n)
    f_dns = rng.beta(m_dns * kappa, (1 - m_dns) * kappa, n)
    pref_dns = rng.dirichlet(np.full(len(dns_codes), 2.0), n) if len(dns_codes) > 1 else np.ones((n, 1))
    pref_https = rng.dirichlet(np.full(len(https_codes), 2.0), n) if len(https_codes) > 1 else np.ones((n, 1))

    # working hours, per host
    c_start, c_end = rng.uniform(7.6, 9.0), rng.uniform(17.3, 19.0)
    start = np.clip(rng.normal(c_start, 0.6, n), 6.0, 11.0)
    end = np.clip(rng.normal(c_end, 0.9, n), 15.0, 22.0)
    end = np.maximum(end, start + 5.0)
    width = rng.uniform(0.2, 0.6, n)  # sd of the Gaussian edges, hours
    lunch_c = rng.normal(rng.uniform(12.6, 13.4), 0.25, n)
    lunch_depth = rng.uniform(0.15, 0.6, n)
    p_floor = rng.uniform(0.3, 0.75)
    floor = np.where(rng.random(n) < p_floor, rng.uniform(0.01, 0.06, n), 0.0)
    deep_end = rng.uniform(3.0, 5.5)
    deep_factor = 0.0 if rng.random() < 0.4 else rng.uniform(0.05, 0.5)

    # byte medians: network level, then per host (the seed's hosts differ little: sigma ~0.1)
    med = {
        "dns_up": rng.uniform(110, 200), "dns_dn": rng.uniform(250, 500),
        "ihttps_up": rng.uniform(7000, 11000), "ihttps_dn": rng.uniform(45000, 95000),
        "ehttps_up": rng.uniform(8000, 10500), "ehttps_dn": rng.uniform(65000, 95000),
        "srv_up": rng.uniform(8500, 11000), "srv_dn": rng.uniform(70000, 90000),
    }
    sh = rng.uniform(0.05, 0.2)
    mu_up = np.zeros((n, N_CLASSES))
    mu_dn = np.zeros((n, N_CLASSES))
    for c, key in ((DNS, "dns"), (IHTTPS, "ihttps"), (EHTTPS, "ehttps")):
        mu_up[:, c] = np.log(med[f"{key}_up"]) + rng.normal(0, sh, n)
        mu_dn[:, c] = np.log(med[f"{key}_dn"]) + rng.normal(0, sh, n)
    mu_up[:, OTHER] = np.log(1000.0)
    mu_dn[:, OTHER] = np.log(2000.0)
    bm = ByteModel(
        up_sigma=np.array([rng.uniform(0.35, 0.5), rng.uniform(0.45, 0.55), rng.uniform(0.45, 0.55),
                           rng.uniform(0.45, 0.55), 0.5]),
        dn_sigma=np.array([rng.uniform(0.4, 0.6), rng.uniform(0.5, 0.6), rng.uniform(0.5, 0.6),
                           rng.uniform(0.5, 0.6), 0.5]),
        up_lo=np.array([60, 300, 400, 600, 40], dtype=np.float64),
        up_hi=np.array([512, 200_000, 250_000, 150_000, 1e7]),
        dn_lo=np.array([60, 1500, 2500, 4000, 40], dtype=np.float64),
        dn_hi=np.array([1500, 10e6, 10e6, 1.5e6, 1e7]),
        tail_p=np.array([0.0, rng.uniform(0.003, 0.012), rng.uniform(0.005, 0.02), 0.0, 0.0]),
        tail_scale=np.array([0.5, 0.9, 0.9, 0.5, 0.5]),
    )

    # external destinations: a popular head (everyone) and a long tail (each host its own few)
    used: set[int] = set(int(v) for v in host_ints) | {cat.ip_int(s["ip"]) for s in servers}
    lan_net = cat.net_bounds(cidr)
    ext_ints: list[int] = []
    ext_org: list[int] = []

    def fresh(cidr_: str) -> int:
        for _ in range(1000):
            v = int(cat.random_in(rng, cidr_, 1)[0])
            if v not in used and not (lan_net[0] <= v < lan_net[0] + lan_net[1]):
                used.add(v)
                return v
        raise RuntimeError(f"no free address in {cidr_}")

    org_w = np.array([o.weight for o in cat.DEST_ORGS]) * rng.lognormal(0, 0.35, len(cat.DEST_ORGS))
    head_order = np.argsort(-org_w * rng.lognormal(0, 0.3, len(org_w)))
    head_ints, head_orgs = [], []
    for oi in head_order:
        org = cat.DEST_ORGS[oi]
        k = int(rng.integers(org.head_ips[0], org.head_ips[1] + 1))
        for _ in range(k):
            head_ints.append(fresh(org.head_cidrs[int(rng.integers(len(org.head_cidrs)))]))
            head_orgs.append(int(oi))
    n_head = len(head_ints)
    alpha = rng.uniform(0.5, 0.9)
    # popularity: the org's rank mostly, shuffled a little within
    head_pop = (np.arange(1, n_head + 1) ** -alpha) * rng.lognormal(0, 0.25, n_head)
    head_mass = rng.uniform(0.75, 0.88)
    head_pop = head_mass * head_pop / head_pop.sum()

    n_tail = int(rng.integers(200, 1200))
    org_p = org_w / org_w.sum()
    tail_orgs = rng.choice(len(cat.DEST_ORGS), size=n_tail, p=org_p)
    tail_ints = []
    for oi in tail_orgs:
        org = cat.DEST_ORGS[oi]
        tail_ints.append(fresh(org.tail_cidrs[int(rng.integers(len(org.tail_cidrs)))]))
    beta = rng.uniform(0.8, 1.2)
    tail_pop = (np.arange(1, n_tail + 1) ** -beta)
    tail_pop = (1 - head_mass) * tail_pop / tail_pop.sum()

    ext_ints = head_ints + tail_ints
    ext_org = np.array(head_orgs + tail_orgs.tolist())
    ext_head = np.r_[np.ones(n_head, bool), np.zeros(n_tail, bool)]
    ext_pop = np.r_[head_pop, tail_pop]

    # per host: every head address (with personal taste), a personal subset of the tail
    head_w = head_pop[None, :] * rng.lognormal(0, 0.6, (n, n_head))
    # a few head addresses a host never uses (so "new popular destination" is meaningful)
    head_w *= rng.random((n, n_head)) > rng.uniform(0.05, 0.25)
    n_tail_h = np.clip(rng.lognormal(np.log(rng.uniform(12, 45)), 0.6, n).astype(int), 3, n_tail)
    keys = np.log(tail_pop)[None, :] + rng.gumbel(size=(n, n_tail))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    member = rank < n_tail_h[:, None]
    tail_w = member * tail_pop[None, :] * rng.lognormal(0, 0.6, (n, n_tail))
    tail_share = np.clip(rng.normal(1 - head_mass, 0.05, n), 0.03, 0.5)
    head_w = head_w / head_w.sum(axis=1, keepdims=True) * (1 - tail_share)[:, None]
    tail_w = tail_w / np.maximum(tail_w.sum(axis=1, keepdims=True), 1e-300) * tail_share[:, None]
    ext_w = np.concatenate([head_w, tail_w], axis=1)

    w = World(
        seed=seed, book=book, svcs=svcs, cidr=cidr, net_kind=str(net_kind), host_ints=host_ints,
        host_codes=host_codes, free_ints=[base + f for f in free], servers=servers,
        dns_codes=dns_codes, https_codes=https_codes, act=act, f_int=f_int, f_dns=f_dns,
        pref_dns=pref_dns, pref_https=pref_https, start=start, end=end, width=width,
        lunch_c=lunch_c, lunch_depth=lunch_depth, floor=floor, mu_up=mu_up, mu_dn=mu_dn,
        ext_ints=ext_ints, ext_org=ext_org, ext_head=ext_head, ext_pop=ext_pop, ext_w=ext_w,
        day_flows=1e6 * rng.uniform(0.85, 1.15), deep_end=deep_end, deep_factor=deep_factor,
        sigma_day=rng.uniform(0.08, 0.22), sigma_dest_day=rng.uniform(0.1, 0.3),
        p_absent=rng.uniform(0.0, 0.03), bm=bm, medians=med,
    )
    w.used_nets = [lan_net]
    w.n_base_ext = len(ext_ints)
    for v in ext_ints:
        book.code(cat.ip_str(v))
    return w


def client_presence(w: World, day: int) -> np.ndarray:
    """Which clients visit the public servers on a day (own random stream, so a plan can know
    who was there on the clean day without touching that day's other draws)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([w.seed, 6, day])))
    return rng.random(len(w.client_ints)) < w.c_present


def build_clients(w: World, seed: int, scale: float) -> None:
    """The public servers and the population of external clients (its size grows with sqrt(scale))."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 1])))
    # scalar knobs first, so they do not depend on the population size (which follows the scale)
    w.servers_flows = 0.7e6 * rng.uniform(0.85, 1.15)
    n_base = int(rng.integers(1500, 5000))
    n_crawl = int(rng.integers(1, 5))
    p_foreign = rng.uniform(0.05, 0.2)
    nb_size = int(rng.integers(3, 15))
    sig = rng.uniform(0.9, 1.4)
    start_mean, end_mean = rng.uniform(8, 9.5), rng.uniform(17.5, 20.0)
    crawler_dn = np.log(rng.uniform(2, 6))
    used = w.known_ints()
    # public servers: 1-3 addresses in one Portuguese /24
    n_pub = int(rng.choice([1, 2, 2, 2, 3]))
    lan_base = w.used_nets[0][0]
    while True:
        block = cat.PUBLIC_SERVER_CIDRS[int(rng.integers(len(cat.PUBLIC_SERVER_CIDRS)))]
        v = int(cat.random_in(rng, block, 1)[0]) & ~255
        if v != lan_base and not any(v <= x < v + 256 for x in w.ext_ints):
            break
    lasts = np.sort(rng.choice(np.arange(2, 254), size=n_pub, replace=False))
    w.pub_servers = []
    for last in lasts:
        ip = cat.ip_str(v + int(last))
        w.pub_servers.append({"ip": ip, "services": [("tcp", 443)], "code": w.book.code(ip)})
    w.pub_codes = np.array([s["code"] for s in w.pub_servers], dtype=np.int32)
    w.used_nets.append((v, 256))

    m = int(np.clip(round(n_base * np.sqrt(scale)), 150, 60000))
    kind = np.where(rng.random(m) < p_foreign, 1, 0)
    kind[:n_crawl] = 2
    # clients come in neighbourhoods (ISP pools): a few /24s hold many of them
    pt_c, pt_w = zip(*cat.PT_CLIENT_CIDRS)
    fo_c, fo_w = zip(*cat.FOREIGN_CLIENT_CIDRS)
    pt_w = np.array(pt_w) / sum(pt_w)
    fo_w = np.array(fo_w) / sum(fo_w)
    n_nb = max(10, m // nb_size)
    nb_kind = (rng.random(n_nb) < p_foreign).astype(int)
    nb_base = np.empty(n_nb, dtype=np.int64)
    for i in range(n_nb):
        c = pt_c[rng.choice(len(pt_c), p=pt_w)] if nb_kind[i] == 0 else fo_c[rng.choice(len(fo_c), p=fo_w)]
        nb_base[i] = int(cat.random_in(rng, c, 1)[0]) & ~255
    nb_of = {k: np.flatnonzero(nb_kind == k) for k in (0, 1)}
    for k in (0, 1):  # make sure each kind has at least one neighbourhood
        if len(nb_of[k]) == 0:
            nb_of[k] = np.array([0])
            nb_kind[0] = k
    ints = np.zeros(m, dtype=np.int64)
    todo = np.arange(m)
    seen = set(used)
    for _ in range(50):
        if len(todo) == 0:
            break
        cand = np.zeros(len(todo), dtype=np.int64)
        kk = kind[todo]
        in_nb = rng.random(len(todo)) < 0.7
        for k in (0, 1):
            sel = (kk == k) & in_nb
            nb = nb_of[k][rng.integers(0, len(nb_of[k]), int(sel.sum()))]
            cand[sel] = nb_base[nb] + rng.integers(1, 255, int(sel.sum()))
            sel = (kk == k) & ~in_nb
            cidrs, wts = (pt_c, pt_w) if k == 0 else (fo_c, fo_w)
            pick = rng.choice(len(cidrs), size=int(sel.sum()), p=wts)
            vals = np.empty(int(sel.sum()), dtype=np.int64)
            for j in np.unique(pick):
                vals[pick == j] = cat.random_in(rng, cidrs[j], int((pick == j).sum()))
            cand[sel] = vals
        sel = kk == 2
        for j in np.flatnonzero(sel):
            cand[j] = cat.random_in(rng, cat.CRAWLER_CIDRS[int(todo[j]) % len(cat.CRAWLER_CIDRS)], 1)[0]
        retry = []
        for j, val in zip(todo.tolist(), cand.tolist()):
            if val in seen:
                retry.append(j)
            else:
                seen.add(val)
                ints[j] = val
        todo = np.array(retry, dtype=np.int64)
    if len(todo):
        raise RuntimeError("could not draw distinct client addresses")
    w.client_ints = ints
    w.client_kind = kind
    w.client_codes = w.book.codes([cat.ip_str(int(x)) for x in ints])

    act = rng.lognormal(0, sig, m)
    act[kind == 2] = np.quantile(act, 0.9) * rng.uniform(1, 4, int((kind == 2).sum()))
    w.c_act = act
    pct = np.argsort(np.argsort(act)) / max(m - 1, 1)
    w.c_present = np.clip(0.3 + 0.7 * pct + rng.normal(0, 0.1, m), 0.15, 1.0)
    w.c_present[kind == 2] = 1.0
    w.c_start = np.clip(rng.normal(start_mean, 1.5, m), 5.5, 14.0)
    w.c_end = np.clip(rng.normal(end_mean, 1.6, m), 14.5, 23.8)
    w.c_end = np.maximum(w.c_end, w.c_start + 3)
    w.c_width = rng.uniform(0.4, 1.4, m)
    w.c_floor = rng.uniform(0.0, 0.08, m)
    w.c_floor[kind == 2] = 50.0  # crawlers: flat around the clock
    n_pub_ = len(w.pub_servers)
    w.c_pref = rng.dirichlet(np.full(n_pub_, 0.6), m) if n_pub_ > 1 else np.ones((m, 1))
    mu_up = np.zeros((m, N_CLASSES))
    mu_dn = np.zeros((m, N_CLASSES))
    mu_up[:, SRV] = np.log(w.medians["srv_up"]) + rng.normal(0, 0.12, m)
    mu_dn[:, SRV] = np.log(w.medians["srv_dn"]) + rng.normal(0, 0.12, m)
    mu_dn[kind == 2, SRV] -= crawler_dn  # crawlers fetch lighter pages
    w.c_mu_up, w.c_mu_dn = mu_up, mu_dn
    # home users who only come in the evening, after work (both days: part of the population)
    evening = (kind != 2) & (rng.random(m) < rng.uniform(0.05, 0.2))
    w.c_start[evening] = rng.uniform(17.5, 20.5, int(evening.sum()))
    w.c_end[evening] = rng.uniform(22.5, 23.8, int(evening.sum()))
    w.c_width[evening] = rng.uniform(0.3, 0.8, int(evening.sum()))
    w.c_floor[evening] = rng.uniform(0.0, 0.01, int(evening.sum()))
    w.c_evening = evening
