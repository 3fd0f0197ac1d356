"""Beacons: RITA-style statistics and score of a source -> destination pair's connection times
and sizes, computed in the engine for candidate pairs only, and the chance that its gaps are so
regular under random (Poisson) arrivals.

RITA's score (activecm/rita analysis/beacons.go) is the mean of four sub-scores -- timing, size,
hourly histogram, duration -- each in [0, 1]; its constants (the 10 s / 32 B spreads under which a
pair is perfectly regular, the 12-hour run for a full duration score) are RITA's own.
"""

from __future__ import annotations


RUN_HOURS = 12.0  # RITA: a run of 12 consecutive active hours gives a full duration score

# --- beacons ---------------------------------------------------------------------------------

def capture_slice(ts, span, slices: int = 24):
    """Which of `slices` equal parts of the capture (span = (start, end, seconds)) each timestamp
    falls in (Ibis, int8): RITA's 24-bin spread, whether the capture lasts an hour or three days."""
    import ibis

    start, _, seconds = span
    width = max(seconds / slices, 1e-6)
    # epoch_seconds of a naive timestamp is UTC-based, as is pandas' .timestamp() here
    t = ts.epoch_seconds().cast("float64") - float(start.timestamp())
    return ibis.least((t / width).floor(), slices - 1).cast("int8")


def beacon_stats(flows, pairs, engine, span=None):
    """Per (src_ip, dst_ip) of `pairs` (an Ibis table with those two columns): the statistics a
    beacon score needs, computed in the engine. Returns pandas with columns
    src_ip, dst_ip, n, gap_q1, gap_med, gap_q3, gap_mad, size_q1, size_med, size_q3, size_mad,
    first_ts, last_ts, and `hist` (24 flow counts: per clock hour, or -- with `span`, the
    (start, end, seconds) of a capture -- per 24th of the capture, so that a one-hour capture
    and a three-day one both get RITA's 24-bin histogram)."""
    import ibis

    from ..engine import split_list_column

    p = pairs.select("src_ip", "dst_ip").distinct()
    f = flows.select("src_ip", "dst_ip", "ts", "hour", "up_bytes")
    f = f.join(p, ["src_ip", "dst_ip"])
    t = f.ts.epoch_seconds().cast("float64")
    if span is not None:
        f = f.mutate(hour=capture_slice(f.ts, span))
    w = ibis.window(group_by=[f.src_ip, f.dst_ip], order_by=f.ts)
    # The candidate pairs' events, computed once (the flows upstream are scanned once, not per
    # statistic); each quartile triple in one pass (one sort per column, not three).
    g = engine.materialize(f.select("src_ip", "dst_ip", "ts", "hour", gap=t - t.lag().over(w),
                                    size=f.up_bytes.fill_null(0).cast("float64")))
    base = g.group_by("src_ip", "dst_ip").aggregate(
        n=g.count(), gap_q=g.gap.quantile([0.25, 0.5, 0.75]), size_q=g.size.quantile([0.25, 0.5, 0.75]),
        first_ts=g.ts.min(), last_ts=g.ts.max(),
    )
    base = base.mutate(gap_med=base.gap_q[1], size_med=base.size_q[1])
    # MAD needs the median first: a second aggregation joined on the pair.
    m = g.join(base.select("src_ip", "dst_ip", "gap_med", "size_med"), ["src_ip", "dst_ip"])
    mads = m.group_by("src_ip", "dst_ip").aggregate(
        gap_mad=(m.gap - m.gap_med).abs().quantile(0.5),
        size_mad=(m.size - m.size_med).abs().quantile(0.5),
    )
    hours = g.group_by("src_ip", "dst_ip", "hour").aggregate(c=g.count()).to_pandas()
    df = base.join(mads, ["src_ip", "dst_ip"]).to_pandas()
    for col in ("gap", "size"):
        split_list_column(df, f"{col}_q", [f"{col}_q1", f"{col}_med", f"{col}_q3"])
    hist = {}
    for (s, d), grp in hours.groupby(["src_ip", "dst_ip"]):
        h = [0] * 24
        for hr, c in zip(grp.hour, grp.c):
            h[int(hr)] = int(c)
        hist[(s, d)] = h
    df["hist"] = [hist.get((s, d), [0] * 24) for s, d in zip(df.src_ip, df.dst_ip)]
    return df


def _skew_score(q1, med, q3, min_iqr) -> float:
    """1 - |Bowley skewness|; a spread narrower than `min_iqr` counts as perfectly regular."""
    if any(v is None or v != v for v in (q1, med, q3)):
        return 0.0
    iqr = q3 - q1
    if iqr < min_iqr:
        return 1.0
    return max(0.0, 1.0 - abs((q1 + q3 - 2 * med) / iqr))


def _mad_score(med, mad_) -> float:
    """(median - MAD) / median, clipped to [0, 1]: small dispersion relative to the typical value."""
    if med is None or med != med or med <= 0:
        return 0.0
    return min(1.0, max(0.0, (med - mad_) / med))


def beacon_score(row, day_seconds: float, min_gap_iqr: float = 10.0, min_size_iqr: float = 32.0) -> dict:
    """RITA-style beacon score in [0, 1] from one row of beacon_stats, with its sub-scores.

    timing    mean of (1 - |Bowley skew| of the gaps) and (median - MAD)/median of the gaps
    size      the same on bytes sent per connection
    histogram 1 - coefficient of variation of the flows over the hours the pair is active
    duration  max(first-to-last span / day span, longest run of consecutive active hours / RUN_HOURS)
    score     the mean of the four (RITA weighs them equally too)
    """
    timing = (_skew_score(row.gap_q1, row.gap_med, row.gap_q3, min_gap_iqr) + _mad_score(row.gap_med, row.gap_mad)) / 2
    size = (_skew_score(row.size_q1, row.size_med, row.size_q3, min_size_iqr) + _mad_score(row.size_med, row.size_mad)) / 2
    hist = list(row.hist)
    active = [c for c in hist if c > 0]
    if len(active) >= 2:
        mean = sum(active) / len(active)
        sd = (sum((c - mean) ** 2 for c in active) / len(active)) ** 0.5
        histogram = max(0.0, 1.0 - sd / mean)
    else:
        histogram = 0.0
    run = best = 0
    for c in hist + hist:  # wrap around midnight
        run = run + 1 if c > 0 else 0
        best = max(best, min(run, 24))
    span = (row.last_ts - row.first_ts).total_seconds()
    duration = min(1.0, max(span / max(day_seconds, 1.0), best / RUN_HOURS))
    score = (timing + size + histogram + duration) / 4
    return {"score": score, "timing": timing, "size": size, "histogram": histogram, "duration": duration,
            "active_hours": len(active)}


# --- is the rhythm chance? -------------------------------------------------------------------------

_NULL: dict[int, object] = {}
_NULL_SIMS = 20000
_NULL_GRID = (*range(2, 21), 24, 28, 32, 40, 48, 56, 64, 80, 96, 128, 160, 200)
RHYTHM_P_FLOOR = 1.0 / (_NULL_SIMS + 1)  # the smallest chance the simulated null can show
# Gaps are measured between whole seconds (one event per second, as RITA counts). Random events a
# few seconds apart then have whole-second gaps whose MAD/median is far below the 0.69 of the
# continuous null (mean gap 2 s: 0.5; 1 s: 0), so no rhythm can be read from them: RITA's 10 s,
# under which it calls a gap spread perfectly regular, is where rounding stops mattering.
RESOLVED_GAP_S = 10.0


def poisson_dispersion_p(dispersion: float | None, gaps: int, median_gap_s: float | None = None) -> float:
    """Chance that `gaps` gaps between random (Poisson) events are as regular as observed: the
    share of simulated exponential gap sets whose MAD/median is at most `dispersion`.
    Human-driven traffic is at least as irregular as random arrivals (MAD/median about 0.69); a
    timer gives a small dispersion (about 0.67 x its jitter). Deterministic (seeded). Gap counts
    are rounded down to a grid of simulated tables, which is conservative: the null only narrows
    as the count grows. A median gap under RESOLVED_GAP_S (whole-second timestamps) proves nothing: 1."""
    import numpy as np

    if dispersion is None or dispersion != dispersion or gaps < 2:
        return 1.0
    if median_gap_s is not None and median_gap_s < RESOLVED_GAP_S:
        return 1.0
    k = max(g for g in _NULL_GRID if g <= gaps)
    sims = _null_sims(k)
    return float((np.searchsorted(sims, dispersion, side="right") + 1) / (len(sims) + 1))


def _simulate_null(k: int):
    import numpy as np

    rng = np.random.default_rng(1000 + k)
    x = rng.exponential(1.0, (_NULL_SIMS, k))
    med = np.median(x, axis=1)
    return np.sort(np.median(np.abs(x - med[:, None]), axis=1) / med)


def _null_sims(k: int):
    """The sorted simulated dispersions for k gaps. The whole grid takes ~3 s to simulate, so it
    is kept in the user's cache directory (the same seeded numbers, computed once per machine);
    where that is not writable, each size is simulated when first needed."""
    import os

    import numpy as np

    if not _NULL:
        cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                             "flowsiem", f"beacon-null-{_NULL_SIMS}-{len(_NULL_GRID)}-v1.npz")
        try:
            with np.load(cache) as z:
                _NULL.update({int(name[1:]): z[name] for name in z.files})
        except (OSError, ValueError, KeyError):
            try:
                from ..atomic import replacing

                os.makedirs(os.path.dirname(cache), exist_ok=True)
                _NULL.update({g: _simulate_null(g) for g in _NULL_GRID})
                with replacing(cache) as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, **{f"k{g}": v for g, v in _NULL.items()})
            except OSError:
                pass
    if k not in _NULL:
        _NULL[k] = _simulate_null(k)
    return _NULL[k]


def gap_dispersion(gap_med, gap_mad) -> float | None:
    """MAD / median of the gaps (None without a positive median gap)."""
    if gap_med is None or gap_med != gap_med or gap_med <= 0:
        return None
    return float(gap_mad) / float(gap_med)


def rhythm_p(row) -> float:
    """poisson_dispersion_p of a beacon_stats row (n connection times, n - 1 gaps)."""
    return poisson_dispersion_p(gap_dispersion(row.gap_med, row.gap_mad), int(row.n) - 1, float(row.gap_med))
