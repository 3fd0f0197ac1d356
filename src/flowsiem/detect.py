"""`flowsiem detect`: apply the rules to a new day against a baseline written by `flowsiem profile`.

The test day is read once into the engine (lazily, like the profile), classified with the
baseline's network model, and summarised into one per-(edge, hour) aggregate that most rules
start from. Rules (flowsiem.rules.*) build Ibis expressions over these tables and the baseline
tables, score the small results in Python and return Alerts; detect then attaches a few example
flows to each alert in one batched query and writes the outputs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .console import info, stage
from .errors import InputError, UsageError
from .network import TRAFFIC_CLASSES, NetworkModel, addresses, parse_cidrs, with_traffic_class

BASELINE_TABLES = ("edges", "hosts", "host_hours", "services", "destinations", "ip_info", "clients", "client_hours")


@dataclass
class DetectOptions:
    fmt: str = "auto"
    time_unit: str = "auto"
    date: str | None = None
    engine: str = "duckdb"
    rules_file: Path | None = None
    disable: list[str] = field(default_factory=list)
    geoip_country: Path | None = None
    geoip_asn: Path | None = None
    examples: int = 3                 # example flows attached to each alert
    report: bool = True               # write OUT/report.html (and OUT/report_data/)
    command: str = "detect"           # which command ran, for the report
    on_bad_rows: str = "error"        # or "skip": leave bad rows out, into OUT/rejected.parquet


class DetectContext:
    """Everything a rule may look at. Ibis tables live in the engine; *_df are small pandas tables."""

    def __init__(self, engine, baseline_dir: Path | None, profile: dict, model: NetworkModel, flows, ip_info,
                 servers=None):
        self.engine = engine
        self.baseline_dir = Path(baseline_dir) if baseline_dir is not None else None
        self.profile = profile
        self.model = model
        self.flows = flows                  # classified test flows: canonical + traffic_class, hour, ...
        self.ip_info = ip_info              # pandas, index ip: internal, country, asn, as_org, private
        self.servers = servers              # test-day flows of external clients to public servers (or None)
        self._base: dict = {}
        self._cache: dict = {}
        self.server_ips = {s["ip"] for s in profile.get("internal_servers", [])}
        self.server_services = {(s["ip"], x["proto"], x["port"]) for s in profile.get("internal_servers", [])
                                for x in s["services"]}

    def cached(self, key, build):
        """A value built once per run and shared by every rule that asks for the same key (a
        learned baseline, a per-client feature table, candidate pairs' beacon statistics...).
        Keys start with the name of the module that builds them."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # --- baseline -----------------------------------------------------------------------
    @property
    def has_baseline(self) -> bool:
        """False for `hunt`: the reference is then the capture itself (its population and time)."""
        return self.baseline_dir is not None

    def base(self, name: str):
        """A baseline table as an Ibis table (None when the profile did not write it)."""
        if name not in self._base:
            rel = self.profile.get("baseline_tables", {}).get(name)
            path = self.baseline_dir / rel if rel and self.baseline_dir else None
            self._base[name] = self.engine.read_parquet([path]) if path and path.exists() else None
        return self._base[name]

    def base_df(self, name: str):
        """A baseline table as pandas (they are aggregated, hence small)."""
        import pandas as pd

        rel = self.profile.get("baseline_tables", {}).get(name)
        path = self.baseline_dir / rel if rel and self.baseline_dir else None
        return pd.read_parquet(path) if path and path.exists() else None

    # --- test-day aggregates ------------------------------------------------------------
    @cached_property
    def edge_hours(self):
        """(src_ip, dst_ip, proto, port, traffic_class, hour) -> flows, up_bytes, down_bytes,
        first_ts, last_ts. One scan of the test day, materialised in the engine."""
        f = self.flows
        agg = f.group_by("src_ip", "dst_ip", "proto", "port", "traffic_class", "hour").aggregate(
            flows=f.count(),
            up_bytes=f.up_bytes.sum().fill_null(0),
            down_bytes=f.down_bytes.sum().fill_null(0),
            first_ts=f.ts.min(),
            last_ts=f.ts.max(),
        )
        return self.engine.materialize(agg)

    @cached_property
    def edges(self):
        """Per (src, dst, proto, port) over the whole test day (derived from edge_hours)."""
        e = self.edge_hours
        return e.group_by("src_ip", "dst_ip", "proto", "port", "traffic_class").aggregate(
            flows=e.flows.sum(), up_bytes=e.up_bytes.sum(), down_bytes=e.down_bytes.sum(),
            first_ts=e.first_ts.min(), last_ts=e.last_ts.max(), hours=e.hour.nunique(),
        )

    @cached_property
    def edges_df(self):
        return self.edges.to_pandas()

    @cached_property
    def inbound(self):
        """Flows from outside to internal hosts: the servers file when given (its clients), else
        the analysed flows' external->internal class (a capture at the site's edge)."""
        from .network import EXTERNAL_INTERNAL

        if self.servers is not None:
            return self.servers
        return self.flows.filter(self.flows.traffic_class == EXTERNAL_INTERNAL)

    @cached_property
    def span(self):
        """(start, end) timestamps of the test day and its length in seconds."""
        s = self.flows.aggregate(start=self.flows.ts.min(), end=self.flows.ts.max()).to_pandas().iloc[0]
        return s["start"], s["end"], max((s["end"] - s["start"]).total_seconds(), 1.0)

    @cached_property
    def service_hours(self):
        """The servers file per (client, server, service, hour) (profile.service_hours), kept in
        the engine: the clients' tables come from it, not from another scan of the flows."""
        from .profile import service_hours

        return None if self.servers is None else self.engine.materialize(service_hours(self.servers))

    @cached_property
    def clients_df(self):
        """Test-day external clients of the public servers (None without --servers)."""
        if self.servers is None:
            return None
        a = self.service_hours
        quiet = set(self.profile.get("public_servers", {}) and
                    self.profile["public_servers"]["clients"].get("quiet_hours", []) or [])
        df = a.group_by(ip=a.src_ip).aggregate(
            flows=a.flows.sum(), up_bytes=a.up_bytes.sum().fill_null(0), down_bytes=a.down_bytes.sum().fill_null(0),
            servers=a.dst_ip.nunique(), active_hours=a.hour.nunique(), first_ts=a.first_ts.min(),
            last_ts=a.last_ts.max(),
        ).to_pandas()
        hours = a.group_by(ip=a.src_ip, hour=a.hour).aggregate(flows=a.flows.sum()).to_pandas()
        df.attrs["hours"] = hours
        df.attrs["baseline_quiet_hours"] = sorted(quiet)
        return df

    # --- enrichment ---------------------------------------------------------------------
    def geo(self, ip: str) -> dict:
        if ip in self.ip_info.index:
            r = self.ip_info.loc[ip]
            return {"country": r.country, "asn": None if r.asn != r.asn else r.asn, "as_org": r.as_org}
        return {"country": None, "asn": None, "as_org": None}

    def allowed(self, spec, ip: str | None) -> bool:
        """Is `ip` on the rule's allowlist (by address, CIDR, ASN or organisation)?"""
        from .rules import Allowlist

        al = self.cached(("allowlist", spec.id), lambda: Allowlist(spec.allowlist))
        if not al or ip is None:
            return False
        g = self.geo(ip)
        return al.matches(ip, g["asn"], g["as_org"])


@dataclass
class DetectResult:
    alerts: list
    devices: list
    out: Path
    seconds: float
    rules_run: list[str]
    errors: list[str] = field(default_factory=list)
    report: Path | None = None


def load_profile(baseline_dir: Path) -> dict:
    p = Path(baseline_dir) / "profile.json"
    if not p.exists():
        raise InputError("no profile.json here: run `flowsiem profile` first (or pass its --out directory; "
                         "a profile that was interrupted has none)",
                         file=str(baseline_dir))
    try:
        prof = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"profile.json is not valid JSON ({exc.msg}, line {exc.lineno})", file=str(p)) from None
    if prof.get("schema_version") != 1:
        raise InputError(f"profile schema version {prof.get('schema_version')} is not supported (expected 1)",
                         file=str(p))
    return prof


def build_context(test, baseline_dir: Path, servers=None, options: DetectOptions | None = None) -> DetectContext:
    """The context of `detect`: the test day classified with the baseline's networks."""
    import pandas as pd

    opts = options or DetectOptions()
    profile = load_profile(baseline_dir)
    model = NetworkModel(networks=parse_cidrs(",".join(profile["internal_networks"])), inferred=False)
    engine, read, srv_read = read_inputs(test, servers, opts)
    base_info = pd.read_parquet(Path(baseline_dir) / profile["baseline_tables"]["ip_info"]) \
        if "ip_info" in profile.get("baseline_tables", {}) else None
    return classified_context(engine, read, srv_read, model, opts, Path(baseline_dir), profile, base_info)


def read_inputs(test, servers, opts: DetectOptions):
    """(engine, the day's read, the servers file's read or None), each reported."""
    from .engine import connect
    from .io import read_flows
    from .profile import _report_read

    engine = connect(opts.engine)
    with stage("reading the test day"):
        read = read_flows(test, engine, fmt=opts.fmt, time_unit=opts.time_unit, date=opts.date,
                          on_bad_rows=opts.on_bad_rows)
    _report_read(read)
    srv_read = None
    if servers:
        srv_read = read_flows(servers, engine, fmt=opts.fmt, time_unit=opts.time_unit, date=opts.date,
                              on_bad_rows=opts.on_bad_rows)
        _report_read(srv_read)
    return engine, read, srv_read


def classified_context(engine, read, srv_read, model: NetworkModel, opts: DetectOptions,
                       baseline_dir: Path | None, profile: dict, base_info=None) -> DetectContext:
    """Enrich the addresses the baseline does not know, classify the flows, build the context."""
    import pandas as pd
    import pyarrow as pa

    from .enrich import GeoResolver

    raw = read.table
    with stage("enriching addresses"):
        ips = addresses(raw)
        if srv_read is not None:
            ips = pd.concat([ips, addresses(srv_read.table)])
        if base_info is None:
            base_info = pd.DataFrame(columns=["ip"])
        new = sorted(set(ips) - set(base_info.ip))
        geo = GeoResolver(opts.geoip_country, opts.geoip_asn)
        new_info = geo.lookup(new).to_pandas() if new else pd.DataFrame(columns=["ip", "country", "asn", "as_org", "private"])
        parts = [d for d in (base_info.drop(columns=["internal"], errors="ignore"), new_info) if len(d)]
        info_df = pd.concat(parts, ignore_index=True) if parts else new_info
        info_df = info_df.drop_duplicates("ip").set_index("ip")
        info_df["internal"] = model.classify_ips(info_df.index.tolist())
    ip_table = engine.from_arrow(pa.Table.from_pandas(
        info_df.reset_index()[["ip", "internal"]], preserve_index=False))
    # Read and classify each input once, into the engine (Engine.materialize): every rule then
    # scans that table instead of re-reading and re-joining the files.
    with stage("loading the test day into the engine"):
        flows = with_traffic_class(raw, ip_table)
        flows = engine.materialize(flows.mutate(hour=flows.ts.hour().cast("int8")),
                                   labels={"traffic_class": TRAFFIC_CLASSES})
        servers_t = None
        if srv_read is not None:
            st = srv_read.table
            servers_t = engine.materialize(st.mutate(hour=st.ts.hour().cast("int8")))
    ctx = DetectContext(engine, baseline_dir, profile, model, flows, info_df, servers_t)
    ctx.read_info = {"test": read, "servers": srv_read}
    return ctx


def run_rules(ctx: DetectContext, specs: dict) -> tuple[list, list[str]]:
    from .rules import REGISTRY, load_family_modules
    from .rules.attribution import fold

    load_family_modules()
    alerts, ran = [], []
    for rid, spec in specs.items():
        if not spec.enabled:
            continue
        if spec.reference == "baseline" and not ctx.has_baseline:
            continue  # judges change from a clean day: hunt has none
        fn = REGISTRY.get(rid)
        if fn is None:
            raise UsageError(f"rule {rid} is in the rules file but has no implementation")
        if spec.family == "external_abuse" and spec.reference == "baseline" and ctx.servers is None:
            continue  # needs the servers file
        with stage(f"rule {rid}"):
            found = fn(ctx, spec) or []
        found = [a for a in found if not ctx.allowed(spec, a.source_ip) and not ctx.allowed(spec, a.destination_ip)]
        alerts.extend(found)
        ran.append(rid)
    fold(alerts)
    alerts.sort(key=lambda a: (-a.risk_score, a.source_ip, a.rule.id))
    return alerts, ran


def _opt_int(v):
    """An integer, or None where the input had no value (NaN, None or NA, by the column's dtype)."""
    import pandas as pd

    return None if pd.isna(v) else int(v)


def attach_examples(ctx: DetectContext, alerts: list, n: int) -> None:
    """A few flows behind each alert, fetched for all alerts in one query per source table."""
    import ibis
    import pandas as pd
    import pyarrow as pa

    if not alerts or n <= 0:
        return
    for kind, table in (("internal", ctx.flows), ("servers", ctx.inbound)):
        group = [a for a in alerts if (a.rule.family == "external_abuse") == (kind == "servers")]
        if not group or table is None:
            continue
        keys = pd.DataFrame({"k_src": [a.source_ip for a in group],
                             "k_dst": [a.destination_ip or "" for a in group],
                             "k_port": [int(a.example_port) if a.example_port is not None else -1 for a in group]}
                            ).drop_duplicates()
        kt = ctx.engine.from_arrow(pa.Table.from_pandas(keys, preserve_index=False))
        t = table.select("ts", "src_ip", "dst_ip", "proto", "port", "up_bytes", "down_bytes")
        # Join on the source alone (an equi-join the engine hashes), then keep the flows that
        # match the alert's destination and port where it names them.
        j = t.join(kt, t.src_ip == kt.k_src)
        j = j.filter(((j.k_dst == "") | (j.dst_ip == j.k_dst)) & ((j.k_port == -1) | (j.port == j.k_port)))
        # Largest uploads first: the flows an analyst wants to see.
        j = j.mutate(rn=ibis.row_number().over(group_by=[j.k_src, j.k_dst, j.k_port],
                                               order_by=[ibis.desc(j.up_bytes), j.ts]))
        ex = j.filter(j.rn < n).to_pandas()
        by_key = {}
        for k, g in ex.groupby(["k_src", "k_dst", "k_port"]):
            by_key[k] = [{"ts": r.ts.isoformat(), "src_ip": r.src_ip, "dst_ip": r.dst_ip, "proto": r.proto,
                          "port": _opt_int(r.port), "up_bytes": _opt_int(r.up_bytes),
                          "down_bytes": _opt_int(r.down_bytes)}
                         for r in g.sort_values("ts").itertuples()]
        for a in group:
            a.examples = by_key.get((a.source_ip, a.destination_ip or "",
                                     int(a.example_port) if a.example_port is not None else -1), [])
            if a.timestamp is None and a.examples:
                a.timestamp = pd.Timestamp(a.examples[0]["ts"])


def detect(test, baseline_dir: Path, out: Path, servers=None, options: DetectOptions | None = None) -> DetectResult:
    from .rules import load_rules

    opts = options or DetectOptions()
    t0 = time.perf_counter()
    specs = load_rules(opts.rules_file, opts.disable)  # bad rules file: fail before reading data
    ctx = build_context(test, baseline_dir, servers, opts)
    note_unknown_hosts(ctx)
    return finish(ctx, specs, opts, out, t0)


def note_unknown_hosts(ctx: DetectContext) -> None:
    """One line when none of the test day's internal hosts is in the baseline (addresses
    renumbered, another site, the wrong --baseline): the run goes on, but no host then has a
    baseline day of its own and every rule judges it against its peers only."""
    from .network import INTERNAL_EXTERNAL, INTERNAL_INTERNAL

    known = ctx.base_df("hosts")
    if known is None:
        return
    e = ctx.edges  # the distinct sources only (in the engine): a capture's edges can be millions
    srcs = e.filter(e.traffic_class.isin([INTERNAL_INTERNAL, INTERNAL_EXTERNAL])).select("src_ip").distinct()
    today = {ip for ip in srcs.to_pandas().src_ip if ctx.model.is_unicast_host(ip)}
    if today and not today & set(known.ip):
        info(f"note: none of the test day's {len(today):,} internal hosts is in the baseline: each is judged "
             f"against its peers only, not against a baseline day of its own (renumbered addresses, "
             f"or a baseline of another network?)")


def finish(ctx: DetectContext, specs: dict, opts: DetectOptions, out: Path, t0: float) -> DetectResult:
    """Run the rules, attach example flows, write alerts.jsonl and devices.csv."""
    from .alerts import devices, write_devices_csv, write_jsonl
    from .io.rejected import write_rejected

    alerts, ran = run_rules(ctx, specs)
    with stage("collecting example flows"):
        attach_examples(ctx, alerts, opts.examples)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(alerts, out / "alerts.jsonl")
    write_rejected(ctx.read_info, out / "rejected.parquet")
    rows = devices(alerts)
    write_devices_csv(rows, out / "devices.csv")
    secs = time.perf_counter() - t0
    info(f"{len(ran)} rules, {len(alerts)} alerts, {len(rows)} devices in {secs:.1f} s")
    result = DetectResult(alerts=alerts, devices=rows, out=out, seconds=secs, rules_run=ran)
    if opts.report:
        write_report(ctx, result, opts)
    return result


def write_report(ctx: DetectContext, result: DetectResult, opts: DetectOptions) -> None:
    """OUT/report_data/ (small aggregates of the analysed flows) and OUT/report.html from them."""
    from . import __version__
    from .console import timings
    from .report.data import collect
    from .report.page import build

    meta = {"command": f"flowsiem {opts.command}", "version": f"flowsiem {__version__}", "inputs": _inputs_meta(ctx),
            "settings": {"engine": opts.engine, "rules file": str(opts.rules_file or "shipped rules.yaml"),
                         "disabled": ", ".join(opts.disable), "baseline": str(ctx.baseline_dir or "none (hunt)")},
            "rules_run": result.rules_run, "seconds": result.seconds}
    with stage("writing the report"):
        meta["timings"] = timings(reset=True)
        collect(ctx, result.alerts, result.devices, result.out, meta)
        result.report = build(result.out)
    info(f"report: {result.report}")


def _inputs_meta(ctx: DetectContext) -> list[dict]:
    """Each input's files, format, flows and time span (the analysed day's from its edges, no rescan)."""
    e = ctx.edges_df
    spans = {"test": (int(e.flows.sum()), e.first_ts.min(), e.last_ts.max())}
    if ctx.servers is not None:
        t = ctx.servers
        s = t.aggregate(n=t.count(), start=t.ts.min(), end=t.ts.max()).to_pandas().iloc[0]
        spans["servers"] = (int(s["n"]), s["start"], s["end"])
    return [{"label": label, "files": [str(f) for f in read.files], "format": read.fmt, "rows": spans[key][0],
             "start": str(spans[key][1]), "end": str(spans[key][2]), "notes": list(read.notes)}
            for key, label in (("test", "analysed flows"), ("servers", "public servers' clients"))
            if (read := ctx.read_info.get(key)) is not None and key in spans]
