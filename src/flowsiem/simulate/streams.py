"""Flow streams that are not drawn from a host population: Poisson channels and precomputed events.

Streams produce flows per 10-minute bin like the background populations, so even a flood of
millions of flows never sits in memory at once. Periodic behaviour (timers, beacons, polls) is
precomputed as event times (at most a few thousand per source and day).
"""

from __future__ import annotations

import numpy as np

from .model import BIN_CS, DAY_CS, N_BINS, Batch


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
        b = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), (m,)).copy()
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
    """Precomputed flows (timers, beacons, uploads): emitted bin by bin."""

    def __init__(self, entry, ts, src, dst, svc, up, dn):
        ts = np.asarray(ts, dtype=np.int64)
        order = np.argsort(ts, kind="stable")
        self.entry = entry
        self.ts = ts[order]
        n = len(self.ts)
        self.src = np.broadcast_to(np.asarray(src, dtype=np.int32), (n,))[order]
        self.dst = np.broadcast_to(np.asarray(dst, dtype=np.int32), (n,))[order]
        self.svc = np.broadcast_to(np.asarray(svc, dtype=np.int32), (n,))[order]
        self.up = np.broadcast_to(np.asarray(up, dtype=np.int64), (n,))[order]
        self.dn = np.broadcast_to(np.asarray(dn, dtype=np.int64), (n,))[order]
        self.bounds = np.searchsorted(self.ts, np.arange(N_BINS + 1) * BIN_CS)

    def __len__(self) -> int:
        return len(self.ts)

    def emit(self, rng, b: int) -> Batch | None:
        lo, hi = self.bounds[b], self.bounds[b + 1]
        if hi <= lo:
            return None
        s = slice(lo, hi)
        return Batch(self.ts[s], self.src[s], self.dst[s], self.svc[s], self.up[s], self.dn[s])


def concat_events(entry, parts: list[tuple]) -> EventStream | None:
    """One stream from several (ts, src, dst, svc, up, dn) parts (scalars broadcast per part)."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return None
    cols = []
    for i in range(6):
        cols.append(np.concatenate([np.broadcast_to(np.asarray(p[i]), (len(p[0]),)) for p in parts]))
    return EventStream(entry, *cols)


def timer_times(rng, start_h: float, end_h: float, period_s: float, jitter: float,
                first_at_start: bool = False) -> np.ndarray:
    """A software timer: event times (centiseconds) every period_s (+- jitter, Gaussian, gaps at least
    a fifth of the period) from a random phase after start_h (or right at start_h: a program that
    checks in when installed) until end_h."""
    if end_h <= start_h:
        return np.zeros(0, dtype=np.int64)
    n = int((end_h - start_h) * 3600.0 / period_s) + 2
    gaps = period_s * np.maximum(1.0 + jitter * rng.standard_normal(n), 0.2)
    phase = rng.uniform(0, period_s)
    if first_at_start:
        phase = 0.0
    t = start_h * 3600.0 + phase + np.cumsum(gaps) - gaps[0]
    t = t[t < end_h * 3600.0]
    return np.minimum(np.rint(t * 100).astype(np.int64), DAY_CS - 1)


def periodic_times(rng, start_h: float, end_h: float, period_s: float, jitter: float,
                   awake: np.ndarray | None = None, min_events: int = 8) -> tuple[np.ndarray, float]:
    """Event times (centiseconds) every period_s (+- jitter) within [start_h, end_h), optionally
    only in bins where `awake` is True. The period is halved until at least min_events remain;
    returns (times, effective period)."""
    t = np.zeros(0, dtype=np.int64)
    for _ in range(10):
        t = timer_times(rng, start_h, end_h, period_s, jitter)
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


def sessions(rng, n_sessions: int, flows: int, shape: np.ndarray, min_len_s: float = 60,
             max_len_s: float = 3600) -> np.ndarray:
    """Human use: `flows` event times grouped in `n_sessions` sessions whose starts follow `shape`
    (irregular, working hours), each lasting min_len_s..max_len_s (log-uniform) with its flows
    spread inside it (bursty)."""
    n_sessions = max(1, min(int(n_sessions), int(flows)))
    starts = times_from_shape(rng, n_sessions, shape)
    lens = np.exp(rng.uniform(np.log(min_len_s), np.log(max_len_s), n_sessions)) * 100
    which = np.r_[np.arange(n_sessions), rng.integers(0, n_sessions, max(int(flows) - n_sessions, 0))]
    t = starts[which] + (rng.random(len(which)) * lens[which]).astype(np.int64)
    return np.minimum(t, DAY_CS - 1)
