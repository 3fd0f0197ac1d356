"""What the report draws, computed once at the end of run/detect/hunt and kept in OUT/report_data/.

Every table here is small (tops, per-device slices, per-bucket counts): the heavy grouping runs in
the engine or reuses the aggregates the rules already built (ctx.edges_df), so the page can be
rebuilt later (`flowsiem report OUT`) without the flows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..alerts import ACTIONABLE, SEVERITIES
from ..profile import DNS_PORT
from . import DATA_DIR

TOP = 15                 # rows of each "top" table (the seed's figures show 10-20)
MAX_DEVICES = 30         # devices at medium or more given their own section (all are in the table)
DEVICE_PEERS = 8         # destinations drawn per device timeline (the rest are "other")
GRAPH_EDGES = 300        # internal links drawn besides those of flagged devices
MAX_POINTS = 300         # time buckets in the flows-through-time figures
BUCKETS_S = (60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86400)


def bucket_seconds(span_s: float) -> int:
    """The smallest round bucket that draws the capture in at most MAX_POINTS points."""
    return next((b for b in BUCKETS_S if span_s / b <= MAX_POINTS), BUCKETS_S[-1])


def collect(ctx, alerts: list, rows: list[dict], out: Path, meta: dict) -> Path:
    """Write OUT/report_data/ (replacing an earlier one only once the new one is complete)."""
    out = Path(out)
    final, tmp = out / DATA_DIR, out / (DATA_DIR + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _, _, span_s = ctx.span
    bucket = bucket_seconds(span_s)
    acted = [r for r in rows if SEVERITIES[r["severity"]] >= ACTIONABLE][:MAX_DEVICES]  # rows: riskiest first
    inside = [r["ip"] for r in acted if r["families"] != "external_abuse"]
    outside = [r["ip"] for r in acted if "external_abuse" in r["families"].split(";")]
    edges = ctx.edges_df
    geo = ctx.ip_info[["country", "as_org"]]
    tables = {
        "timeline": timeline(ctx.flows, bucket),
        "device_timeline": device_timeline(ctx, inside, outside, alerts, bucket),
        "device_uploads": device_uploads(ctx, edges, inside, geo),
        "device_dns": device_dns(ctx, edges, inside, geo),
        "graph": internal_graph(ctx, edges, alerts),
        **class_tables(edges, geo),
        **client_tables(ctx, alerts),
    }
    for name, df in tables.items():
        if df is not None:
            df.to_parquet(tmp / f"{name}.parquet", index=False)
    meta = {**meta, "bucket_seconds": bucket, "has_baseline": ctx.has_baseline,
            "baseline": _baseline_summary(ctx.profile) if ctx.has_baseline else None,
            "internal_networks": ctx.profile.get("internal_networks", []),
            "internal_servers": ctx.profile.get("internal_servers", [])}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def _baseline_summary(profile: dict) -> dict:
    """The clean day's figures the report draws next to today's (from profile.json)."""
    return {"traffic": {cls: {k: v for k, v in t.items() if k in ("flows", "up_bytes", "down_bytes", "sources",
                                                                   "destinations", "timeline")}
                        for cls, t in profile.get("traffic", {}).items()},
            "hours": profile.get("hours"), "input": profile.get("input")}


def timeline(flows, bucket_s: int):
    """Flows and bytes per traffic class and time bucket."""
    epoch = flows.ts.epoch_seconds()
    t = flows.group_by(traffic_class=flows.traffic_class, bucket=(epoch // bucket_s) * bucket_s).aggregate(
        flows=flows.count(), up_bytes=flows.up_bytes.sum().fill_null(0), down_bytes=flows.down_bytes.sum().fill_null(0))
    return t.to_pandas().sort_values(["traffic_class", "bucket"]).reset_index(drop=True)


def class_tables(edges, geo) -> dict:
    """Per traffic class: totals, top peers (destinations; sources for inbound), countries, AS
    organisations, ports; and the top uploaders to the outside with where they upload."""
    import pandas as pd

    from ..network import EXTERNAL_INTERNAL, INTERNAL_EXTERNAL

    classes, peers, countries, orgs, ports = [], [], [], [], []
    for cls, e in edges.groupby("traffic_class", observed=True):
        peer, other = ("src_ip", "dst_ip") if cls == EXTERNAL_INTERNAL else ("dst_ip", "src_ip")
        classes.append({"traffic_class": cls, "flows": int(e.flows.sum()), "up_bytes": int(e.up_bytes.sum()),
                        "down_bytes": int(e.down_bytes.sum()), "sources": e.src_ip.nunique(),
                        "destinations": e.dst_ip.nunique()})
        per = e.groupby(peer).agg(flows=("flows", "sum"), up_bytes=("up_bytes", "sum"),
                                  down_bytes=("down_bytes", "sum"), hosts=(other, "nunique"))
        per = per.join(geo).rename_axis("ip").reset_index()
        per["as_org"] = per.as_org.fillna("unknown")
        per["country"] = per.country.fillna("??")
        peers.append(per.nlargest(TOP, "flows").assign(traffic_class=cls))
        for key, acc in (("country", countries), ("as_org", orgs)):
            g = per.groupby(key, as_index=False).agg(flows=("flows", "sum"), up_bytes=("up_bytes", "sum"),
                                                     down_bytes=("down_bytes", "sum"), peers=("ip", "count"))
            acc.append(g.nlargest(TOP, "flows").assign(traffic_class=cls))
        p = e.groupby(["proto", "port"], as_index=False, dropna=False).agg(flows=("flows", "sum"),
                                                                           hosts=("src_ip", "nunique"))
        ports.append(p.nlargest(TOP, "flows").assign(traffic_class=cls))
    up = edges[edges.traffic_class == INTERNAL_EXTERNAL].join(geo, on="dst_ip")
    up["as_org"] = up.as_org.fillna("unknown")
    top_hosts = up.groupby("src_ip").up_bytes.sum().nlargest(TOP).index
    uploaders = (up[up.src_ip.isin(top_hosts)].groupby(["src_ip", "as_org"], as_index=False)
                 .agg(up_bytes=("up_bytes", "sum"), flows=("flows", "sum")))
    cat = lambda xs: pd.concat(xs, ignore_index=True) if xs else None  # noqa: E731
    return {"classes": pd.DataFrame(classes), "peers": cat(peers), "countries": cat(countries),
            "orgs": cat(orgs), "ports": cat(ports), "uploaders": uploaders}


def device_timeline(ctx, inside: list[str], outside: list[str], alerts: list, bucket_s: int):
    """Per flagged device, flows per time bucket to each of its main peers (the seed's
    communication timelines): the alerts' own destinations first, then its busiest others. A peer
    is one row whatever the ports (a scan of 800 ports is one row that says so)."""
    import pandas as pd
    import pyarrow as pa

    parts = []
    for ips, table in ((inside, ctx.flows), (outside, ctx.inbound)):
        if not ips or table is None:
            continue
        keys = ctx.engine.from_arrow(pa.table({"k_ip": ips}))
        t = table.join(keys, table.src_ip == keys.k_ip)
        epoch = t.ts.epoch_seconds()
        parts.append(t.group_by(ip=t.src_ip, peer=t.dst_ip, proto=t.proto, port=t.port,
                                bucket=(epoch // bucket_s) * bucket_s).aggregate(
            flows=t.count(), up_bytes=t.up_bytes.sum().fill_null(0),
            down_bytes=t.down_bytes.sum().fill_null(0)).to_pandas())
    if not parts:
        return None
    df = pd.concat(parts, ignore_index=True)
    # One row per peer: its service when it has one, else how many ports (a scan).
    sv = df.groupby(["ip", "peer"], as_index=False).agg(ports=("port", "nunique"), proto=("proto", "first"),
                                                       port=("port", "first"))
    sv["channel"] = sv.peer + " " + sv.proto.astype(str) + "/" + sv.port.astype("Int64").astype(str)
    many = sv.ports > 1
    sv.loc[many, "channel"] = sv.peer[many] + " (" + sv.ports[many].astype(str) + " ports)"
    df = df.drop(columns=["proto", "port"]).merge(sv[["ip", "peer", "channel"]], on=["ip", "peer"])
    named = {(a.source_ip, a.destination_ip) for a in alerts if a.destination_ip}
    rank = df.groupby(["ip", "channel", "peer"], as_index=False).flows.sum()
    rank["named"] = [(i, p) in named for i, p in zip(rank.ip, rank.peer)]
    rank = rank.sort_values(["ip", "named", "flows"], ascending=[True, False, False])
    keep = set(map(tuple, rank.groupby("ip").head(DEVICE_PEERS)[["ip", "channel"]].values))
    df.loc[[(i, c) not in keep for i, c in zip(df.ip, df.channel)], "channel"] = "other"
    return df.groupby(["ip", "channel", "bucket"], as_index=False)[["flows", "up_bytes", "down_bytes"]].sum()


def _org_of(df, geo, col="dst_ip"):
    o = df.join(geo, on=col)
    return o.as_org.fillna(o.country).fillna(o[col])


def _baseline_edges(ctx, ips: list[str]):
    if not ctx.has_baseline or not ips:
        return None
    b = ctx.cached(("report.baseline_edges",), lambda: ctx.base_df("edges"))
    return None if b is None else b[b.src_ip.isin(ips)]


def _days(ctx, edges, inside: list[str], where) -> list:
    """[(day, edges)]: the flagged devices' edges that `where` keeps, today and (when there is one)
    on the baseline day; days without any left out."""
    if not inside:
        return []
    days = [("today", edges[edges.src_ip.isin(inside) & where(edges)])]
    b = _baseline_edges(ctx, inside)
    if b is not None:
        days.append(("baseline", b[where(b)]))
    return [(d, e) for d, e in days if len(e)]


def device_uploads(ctx, edges, inside: list[str], geo):
    """Per flagged internal device, bytes sent to each outside organisation today and on the
    baseline day (the seed's upload-by-destination figures)."""
    import pandas as pd

    from ..network import INTERNAL_EXTERNAL

    parts = []
    for day, e in _days(ctx, edges, inside, lambda t: t.traffic_class == INTERNAL_EXTERNAL):
        e = e.assign(org=_org_of(e, geo).values)
        parts.append(e.groupby(["src_ip", "org"], as_index=False).up_bytes.sum().assign(day=day))
    if not parts:
        return None
    df = pd.concat(parts, ignore_index=True).rename(columns={"src_ip": "ip"})
    top = df[df.day == "today"].sort_values("up_bytes", ascending=False).groupby("ip").head(DEVICE_PEERS)
    keep = set(zip(top.ip, top.org))
    return df[[(i, o) in keep for i, o in zip(df.ip, df.org)]].reset_index(drop=True)


def device_dns(ctx, edges, inside: list[str], geo):
    """Per flagged internal device, DNS flows and bytes per resolver today and on the baseline day."""
    import pandas as pd

    parts = [e.groupby(["src_ip", "dst_ip"], as_index=False)[["flows", "up_bytes"]].sum().assign(day=day)
             for day, e in _days(ctx, edges, inside, lambda t: t.port == DNS_PORT)]
    if not parts:
        return None
    df = pd.concat(parts, ignore_index=True).rename(columns={"src_ip": "ip", "dst_ip": "resolver"})
    df["org"] = _org_of(df, geo, "resolver").values
    return df


def internal_graph(ctx, edges, alerts: list):
    """Internal host-to-host links: those of flagged devices and the busiest others, each marked
    new when the baseline day did not have it."""
    from ..network import INTERNAL_INTERNAL

    ii = edges[edges.traffic_class == INTERNAL_INTERNAL]
    if not len(ii):
        return None
    g = ii.groupby(["src_ip", "dst_ip"], as_index=False).agg(flows=("flows", "sum"), up_bytes=("up_bytes", "sum"))
    flagged = {a.source_ip for a in alerts if a.actionable and a.rule.family != "external_abuse"}
    touch = g.src_ip.isin(flagged) | g.dst_ip.isin(flagged)
    g = g[touch | g.index.isin(g[~touch].nlargest(GRAPH_EDGES, "flows").index)]
    b = _baseline_edges(ctx, sorted(set(g.src_ip)))
    if b is not None:
        seen = set(zip(b.src_ip, b.dst_ip))
        g = g.assign(new=[(s, d) not in seen for s, d in zip(g.src_ip, g.dst_ip)])
    else:
        g = g.assign(new=False)
    return g.reset_index(drop=True)


def client_tables(ctx, alerts: list) -> dict:
    """External clients of the public servers (or the capture's inbound flows): by hour and by
    country, flagged ones apart, and each flagged client's own hours."""
    t = ctx.inbound
    if t is None:
        return {}
    flagged = sorted({a.source_ip for a in alerts if a.actionable and a.rule.family == "external_abuse"})
    per = t.group_by(ip=t.src_ip, hour=t.hour).aggregate(flows=t.count()).to_pandas()
    if not len(per):
        return {}
    per["flagged"] = per.ip.isin(flagged)
    hours = per.groupby(["hour", "flagged"], as_index=False).agg(flows=("flows", "sum"), clients=("ip", "nunique"))
    geo = ctx.ip_info[["country", "as_org"]]
    clients = per.groupby(["ip", "flagged"], as_index=False).agg(flows=("flows", "sum"), hours=("hour", "nunique"))
    clients = clients.join(geo, on="ip")
    clients["country"] = clients.country.fillna("??")
    countries = clients.groupby("country", as_index=False).agg(
        clients=("ip", "count"), flows=("flows", "sum"), flagged=("flagged", "sum"))
    keep = countries.nlargest(TOP, "clients").country.tolist() + \
        clients[clients.flagged].country.unique().tolist()
    return {"client_hours": hours, "client_countries": countries[countries.country.isin(keep)],
            "flagged_client_hours": per[per.flagged].drop(columns="flagged")}
