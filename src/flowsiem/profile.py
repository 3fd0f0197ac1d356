"""`flowsiem profile`: the seed's "non-anomalous analysis" (section 2) as data and a reusable baseline.

Flow-level work is a handful of Ibis aggregations over the classified flow table (a lazy join of
the input with a small per-address table); each reads only the columns it needs. Everything
after that works on aggregated tables (per edge, per host, per hour) small enough for pandas.

Outputs in OUT/:
  profile.json               statistics (schema: PROFILE_SCHEMA below and the README)
  baseline/edges.parquet     src_ip, dst_ip, proto, port, traffic_class, flows, up_bytes, down_bytes,
                             first_ts, last_ts, hours   (one row per distinct connection key)
  baseline/hosts.parquet     one row per internal source host (see HOST_COLUMNS)
  baseline/host_hours.parquet  src_ip, hour, flows, up_bytes, down_bytes
  baseline/services.parquet  internal servers: ip, proto, port, flows, clients, up_bytes, down_bytes
  baseline/destinations.parquet  per external destination: flows, sources, up/down bytes, largest
                             upload by one host, country, asn, as_org
  baseline/ip_info.parquet   every address seen: internal flag, country, asn, as_org
  baseline/clients.parquet   (with --servers) per external client of the public servers
  baseline/client_hours.parquet  (with --servers) ip, hour, flows of each external client
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .atomic import replacing, write_text
from .console import console, info, stage
from .engine import split_list_column
from .errors import UsageError
from .network import (EXTERNAL_INTERNAL, INTERNAL_EXTERNAL, INTERNAL_INTERNAL, TRAFFIC_CLASSES,
                      NetworkModel, internal_services, parse_cidrs, with_traffic_class)

PROFILE_SCHEMA_VERSION = 1
DNS_PORT = 53  # a protocol fact, not a tuned value: DNS resolvers are identified by it
QUANTILES = (0.25, 0.5, 0.75)


@dataclass
class ProfileOptions:
    bucket: str = "10m"            # width of the flows-through-time buckets
    top: int = 15                  # rows kept in each "top" table
    fmt: str = "auto"
    time_unit: str = "auto"
    date: str | None = None
    internal: str | None = None    # CIDR list; inferred from sources when None
    geoip_country: Path | None = None
    geoip_asn: Path | None = None
    engine: str = "duckdb"
    min_clients: int = 3           # distinct internal clients that make a (dst, proto, port) a service
    quiet_hour_share: float = 0.25 # an hour is "quiet" when it has < this share of the busiest hour's flows
    on_bad_rows: str = "error"     # or "skip": leave bad rows out, into OUT/rejected.parquet


@dataclass
class ProfileResult:
    profile: dict
    out: Path
    tables: dict = field(default_factory=dict)   # name -> pandas DataFrame (small, aggregated)
    seconds: float = 0.0


def parse_bucket(text: str) -> int:
    """'10m' -> 600 seconds. Units: s, m, h."""
    m = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", str(text))
    if not m or int(m.group(1)) <= 0:
        raise UsageError(f"--bucket: '{text}' is not a duration like 30s, 10m or 1h")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# --- small helpers -------------------------------------------------------------------------

def _jsonable(v):
    """numpy/pandas scalars -> plain JSON values (NaN -> None)."""
    import math

    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if not isinstance(v, (str, bytes)) and not hasattr(v, "__len__"):
        import pandas as pd

        if pd.isna(v):  # pd.NA, NaT, NaN
            return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _records(df, columns=None) -> list[dict]:
    if df is None or len(df) == 0:
        return []
    cols = columns or list(df.columns)
    return [{c: _jsonable(v) for c, v in zip(cols, row)} for row in df[cols].itertuples(index=False)]


def _describe(t, by: str, cols=("port", "up_bytes", "down_bytes")):
    """pandas-describe-like statistics per group, in one aggregation (exact quantiles, linear
    interpolation as pandas uses; sample standard deviation)."""
    aggs = {}
    for c in cols:
        col = t[c]
        aggs[f"{c}__count"] = col.count()
        aggs[f"{c}__mean"] = col.mean()
        aggs[f"{c}__std"] = col.std()
        aggs[f"{c}__min"] = col.min()
        aggs[f"{c}__quantiles"] = col.quantile(list(QUANTILES))  # all in one pass: one sort per column
        aggs[f"{c}__max"] = col.max()
    df = t.group_by(by).aggregate(**aggs).to_pandas()
    for c in cols:  # back in describe's order: ... min, 25%, 50%, 75%, max
        split_list_column(df, f"{c}__quantiles", [f"{c}__{int(q * 100)}%" for q in QUANTILES])
        df[f"{c}__max"] = df.pop(f"{c}__max")
    out = {}
    for row in df.to_dict("records"):
        key = row.pop(by)
        stats: dict = {}
        for k, v in row.items():
            c, stat = k.split("__")
            stats.setdefault(c, {})[stat] = _jsonable(v)
        out[key] = stats
    return out


def _top(df, by, n, sort="flows"):
    if df is None or len(df) == 0:
        return df
    return df.sort_values([sort, by] if isinstance(by, str) else [sort, *by],
                          ascending=[False] + [True] * (1 if isinstance(by, str) else len(by))).head(n)


# --- the profile ---------------------------------------------------------------------------

def build_profile(data, out: Path, servers=None, options: ProfileOptions | None = None) -> ProfileResult:
    import pandas as pd
    import pyarrow as pa

    from .engine import connect
    from .enrich import GeoResolver
    from .io import read_flows
    from .io.rejected import write_rejected

    opts = options or ProfileOptions()
    bucket_s = parse_bucket(opts.bucket)
    parse_cidrs(opts.internal)  # validate options before any data is read
    t0 = time.perf_counter()
    out = Path(out)
    base = out / "baseline"
    base.mkdir(parents=True, exist_ok=True)

    engine = connect(opts.engine)
    with stage("reading flows"):
        read = read_flows(data, engine, fmt=opts.fmt, time_unit=opts.time_unit, date=opts.date,
                          on_bad_rows=opts.on_bad_rows)
    _report_read(read)
    raw = read.table

    # Scan 1 (two columns): distinct addresses, to model the network and enrich per unique IP.
    with stage("finding addresses"):
        src = raw.group_by(ip=raw.src_ip).aggregate(as_src=raw.count()).to_pandas()
        dst = raw.select(ip=raw.dst_ip).distinct().to_pandas()
    if len(src) == 0:
        from .errors import InputError
        raise InputError("no flows to profile", file=", ".join(str(f) for f in read.files))
    model = NetworkModel.from_option_or_sources(opts.internal, src.ip.tolist())
    if not model.networks:
        raise UsageError("could not infer internal networks from the sources; give --internal CIDR,...")
    info(f"internal networks ({'inferred from sources' if model.inferred else '--internal'}): "
         f"{', '.join(model.cidrs)}")

    ips = pd.Series(pd.unique(pd.concat([src.ip, dst.ip], ignore_index=True)), dtype=object)
    with stage(f"enriching {len(ips):,} addresses"):
        geo = GeoResolver(opts.geoip_country, opts.geoip_asn)
        ip_info = geo.lookup(ips.tolist()).to_pandas()
    ip_info["internal"] = model.classify_ips(ip_info.ip.tolist())
    ip_table = engine.from_arrow(pa.Table.from_pandas(ip_info[["ip", "internal"]], preserve_index=False))

    # Read and classify the day once, into the engine: every statistic below scans that table.
    with stage("loading the baseline day into the engine"):
        flows = with_traffic_class(raw, ip_table)
        flows = engine.materialize(flows.mutate(hour=flows.ts.hour().cast("int8")),
                                   labels={"traffic_class": TRAFFIC_CLASSES})

    with stage("computing statistics"):
        profile, tables = _profile_flows(flows, engine, model, ip_info, opts, bucket_s)
    profile["input"] = _input_section(read, flows)
    profile["geoip"] = geo.source

    srv_read = None
    if servers:
        with stage("profiling public-server clients"):
            profile["public_servers"], tables["clients"], tables["client_hours"], srv_read = _profile_servers(
                servers, engine, model, geo, opts, bucket_s)
    else:
        profile["public_servers"] = None
    write_rejected({"baseline": read, "servers baseline": srv_read}, out / "rejected.parquet")

    tables["ip_info"] = ip_info[["ip", "internal", "country", "asn", "as_org", "private"]]
    # The old profile.json goes first: until the new one is written, the directory is incomplete.
    (out / "profile.json").unlink(missing_ok=True)
    written = {}
    for name, df in tables.items():
        if df is None:
            continue
        path = base / f"{name}.parquet"
        # Microsecond timestamps: Spark cannot read parquet's nanosecond ones.
        with replacing(path) as tmp:
            df.reset_index(drop=True).to_parquet(tmp, index=False, coerce_timestamps="us",
                                                 allow_truncated_timestamps=True)
        written[name] = str(path.relative_to(out))
    profile["baseline_tables"] = written
    profile["seconds"] = round(time.perf_counter() - t0, 3)
    ordered = {"schema_version": PROFILE_SCHEMA_VERSION, "generated_by": f"flowsiem {__version__}"}
    ordered.update(profile)
    # Written last: a baseline directory without profile.json is incomplete, and detect says so.
    write_text(out / "profile.json", json.dumps(ordered, indent=1, default=_jsonable) + "\n")
    return ProfileResult(profile=ordered, out=out, tables=tables, seconds=ordered["seconds"])


def _int0(s):
    """Byte sums as int64 with missing as 0. pd.to_numeric first: a column whose bytes are all
    null arrives as objects, and fillna on objects warns (pandas' silent downcasting)."""
    import pandas as pd

    return pd.to_numeric(s, errors="coerce").fillna(0).astype("int64")


def _report_read(read) -> None:
    files = read.files
    what = str(files[0]) if len(files) == 1 else f"{len(files)} files"
    info(f"read {what} as {read.fmt}")
    if read.time_unit:
        how = "guessed; override with --time-unit" if read.time_unit_guessed else "given"
        info(f"timestamps: {read.time_unit} ({how})")
    for note in read.notes:
        info(f"note: {note}")


def _input_section(read, flows) -> dict:
    span = flows.aggregate(rows=flows.count(), start=flows.ts.min(), end=flows.ts.max()).to_pandas().iloc[0]
    return {
        "files": [str(f) for f in read.files],
        "format": read.fmt,
        "time_unit": read.time_unit,
        "time_unit_guessed": read.time_unit_guessed,
        "rows": int(span["rows"]),
        "start": _jsonable(span["start"]),
        "end": _jsonable(span["end"]),
        "notes": list(read.notes),
    }


def _profile_flows(flows, engine, model, ip_info, opts: ProfileOptions, bucket_s: int):
    """All statistics of the classified flow table. Returns (profile dict, tables)."""
    import pandas as pd

    top = opts.top
    geo = ip_info.set_index("ip")[["country", "asn", "as_org"]]

    # Edges per clock hour, kept in the engine: one pass over the flows for the edges and the
    # hosts' hours below (a distinct count of hours per edge costs more than this pass).
    eh = engine.materialize(flows.group_by("src_ip", "dst_ip", "proto", "port", "traffic_class", "hour").aggregate(
        flows=flows.count(), up_bytes=flows.up_bytes.sum(), down_bytes=flows.down_bytes.sum(),
        first_ts=flows.ts.min(), last_ts=flows.ts.max()))
    # Edges: one row per (src, dst, proto, port); the source of most tables below.
    edges = eh.group_by("src_ip", "dst_ip", "proto", "port", "traffic_class").aggregate(
        flows=eh.flows.sum(),
        up_bytes=eh.up_bytes.sum(),
        down_bytes=eh.down_bytes.sum(),
        first_ts=eh.first_ts.min(),
        last_ts=eh.last_ts.max(),
        hours=eh.hour.count(),  # one row per hour it was used
    ).to_pandas()
    for c in ("up_bytes", "down_bytes"):
        edges[c] = _int0(edges[c])

    describe = _describe(flows, "traffic_class")

    # Flows through time: epoch seconds floored to the bucket (portable; no backend-specific bucketing).
    epoch = flows.ts.epoch_seconds()
    bucket = (epoch // bucket_s) * bucket_s
    timeline = flows.group_by(traffic_class=flows.traffic_class, bucket=bucket).aggregate(
        flows=flows.count(), up_bytes=flows.up_bytes.sum(), down_bytes=flows.down_bytes.sum(),
    ).to_pandas().sort_values(["traffic_class", "bucket"])

    # Per internal host: hourly activity and per-flow size distribution.
    hosts_f = flows.filter(flows.src_internal)
    hosts_eh = eh.filter(eh.traffic_class.isin([INTERNAL_INTERNAL, INTERNAL_EXTERNAL]))  # src_internal
    host_hours = hosts_eh.group_by("src_ip", "hour").aggregate(
        flows=hosts_eh.flows.sum(), up_bytes=hosts_eh.up_bytes.sum(), down_bytes=hosts_eh.down_bytes.sum(),
    ).to_pandas()
    for c in ("up_bytes", "down_bytes"):
        host_hours[c] = _int0(host_hours[c])
    host_sizes = hosts_f.group_by("src_ip").aggregate(  # each column's quantiles in one pass (one sort)
        up_q=hosts_f.up_bytes.quantile([0.5, 0.9, 0.99]), up_max=hosts_f.up_bytes.max(),
        down_q=hosts_f.down_bytes.quantile([0.5, 0.9]),
    ).to_pandas()
    split_list_column(host_sizes, "up_q", ("up_p50", "up_p90", "up_p99"))
    split_list_column(host_sizes, "down_q", ("down_p50", "down_p90"))
    host_sizes = host_sizes[["src_ip", "up_p50", "up_p90", "up_p99", "up_max", "down_p50", "down_p90"]]

    services = internal_services(flows.filter(flows.traffic_class == INTERNAL_INTERNAL), opts.min_clients) \
        .to_pandas().sort_values(["ip", "proto", "port"]).reset_index(drop=True)
    # Multicast and broadcast destinations receive from many hosts but are not servers.
    services = services[services.ip.map(model.is_unicast_host).astype(bool)].reset_index(drop=True)
    server_ips = set(services.ip)

    profile: dict = {
        "internal_networks": model.cidrs,
        "internal_networks_inferred": model.inferred,
        "internal_servers": _servers_json(services),
    }

    # Per traffic class.
    traffic = {}
    for cls in TRAFFIC_CLASSES:
        e = edges[edges.traffic_class == cls]
        if len(e) == 0:
            continue
        peer = "src_ip" if cls == EXTERNAL_INTERNAL else "dst_ip"
        per_peer = e.groupby(peer, as_index=False).agg(
            flows=("flows", "sum"), up_bytes=("up_bytes", "sum"), down_bytes=("down_bytes", "sum"),
            hosts=("src_ip" if peer == "dst_ip" else "dst_ip", "nunique"),
        ).rename(columns={peer: "ip"})
        per_peer = per_peer.join(geo, on="ip")
        tl = timeline[timeline.traffic_class == cls]
        traffic[cls] = {
            "flows": int(e.flows.sum()),
            "up_bytes": int(e.up_bytes.sum()),
            "down_bytes": int(e.down_bytes.sum()),
            "sources": int(e.src_ip.nunique()),
            "destinations": int(e.dst_ip.nunique()),
            "describe": describe.get(cls, {}),
            "timeline": {
                "bucket_seconds": bucket_s,
                "points": [[_jsonable(pd.Timestamp(int(b), unit="s")), int(f), int(u or 0), int(d or 0)]
                           for b, f, u, d in tl[["bucket", "flows", "up_bytes", "down_bytes"]]
                           .itertuples(index=False)],
            },
            "top_destinations" if peer == "dst_ip" else "top_sources":
                _records(_top(per_peer, "ip", top), ["ip", "flows", "up_bytes", "down_bytes", "hosts",
                                                    "country", "as_org"]),
            "countries": _records(_top(_sum_by(per_peer, "country"), "country", top)),
            "asn_orgs": _records(_top(_sum_by(per_peer.assign(as_org=per_peer.as_org.fillna("unknown")),
                                              "as_org"), "as_org", top)),
            "protocols": _records(_top(_sum_by(e, "proto"), "proto", top)),
            "ports": _records(_top(_sum_by(e, ["proto", "port"]), ["proto", "port"], top)),
        }
    profile["traffic"] = traffic

    ie = edges[edges.traffic_class == INTERNAL_EXTERNAL]
    profile["top_uploaders"] = _top_uploaders(ie, geo, top)

    hosts = _hosts_table(edges, host_hours, host_sizes, server_ips)
    hosts = hosts[hosts.ip.map(model.is_unicast_host).astype(bool)].reset_index(drop=True)  # e.g. DHCP's 0.0.0.0
    by_hour = host_hours.groupby("hour").flows.sum().reindex(range(24), fill_value=0)
    quiet = [int(h) for h, n in by_hour.items() if n < opts.quiet_hour_share * by_hour.max()]
    profile["hours"] = {"flows_by_hour": [int(x) for x in by_hour.tolist()], "quiet_hours": quiet,
                        "quiet_hour_share": opts.quiet_hour_share}
    profile["hosts"] = {
        "count": int(len(hosts)),
        "servers": sorted(server_ips),
        "resolvers": sorted(set(edges[(edges.port == DNS_PORT) & edges.src_ip.isin(hosts.ip)].dst_ip)),
        "upload_bytes_per_host": _quantiles(hosts.up_bytes),
        "flows_per_host": _quantiles(hosts.flows),
        "active_hours_per_host": _quantiles(hosts.active_hours),
    }

    destinations = _destinations_table(edges, geo)
    tables = {"edges": edges, "hosts": hosts, "host_hours": host_hours, "services": services,
              "destinations": destinations, "timeline": timeline}
    return profile, tables


def _sum_by(df, by):
    return df.groupby(by, as_index=False, dropna=False)[["flows", "up_bytes", "down_bytes"]].sum()


def _quantiles(s) -> dict:
    if len(s) == 0:
        return {}
    q = s.quantile([0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0])
    return {k: _jsonable(v) for k, v in zip(("min", "25%", "50%", "75%", "90%", "99%", "max"), q.tolist())}


def _servers_json(services) -> list[dict]:
    out = []
    for ip, g in services.groupby("ip", sort=True):
        out.append({"ip": ip, "services": _records(g, ["proto", "port", "flows", "clients", "up_bytes", "down_bytes"])})
    return out


def _top_uploaders(ie, geo, top: int) -> list[dict]:
    if len(ie) == 0:
        return []
    per_src = ie.groupby("src_ip").agg(up_bytes=("up_bytes", "sum"), flows=("flows", "sum"))
    per_src["mean_up_bytes"] = per_src.up_bytes / per_src.flows
    per_src = per_src.sort_values(["up_bytes"], ascending=False).head(min(top, 10))
    out = []
    for ip, row in per_src.iterrows():
        to = ie[ie.src_ip == ip].groupby("dst_ip").up_bytes.sum().sort_values(ascending=False).head(5)
        dests = [{"ip": d, "up_bytes": int(b), "country": _jsonable(geo.country.get(d)),
                  "as_org": _jsonable(geo.as_org.get(d))} for d, b in to.items()]
        out.append({"ip": ip, "up_bytes": int(row.up_bytes), "flows": int(row.flows),
                    "mean_up_bytes": round(float(row.mean_up_bytes), 1), "destinations": dests})
    return out


HOST_COLUMNS = (
    "ip", "flows", "up_bytes", "down_bytes", "peers", "external_peers", "internal_peers",
    "servers_used", "resolvers", "active_hours", "first_hour", "last_hour",
    "hourly_up_median", "hourly_up_mad", "hourly_up_max", "hourly_flows_median",
    "up_p50", "up_p90", "up_p99", "up_max", "down_p50", "down_p90",
)


def _hosts_table(edges, host_hours, host_sizes, server_ips):
    """Per internal source host: volumes, peers, resolvers, active hours, upload distribution."""
    import numpy as np
    import pandas as pd

    e = edges[edges.traffic_class.isin([INTERNAL_INTERNAL, INTERNAL_EXTERNAL])]
    if len(e) == 0:
        return pd.DataFrame(columns=list(HOST_COLUMNS))
    is_ii = e.traffic_class == INTERNAL_INTERNAL
    g = e.groupby("src_ip")
    hosts = pd.DataFrame({
        "flows": g.flows.sum(),
        "up_bytes": g.up_bytes.sum(),
        "down_bytes": g.down_bytes.sum(),
        "peers": g.dst_ip.nunique(),
    })
    hosts["external_peers"] = e[~is_ii].groupby("src_ip").dst_ip.nunique()
    peer_hosts = e[is_ii & ~e.dst_ip.isin(server_ips)]
    hosts["internal_peers"] = peer_hosts.groupby("src_ip").dst_ip.nunique()
    hosts["servers_used"] = e[is_ii & e.dst_ip.isin(server_ips)].groupby("src_ip").dst_ip.nunique()
    hosts["resolvers"] = e[e.port == DNS_PORT].groupby("src_ip").dst_ip.apply(lambda s: sorted(set(s)))
    hosts["resolvers"] = hosts["resolvers"].apply(lambda v: v if isinstance(v, list) else [])

    # Hourly upload: 24 values per host (absent hours count as 0) -> median, MAD, max.
    hh = host_hours.pivot_table(index="src_ip", columns="hour", values="up_bytes", aggfunc="sum",
                                fill_value=0).reindex(columns=range(24), fill_value=0)
    hf = host_hours.pivot_table(index="src_ip", columns="hour", values="flows", aggfunc="sum",
                                fill_value=0).reindex(columns=range(24), fill_value=0)
    med = np.median(hh.values, axis=1)
    hosts["hourly_up_median"] = pd.Series(med, index=hh.index)
    hosts["hourly_up_mad"] = pd.Series(np.median(np.abs(hh.values - med[:, None]), axis=1), index=hh.index)
    hosts["hourly_up_max"] = pd.Series(hh.values.max(axis=1), index=hh.index)
    hosts["hourly_flows_median"] = pd.Series(np.median(hf.values, axis=1), index=hf.index)
    active = hf.values > 0
    hosts["active_hours"] = pd.Series(active.sum(axis=1), index=hf.index)
    hours_idx = np.arange(24)
    hosts["first_hour"] = pd.Series([int(hours_idx[a].min()) if a.any() else -1 for a in active], index=hf.index)
    hosts["last_hour"] = pd.Series([int(hours_idx[a].max()) if a.any() else -1 for a in active], index=hf.index)
    hosts = hosts.join(host_sizes.set_index("src_ip"))
    for c in ("external_peers", "internal_peers", "servers_used", "active_hours"):
        hosts[c] = _int0(hosts[c])
    hosts = hosts.reset_index(names="ip")
    return hosts[list(HOST_COLUMNS)].sort_values("ip").reset_index(drop=True)


def service_hours(t):
    """A servers file per (client, server, service, hour): flows, bytes, first and last timestamps,
    and the count and sum of squares of the request sizes (a client's spread of sizes without its
    flows). One pass over the flows; the client tables of the profile and of detection are
    derived from it. `t` needs an `hour` column."""
    up = t.up_bytes.cast("float64")
    return t.group_by("src_ip", "dst_ip", "proto", "port", "hour").aggregate(
        flows=t.count(), up_bytes=t.up_bytes.sum(), down_bytes=t.down_bytes.sum(),
        first_ts=t.ts.min(), last_ts=t.ts.max(), up_n=t.up_bytes.count(), up_sq=(up * up).sum())


def main_service(t, ips):
    """Per client (in the order of `ips`): the service it used most, as 'proto/port' (clients of a
    VPN, a mail relay or a web site are judged against the clients of the same service). `t`:
    flows, or an aggregate of them with a `flows` count per row."""
    n = t.flows.sum() if "flows" in t.columns else t.count()
    svc = t.group_by(ip=t.src_ip, proto=t.proto, port=t.port).aggregate(n=n).to_pandas()
    svc = svc.sort_values(["n", "port"], ascending=[False, True]).drop_duplicates("ip")
    name = svc.proto.astype(str) + "/" + svc.port.astype("Int64").astype(str)
    return ips.map(dict(zip(svc.ip, name))).to_numpy()


def _destinations_table(edges, geo):
    """Per external destination of internal hosts: popularity and the largest upload one host sent."""
    ie = edges[edges.traffic_class == INTERNAL_EXTERNAL]
    if len(ie) == 0:
        return None
    per_pair = ie.groupby(["dst_ip", "src_ip"], as_index=False)[["flows", "up_bytes", "down_bytes"]].sum()
    g = per_pair.groupby("dst_ip")
    d = g.agg(flows=("flows", "sum"), up_bytes=("up_bytes", "sum"), down_bytes=("down_bytes", "sum"),
              sources=("src_ip", "nunique"), max_host_up_bytes=("up_bytes", "max"))
    d = d.join(geo, how="left").reset_index(names="ip")
    return d.sort_values("flows", ascending=False).reset_index(drop=True)


def _profile_servers(servers, engine, model, geo, opts: ProfileOptions, bucket_s: int):
    """The population of external clients of the public servers (the servers file):
    (profile section, clients table, client-hours table, the file's ReadResult)."""
    from .io import read_flows

    read = read_flows(servers, engine, fmt=opts.fmt, time_unit=opts.time_unit, date=opts.date,
                      on_bad_rows=opts.on_bad_rows)
    _report_read(read)
    t = read.table
    t = t.mutate(hour=t.ts.hour().cast("int8"))
    # One pass over the flows to (client, server, service, hour); the tables below from it.
    a = engine.materialize(service_hours(t))
    clients = a.group_by(ip=a.src_ip).aggregate(
        flows=a.flows.sum(), up_bytes=a.up_bytes.sum(), down_bytes=a.down_bytes.sum(),
        servers=a.dst_ip.nunique(), active_hours=a.hour.nunique(),
        first_ts=a.first_ts.min(), last_ts=a.last_ts.max(),
    ).to_pandas()
    by_hour_client = a.group_by(ip=a.src_ip, hour=a.hour).aggregate(flows=a.flows.sum()).to_pandas()
    clients["service"] = main_service(a, clients.ip)
    srv = a.group_by(ip=a.dst_ip, proto=a.proto, port=a.port).aggregate(
        flows=a.flows.sum(), clients=a.src_ip.nunique(), up_bytes=a.up_bytes.sum(), down_bytes=a.down_bytes.sum(),
    ).to_pandas().sort_values(["ip", "proto", "port"])
    describe = _describe(t.mutate(k=0), "k").get(0, {})

    by_hour = by_hour_client.groupby("hour").flows.sum().reindex(range(24), fill_value=0)
    info_tbl = geo.lookup(clients.ip.tolist()).to_pandas().set_index("ip")
    clients = clients.join(info_tbl[["country", "asn", "as_org"]], on="ip")
    clients["internal"] = model.classify_ips(clients.ip.tolist())
    external = clients[~clients.internal]
    client_hours = by_hour_client[by_hour_client.ip.isin(set(external.ip))].astype({"hour": "int8"})
    # The clients' rhythm with each client weighing one: a few heavy clients cannot shape it, and
    # hours that many light clients use (evenings at home) are not quiet. Quiet hours have less
    # than quiet_hour_share of the busiest hour's weight.
    per_client = client_hours.flows / client_hours.groupby("ip").flows.transform("sum")
    hour_profile = per_client.groupby(client_hours.hour).sum().reindex(range(24), fill_value=0.0)
    hour_profile = hour_profile / max(float(hour_profile.sum()), 1e-12)
    quiet = [int(h) for h, w in hour_profile.items() if w < opts.quiet_hour_share * hour_profile.max()]
    off = by_hour_client[by_hour_client.hour.isin(quiet)].groupby("ip").flows.sum()
    clients["quiet_hour_flows"] = clients.ip.map(off).fillna(0).astype("int64")
    clients["quiet_hour_share"] = clients.quiet_hour_flows / clients.flows
    external = clients[~clients.internal]
    top = opts.top

    def pop(col):
        return _records(_top(external.assign(**{col: external[col].fillna("unknown")})
                             .groupby(col, as_index=False).agg(flows=("flows", "sum"), clients=("ip", "count")),
                             col, top))

    section = {
        "input": {"files": [str(f) for f in read.files], "format": read.fmt, "time_unit": read.time_unit,
                  "time_unit_guessed": read.time_unit_guessed, "notes": list(read.notes)},
        "servers": [{"ip": ip, "services": _records(g, ["proto", "port", "flows", "clients", "up_bytes", "down_bytes"])}
                    for ip, g in srv.groupby("ip", sort=True)],
        "clients": {
            "count": int(len(external)),
            "internal_clients": int(clients.internal.sum()),
            "flows": int(external.flows.sum()),
            "up_bytes": int(external.up_bytes.fillna(0).sum()),
            "down_bytes": int(external.down_bytes.fillna(0).sum()),
            "describe": describe,
            "flows_per_client": _quantiles(external.flows),
            "down_bytes_per_client": _quantiles(external.down_bytes.fillna(0)),
            "active_hours_per_client": _quantiles(external.active_hours),
            "quiet_hour_share_per_client": _quantiles(external.quiet_hour_share),
            "flows_by_hour": [int(x) for x in by_hour.tolist()],
            "quiet_hours": quiet,
            "hour_profile": [round(float(x), 6) for x in hour_profile.tolist()],
            "countries": pop("country"),
            "asn_orgs": pop("as_org"),
            "top_clients": _records(_top(external, "ip", top),
                                    ["ip", "flows", "up_bytes", "down_bytes", "active_hours", "quiet_hour_share",
                                     "country", "as_org"]),
        },
    }
    return (section, clients.sort_values("flows", ascending=False).reset_index(drop=True),
            client_hours.sort_values(["ip", "hour"]).reset_index(drop=True), read)


# --- terminal summary ----------------------------------------------------------------------

def _fmt_bytes(n) -> str:
    n = float(n or 0)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n}"


def print_summary(result: ProfileResult, out: Path) -> None:
    from rich.table import Table

    p = result.profile
    c = console()
    inp = p["input"]
    c.print(f"[bold]Profile[/] of {inp['rows']:,} flows ({inp['start']} → {inp['end']}) "
            f"in {result.seconds:.1f} s")
    c.print(f"Internal networks: [cyan]{', '.join(p['internal_networks'])}[/]"
            f"{' (inferred)' if p['internal_networks_inferred'] else ''}")

    t = Table(title="Internal servers", title_justify="left")
    for col in ("server", "service", "flows", "clients"):
        t.add_column(col, justify="right" if col in ("flows", "clients") else "left")
    for s in p["internal_servers"]:
        for i, svc in enumerate(s["services"]):
            t.add_row(s["ip"] if i == 0 else "", f"{svc['proto']}/{svc['port']}", f"{svc['flows']:,}", f"{svc['clients']:,}")
    c.print(t)

    t = Table(title="Traffic classes", title_justify="left")
    for col in ("class", "flows", "up", "down", "top ports", "top countries"):
        t.add_column(col)
    for cls, s in p["traffic"].items():
        ports = ", ".join(f"{x['proto']}/{x['port']}" for x in s["ports"][:3])
        countries = ", ".join(str(x["country"]) for x in s["countries"][:4])
        t.add_row(cls, f"{s['flows']:,}", _fmt_bytes(s["up_bytes"]), _fmt_bytes(s["down_bytes"]), ports, countries)
    c.print(t)

    if p["top_uploaders"]:
        t = Table(title="Top uploaders (internal → external)", title_justify="left")
        for col in ("host", "uploaded", "flows", "mean/flow", "mostly to"):
            t.add_column(col)
        for u in p["top_uploaders"][:5]:
            d = u["destinations"][0] if u["destinations"] else {}
            t.add_row(u["ip"], _fmt_bytes(u["up_bytes"]), f"{u['flows']:,}", _fmt_bytes(u["mean_up_bytes"]),
                      f"{d.get('ip', '')} {d.get('as_org') or ''} {d.get('country') or ''}")
        c.print(t)

    h = p["hosts"]
    c.print(f"Hosts: {h['count']:,} internal sources; resolvers used: {', '.join(h['resolvers']) or 'none'}; "
            f"quiet hours: {_hours_text(p['hours']['quiet_hours'])}")
    ps = p.get("public_servers")
    if ps:
        cl = ps["clients"]
        servers = ", ".join(f"{s['ip']} ({'/'.join(str(x['port']) for x in s['services'])})" for s in ps["servers"][:5])
        countries = ", ".join(f"{x['country']}" for x in cl["countries"][:5])
        c.print(f"Public servers: {servers}; {cl['count']:,} external clients, {cl['flows']:,} flows; "
                f"countries: {countries}")
    c.print(f"Wrote [green]{out / 'profile.json'}[/] and {len(p['baseline_tables'])} baseline tables in "
            f"[green]{out / 'baseline'}[/]")


def _hours_text(hours: list[int]) -> str:
    """[0,1,2,5,22,23] -> '00–02h, 05h, 22–23h'."""
    if not hours:
        return "none"
    runs, start, prev = [], hours[0], hours[0]
    for h in hours[1:] + [None]:
        if h is not None and h == prev + 1:
            prev = h
            continue
        runs.append(f"{start:02d}h" if start == prev else f"{start:02d}–{prev:02d}h")
        if h is not None:
            start = prev = h
    return ", ".join(runs)
