"""One-way uploads, judged on the analysed flows themselves (reference: capture).

Exfiltration shows in flows as a conversation that mostly sends: a host pushes megabytes to one
outside destination and gets acknowledgements back, far more than it sends anywhere else in the
capture. Browsing, streaming and calls receive as much as or more than they send; a backup or a
sync service used by many hosts is a shared destination.
"""

from __future__ import annotations

from ..alerts import Alert, Evidence
from ..fmt import fmt_bytes
from ..network import INTERNAL_EXTERNAL
from . import rule
from .common import (brand, busiest_service, company_share, known_channels, log_center_spread, log_z, mean, org_of, past, past_share,
                     past_z, shared_destination, size_aware_z, timestamp, where, with_service)


@rule("exfiltration.one_way_upload")
def one_way_upload(ctx, spec) -> list[Alert]:
    pairs = _upload_pairs(ctx)
    ups = pairs.select("up_bytes").to_pandas().up_bytes  # the population: one column, every pair
    if ups.empty:
        return []
    center, spread = log_center_spread(ups, spec.num("min_log_spread"))
    fence_z = size_aware_z(len(ups), spec.num("outlier_rate"))
    big = pairs.filter((pairs.up_bytes >= spec.num("min_bytes")) & pairs.port.notnull()).to_pandas()
    big = big[[not k for k in known_channels(ctx, big)]]
    judged = [(r, v) for r in big.itertuples() for v in [_judge_upload(ctx, spec, r, center, spread, fence_z)] if v]
    crowds = _crowds(ctx, judged)
    alerts = []
    for r, v in judged:
        a = _explain_upload(ctx, spec, r, v, fence_z)
        others = sorted(crowds[_company(ctx, r.dst_ip)] - {r.src_ip})
        share, n = company_share(ctx, r.dst_ip)
        if n >= spec.num("prevalence_min_hosts") and share >= spec.num("familiar_host_share"):
            a.severity = "low"
            a.message += (f"; {share:.0%} of the {n} active hosts use this company: a service of the network "
                          f"(backup, sync, sharing), not an unknown drop")
        elif len(others) + 1 >= spec.num("crowd_min_hosts"):
            a.severity, a.related = "low", others
            a.message += (f"; {len(others)} other host(s) upload to this company the same way today: a shared "
                          f"backup or sync service, not one host's drop")
        alerts.append(a)
    return alerts


def _company(ctx, ip) -> str:
    return brand(org_of(ctx, ip)) or ip


def _crowds(ctx, judged) -> dict:
    """company (brand, else the address) -> the hosts making such one-way uploads to it."""
    out = {}
    for r, _ in judged:
        out.setdefault(_company(ctx, r.dst_ip), set()).add(r.src_ip)
    return out


def _upload_pairs(ctx):
    """Per internal host -> outside destination: bytes sent and received, flows, sending time; kept
    in the engine (one row per pair: millions in a large capture), of which only the uploads big
    enough to judge come to Python."""
    e = ctx.flows
    e = e.filter(e.traffic_class == INTERNAL_EXTERNAL)
    g = with_service(e.group_by("src_ip", "dst_ip").aggregate(
        up_bytes=e.up_bytes.sum().fill_null(0), down_bytes=e.down_bytes.sum().fill_null(0), flows=e.count(),
        duration=e.duration.sum(), svc=busiest_service(e, e.up_bytes), first_ts=e.ts.min()))
    return ctx.engine.materialize(g.filter(g.up_bytes > 0))


def _judge_upload(ctx, spec, r, center, spread, fence_z) -> dict | None:
    sent = r.up_bytes / max(r.up_bytes + r.down_bytes, 1)
    z = float(log_z(r.up_bytes, center, spread))
    if sent < spec.num("min_sent_share") or z < fence_z or shared_destination(ctx, spec, r.dst_ip)[0]:
        return None
    return {"sent": sent, "z": z, "risk": mean(past(r.up_bytes, spec.num("min_bytes")),
                                               past_share(sent, spec.num("min_sent_share")), past_z(z, fence_z))}


def _explain_upload(ctx, spec, r, v, fence_z) -> Alert:
    port = None if r.port != r.port else int(r.port)
    dur = "" if r.duration != r.duration else f" over {r.duration / 60:,.0f} min of sessions"
    msg = (f"sent {fmt_bytes(r.up_bytes)} to {r.dst_ip}{where(ctx, r.dst_ip)} on {r.proto}/{port}{dur} and got "
           f"{fmt_bytes(r.down_bytes)} back ({v['sent']:.1%} one way); robust z {v['z']:.1f} against every "
           f"host-destination upload in the capture (outlier from {fence_z:.1f})")
    ev = [
        Evidence("bytes sent to the destination", "bytes", observed=int(r.up_bytes), threshold=spec.num("min_bytes")),
        Evidence("share of the conversation that was sent", "share", observed=round(v["sent"], 4),
                 threshold=spec.num("min_sent_share")),
        Evidence("robust z of the upload among the capture's host-destination uploads", "z",
                 observed=round(v["z"], 2), threshold=round(fence_z, 2)),
    ]
    return Alert(rule=spec, source_ip=r.src_ip, destination_ip=r.dst_ip, message=msg, evidence=ev,
                 score=v["risk"], timestamp=timestamp(r.first_ts), example_port=port)
