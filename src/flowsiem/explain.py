"""`flowsiem explain IP`: everything about one device, baseline vs today, and the alerts on it."""

from __future__ import annotations

from pathlib import Path

from .detect import DetectOptions, build_context, run_rules
from .profile import _fmt_bytes


def _hours_bar(counts) -> str:
    """24 hourly counts as a one-line sparkline."""
    blocks = " ▁▂▃▄▅▆▇█"
    top = max(counts) or 1
    return "".join(blocks[min(8, int(round(8 * c / top)))] if c else "·" for c in counts)


def _host_summary(edges, hours) -> dict:
    """Summary of one host from its edges (pandas) and per-hour flows (list of 24)."""
    if edges is None or len(edges) == 0:
        return {"flows": 0, "up": 0, "down": 0, "peers": set(), "external": set(), "dns": set(), "hours": hours}
    ext = edges[edges.traffic_class == "internal_external"]
    return {
        "flows": int(edges.flows.sum()),
        "up": int(edges.up_bytes.sum()),
        "down": int(edges.down_bytes.sum()),
        "peers": set(edges.dst_ip),
        "external": set(ext.dst_ip),
        "dns": set(edges[edges.port == 53].dst_ip),
        "ext_up": int(ext.up_bytes.sum()),
        "hours": hours,
    }


def explain(ip: str, test, baseline_dir: Path, servers=None, options: DetectOptions | None = None) -> None:
    from rich.table import Table

    from .console import console, info
    from .rules import load_rules

    opts = options or DetectOptions()
    specs = load_rules(opts.rules_file, opts.disable)
    ctx = build_context(test, baseline_dir, servers, opts)
    if any(r is not None and r.rejected_rows for r in ctx.read_info.values()):
        info("note: explain writes no files: the skipped rows are not kept "
             "(detect --on-bad-rows skip --out DIR writes them to DIR/rejected.parquet)")
    c = console()
    g = ctx.geo(ip)
    internal = ctx.model.is_internal(ip)
    role = "internal server" if ip in ctx.server_ips else "internal host" if internal else "external address"
    c.print(f"[bold]{ip}[/] — {role}; country {g['country'] or '?'}; AS org {g['as_org'] or '?'}")

    # Today, from the test day's (edge, hour) aggregate: a filter on a small materialised table.
    eh = ctx.edge_hours
    mine = eh.filter(eh.src_ip == ip).to_pandas()
    today_hours = [int(mine[mine.hour == h].flows.sum()) for h in range(24)]
    today_edges = (mine.groupby(["dst_ip", "proto", "port", "traffic_class"], as_index=False)
                   [["flows", "up_bytes", "down_bytes"]].sum())
    base_edges = ctx.base_df("edges")
    base_edges = base_edges[base_edges.src_ip == ip] if base_edges is not None else None
    hh = ctx.base_df("host_hours")
    base_hours = [0] * 24
    if hh is not None:
        for h, n in hh[hh.src_ip == ip][["hour", "flows"]].itertuples(index=False):
            base_hours[int(h)] = int(n)
    base = _host_summary(base_edges, base_hours)
    today = _host_summary(today_edges, today_hours)

    if internal:
        t = Table(title="Baseline day vs today", title_justify="left")
        for col in ("", "baseline", "today"):
            t.add_column(col)
        t.add_row("flows", f"{base['flows']:,}", f"{today['flows']:,}")
        t.add_row("uploaded", _fmt_bytes(base["up"]), _fmt_bytes(today["up"]))
        t.add_row("uploaded to external", _fmt_bytes(base.get("ext_up", 0)), _fmt_bytes(today.get("ext_up", 0)))
        t.add_row("downloaded", _fmt_bytes(base["down"]), _fmt_bytes(today["down"]))
        t.add_row("distinct peers", f"{len(base['peers']):,}", f"{len(today['peers']):,}")
        t.add_row("DNS resolvers", ", ".join(sorted(base["dns"])) or "none", ", ".join(sorted(today["dns"])) or "none")
        t.add_row("active hours (00→23)", _hours_bar(base["hours"]), _hours_bar(today["hours"]))
        c.print(t)
        new = today_edges[~today_edges.dst_ip.isin(base["peers"])]
        if len(new):
            t = Table(title=f"Peers new today ({new.dst_ip.nunique()})", title_justify="left")
            for col in ("peer", "service", "flows", "uploaded", "downloaded", "country / org"):
                t.add_column(col)
            for r in new.sort_values("up_bytes", ascending=False).head(15).itertuples():
                gg = ctx.geo(r.dst_ip)
                t.add_row(r.dst_ip, f"{r.proto}/{r.port}", f"{r.flows:,}", _fmt_bytes(r.up_bytes),
                          _fmt_bytes(r.down_bytes), f"{gg['country'] or ''} {gg['as_org'] or ''}")
            c.print(t)
        top = today_edges.sort_values("up_bytes", ascending=False).head(10)
        t = Table(title="Where it sent most today", title_justify="left")
        for col in ("peer", "service", "flows", "uploaded", "in baseline"):
            t.add_column(col)
        for r in top.itertuples():
            t.add_row(r.dst_ip, f"{r.proto}/{r.port}", f"{r.flows:,}", _fmt_bytes(r.up_bytes),
                      "yes" if r.dst_ip in base["peers"] else "[yellow]new[/]")
        c.print(t)
    elif ctx.clients_df is not None and ip in set(ctx.clients_df.ip):
        row = ctx.clients_df.set_index("ip").loc[ip]
        pop = ctx.clients_df
        t = Table(title="Public-server client vs the client population (today)", title_justify="left")
        for col in ("", "this client", "population median", "population 99th pct"):
            t.add_column(col)
        for name, col, fmt in (("flows", "flows", lambda v: f"{v:,.0f}"), ("downloaded", "down_bytes", _fmt_bytes),
                               ("uploaded", "up_bytes", _fmt_bytes), ("active hours", "active_hours", lambda v: f"{v:.0f}")):
            t.add_row(name, fmt(row[col]), fmt(pop[col].median()), fmt(pop[col].quantile(0.99)))
        c.print(t)
        hours = pop.attrs["hours"]
        mine_h = [int(hours[(hours.ip == ip) & (hours.hour == h)].flows.sum()) for h in range(24)]
        all_h = [int(hours[hours.hour == h].flows.sum()) for h in range(24)]
        c.print(f"hours (00→23)  this client {_hours_bar(mine_h)}   population {_hours_bar(all_h)}")
    else:
        c.print("No flows from this address in the test day.")

    alerts, _ = run_rules(ctx, specs)
    mine_alerts = [a for a in alerts if a.source_ip == ip]
    if not mine_alerts:
        c.print("[green]No rule fired for this device.[/]")
        return
    t = Table(title=f"Alerts ({len(mine_alerts)})", title_justify="left")
    for col in ("rule", "family", "risk", "evidence"):
        t.add_column(col, overflow="fold")
    for a in mine_alerts:
        ev = "\n".join(
            f"{e.metric}: today {e.observed} {e.unit}"
            + (f", baseline {e.baseline}" if e.baseline is not None else "")
            + (f", reference {e.reference}" if e.reference is not None else "")
            + (f", threshold {e.threshold}" if e.threshold is not None else "")
            for e in a.evidence)
        t.add_row(a.rule.id, a.rule.family, str(a.risk_score), f"{a.message}\n[dim]{ev}[/]")
    c.print(t)
