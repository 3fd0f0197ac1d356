"""Scans and password guessing, judged on the analysed flows themselves (reference: capture).

A scan is a source trying many ports of one host (vertical) or one port on many hosts
(horizontal), most of which do not answer: a client reaches the services it knows, and they
answer. From an internal host it is a bot looking for its next victim (botnet); from outside,
a probe of the public hosts (external_abuse). Password guessing is one outside source opening
connection after connection to one service, each the same size, faster than any person types.
"""

from __future__ import annotations

from ..alerts import Alert, Evidence
from ..engine import split_list_column
from ..fmt import is_missing
from . import rule
from .common import engine_table, mean, outside_source, past, past_share, timestamp, unanswered, where


def _scan_shapes(ctx, flows, spec):
    """Per source: its widest vertical scan (ports of one host) and widest horizontal scan
    (hosts on one port), counting targets that never answered. pandas, one row per source.
    One query: the per-target table is computed once for both shapes."""
    import ibis

    f = flows.mutate(failed=unanswered(flows, spec.t("no_reply_states")).cast("int64"))
    t = f.group_by("src_ip", "dst_ip", "proto", "port").aggregate(
        failed=f.failed.min(), first_ts=f.ts.min())
    v = t.group_by("src_ip", "dst_ip").aggregate(tried=t.count(), failed=t.failed.sum(), first_ts=t.first_ts.min())
    h = t.group_by("src_ip", "proto", "port").aggregate(tried=t.count(), failed=t.failed.sum(),
                                                         first_ts=t.first_ts.min())
    cols = ["src_ip", "dst_ip", "proto", "port", "tried", "failed", "first_ts", "shape"]
    v = v.mutate(proto=ibis.null(t.proto.type()), port=ibis.null(t.port.type()), shape=ibis.literal("vertical"))
    h = h.mutate(dst_ip=ibis.null(t.dst_ip.type()), shape=ibis.literal("horizontal"))
    both = v.select(cols).union(h.select(cols))
    both = both.filter(both.failed >= spec.num("min_targets")).to_pandas()
    if both.empty:
        return both
    # the widest first; vertical before horizontal on a tie, as the two tables were concatenated
    both["_o"] = (both["shape"] == "horizontal").astype(int)
    both = both.sort_values(["failed", "_o"], ascending=[False, True], kind="stable").drop(columns="_o")
    return both.drop_duplicates("src_ip")


def _judge_scan(spec, r) -> dict | None:
    share = r.failed / max(r.tried, 1)
    if share < spec.num("min_failed_share"):
        return None
    return {"share": share, "risk": mean(past(r.failed, spec.num("min_targets")),
                                         past_share(share, spec.num("min_failed_share")))}


def _explain_scan(ctx, spec, r, v) -> Alert:
    port = None if is_missing(r.port) else int(r.port)
    if r.shape == "vertical":
        what = f"{int(r.tried):,} ports of {r.dst_ip}{where(ctx, r.dst_ip)}"
        dst = r.dst_ip
    else:
        what = f"{r.proto}/{port} on {int(r.tried):,} hosts"
        dst = None
    msg = (f"{r.shape} scan: tried {what}; {int(r.failed):,} never answered ({v['share']:.0%}) -- a client "
           f"reaches the services it knows, and they answer")
    ev = [
        Evidence(f"targets without an answer ({r.shape})", "targets", observed=int(r.failed),
                 threshold=spec.num("min_targets")),
        Evidence("share of the targets tried that never answered", "share", observed=round(v["share"], 3),
                 threshold=spec.num("min_failed_share")),
    ]
    return Alert(rule=spec, source_ip=r.src_ip, destination_ip=dst, message=msg, evidence=ev, score=v["risk"],
                 timestamp=timestamp(r.first_ts), example_port=port if r.shape == "horizontal" else None,
                 details={"shape": r.shape, "reference": "capture"})


@rule("botnet.scan")
def internal_scan(ctx, spec) -> list[Alert]:
    f = ctx.flows
    shapes = _scan_shapes(ctx, f.filter(f.src_internal), spec)
    return [_explain_scan(ctx, spec, r, v) for r in shapes.itertuples()
            if r.src_ip in ctx.ip_info.index and ctx.model.is_unicast_host(r.src_ip)
            for v in [_judge_scan(spec, r)] if v]


@rule("external_abuse.probe")
def outside_probe(ctx, spec) -> list[Alert]:
    shapes = _scan_shapes(ctx, ctx.inbound, spec)
    return [_explain_scan(ctx, spec, r, v) for r in shapes.itertuples() if outside_source(ctx, r.src_ip)
            for v in [_judge_scan(spec, r)] if v]


# --- password guessing -------------------------------------------------------------------------

@rule("external_abuse.brute_force")
def brute_force(ctx, spec) -> list[Alert]:
    df = _attempt_series(ctx, spec)
    return [_explain_brute(ctx, spec, r, v) for r in df.itertuples() if outside_source(ctx, r.src_ip)
            for v in [_judge_brute(spec, r)] if v]


def _attempt_series(ctx, spec):
    """Per outside source -> internal (dst, proto, port) with enough connections, fast enough:
    connections, the busiest minute and the quartiles of the request and reply sizes (each
    column's three in one pass: one sort, not three)."""
    keys = ["src_ip", "dst_ip", "proto", "port"]
    f = ctx.inbound
    m = f.group_by(*keys, minute=(f.ts.epoch_seconds() / 60).floor()).aggregate(
        c=f.count(), first_ts=f.ts.min(), last_ts=f.ts.max())
    peak = m.group_by(*keys).aggregate(peak=m.c.max(), minutes=m.count(), attempts=m.c.sum(),
                                       first_ts=m.first_ts.min(), last_ts=m.last_ts.max())
    peak = peak.filter((peak.attempts >= spec.num("min_attempts")) & (peak.peak >= spec.num("min_per_minute")))
    peak = peak.to_pandas()
    if peak.empty:
        return peak
    # The sizes' quartiles (a sort per column) only for the series fast and long enough, not for
    # every client's (in a capture most clients make a handful of connections).
    c = f.semi_join(engine_table(ctx, peak, keys), keys)
    size, reply = c.up_bytes.fill_null(0).cast("float64"), c.down_bytes.fill_null(0).cast("float64")
    g = c.group_by(*keys).aggregate(size_q=size.quantile([0.25, 0.5, 0.75]), reply_q=reply.quantile([0.25, 0.5, 0.75]))
    df = g.to_pandas().merge(peak, on=keys)
    for col in ("size", "reply"):
        split_list_column(df, f"{col}_q", [f"{col}_q1", f"{col}_med", f"{col}_q3"])
    return df


def _spread(spec, q1, med, q3) -> float:
    """IQR / median; sizes within min_size_iqr_bytes of each other are identical (0)."""
    iqr = float(q3 - q1)
    return 0.0 if iqr < spec.num("min_size_iqr_bytes") else iqr / max(float(med), 1.0)


def _judge_brute(spec, r) -> dict | None:
    """The same request AND the same answer (a refused login), over and over, fast. A crawler's
    or an API client's requests may look alike, but the pages and data it gets back differ."""
    spread = _spread(spec, r.size_q1, r.size_med, r.size_q3)
    reply = _spread(spec, r.reply_q1, r.reply_med, r.reply_q3)
    if max(spread, reply) > spec.num("max_size_spread") or r.peak < spec.num("min_per_minute") \
            or r.size_med <= 0:
        return None
    return {"spread": spread, "reply": reply, "risk": mean(past(r.attempts, spec.num("min_attempts")),
                                                           past(r.peak, spec.num("min_per_minute")))}


def _explain_brute(ctx, spec, r, v) -> Alert:
    port = None if r.port != r.port else int(r.port)
    msg = (f"{int(r.attempts):,} connections to {r.dst_ip}{where(ctx, r.dst_ip)} {r.proto}/{port}, "
           f"each about {r.size_med:,.0f} B answered with about {r.reply_med:,.0f} B (spreads {v['spread']:.2f} and "
           f"{v['reply']:.2f}), up to {int(r.peak)} in one minute: the same request and the same answer over and "
           f"over, faster than a person types (password guessing)")
    ev = [
        Evidence("connections to one service", "flows", observed=int(r.attempts), threshold=spec.num("min_attempts")),
        Evidence("connections in the busiest minute", "flows", observed=int(r.peak),
                 threshold=spec.num("min_per_minute")),
        Evidence("spread of the request sizes (IQR / median)", "ratio", observed=round(v["spread"], 3),
                 threshold=spec.num("max_size_spread")),
        Evidence("spread of the reply sizes (IQR / median)", "ratio", observed=round(v["reply"], 3),
                 threshold=spec.num("max_size_spread")),
    ]
    return Alert(rule=spec, source_ip=r.src_ip, destination_ip=r.dst_ip, message=msg, evidence=ev,
                 score=v["risk"], timestamp=timestamp(r.first_ts), example_port=port,
                 details={"reference": "capture"})
