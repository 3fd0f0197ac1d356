"""Shared scoring: robust statistics and a RITA-style beacon score.

Robust statistics (median, MAD, quantiles) instead of mean/std: one exfiltrating host must not
move the reference it is judged against.
"""

from __future__ import annotations

import math

MAD_TO_SIGMA = 1.4826  # MAD * this estimates the standard deviation of a normal distribution


def median(values) -> float:
    import numpy as np

    v = np.asarray(list(values), dtype=float)
    return float(np.median(v)) if v.size else float("nan")


def mad(values) -> float:
    import numpy as np

    v = np.asarray(list(values), dtype=float)
    if not v.size:
        return float("nan")
    return float(np.median(np.abs(v - np.median(v))))


def robust_z(x: float, reference, floor: float = 0.0) -> float:
    """(x - median) / (1.4826 * MAD) of `reference`; the scale never drops below `floor`
    (a population where most values are equal has MAD 0)."""
    med = median(reference)
    scale = max(MAD_TO_SIGMA * mad(reference), floor)
    if scale <= 0 or math.isnan(scale):
        return math.inf if x > med else 0.0
    return (x - med) / scale


def upper_fence(reference, z: float, log: bool = True) -> float:
    """The value above which a point is a robust outlier: median + z * 1.4826 * MAD,
    computed on log1p values when `log` (volumes are log-normal-ish), returned in original units."""
    import numpy as np

    v = np.asarray(list(reference), dtype=float)
    if not v.size:
        return float("inf")
    if log:
        lv = np.log1p(v)
        return float(np.expm1(np.median(lv) + z * MAD_TO_SIGMA * np.median(np.abs(lv - np.median(lv)))))
    return float(np.median(v) + z * MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


# --- beacons ---------------------------------------------------------------------------------

def beacon_stats(flows, pairs, engine):
    """Per (src_ip, dst_ip) of `pairs` (an Ibis table with those two columns): the statistics a
    beacon score needs, computed in the engine. Returns pandas with columns
    src_ip, dst_ip, n, gap_q1, gap_med, gap_q3, gap_mad, size_q1, size_med, size_q3, size_mad,
    first_ts, last_ts, and `hist` (24 flow counts per hour)."""
    import ibis

    p = pairs.select("src_ip", "dst_ip").distinct()
    f = flows.select("src_ip", "dst_ip", "ts", "hour", "up_bytes")
    f = f.join(p, ["src_ip", "dst_ip"])
    t = f.ts.epoch_seconds().cast("float64")
    w = ibis.window(group_by=[f.src_ip, f.dst_ip], order_by=f.ts)
    g = f.mutate(t=t, gap=t - t.lag().over(w), size=f.up_bytes.fill_null(0).cast("float64"))
    base = g.group_by("src_ip", "dst_ip").aggregate(
        n=g.count(),
        gap_q1=g.gap.quantile(0.25), gap_med=g.gap.quantile(0.5), gap_q3=g.gap.quantile(0.75),
        size_q1=g.size.quantile(0.25), size_med=g.size.quantile(0.5), size_q3=g.size.quantile(0.75),
        first_ts=g.ts.min(), last_ts=g.ts.max(),
    )
    # MAD needs the median first: a second aggregation joined on the pair.
    m = g.join(base.select("src_ip", "dst_ip", "gap_med", "size_med"), ["src_ip", "dst_ip"])
    mads = m.group_by("src_ip", "dst_ip").aggregate(
        gap_mad=(m.gap - m.gap_med).abs().quantile(0.5),
        size_mad=(m.size - m.size_med).abs().quantile(0.5),
    )
    hours = g.group_by("src_ip", "dst_ip", "hour").aggregate(c=g.count()).to_pandas()
    df = base.join(mads, ["src_ip", "dst_ip"]).to_pandas()
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
    duration  max(first-to-last span / day span, longest run of consecutive active hours / 12)
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
    duration = min(1.0, max(span / max(day_seconds, 1.0), best / 12.0))
    score = (timing + size + histogram + duration) / 4
    return {"score": score, "timing": timing, "size": size, "histogram": histogram, "duration": duration,
            "active_hours": len(active)}
