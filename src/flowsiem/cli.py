"""The `flowsiem` command. Each subcommand parses options, picks the engine and calls a library
function; all errors a user can fix are printed as one line with exit status 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from . import console as con_mod
from .errors import FlowsiemError, UsageError

app = typer.Typer(
    name="flowsiem",
    help=(
        "A SIEM for network flow records.\n\n"
        "Learn what normal looks like from a clean day of flows, then find the devices that "
        "changed and say why.\n\n"
        "Typical use:\n\n"
        "  flowsiem generate --scenario obvious --out days/      # synthetic days to try it on\n\n"
        "  flowsiem run days/data.parquet days/test.parquet --servers days/servers.parquet --out out/\n\n"
        "  flowsiem profile days/data.parquet --out profile/   # or step by step: profile, then detect"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# --- shared options -----------------------------------------------------------------------

EngineOpt = typer.Option("duckdb", "--engine", help="Execution engine: duckdb (in process) or spark (Ibis PySpark backend).")


def _spark_master(url: Optional[str]) -> Optional[str]:
    # The engine reads the master from the environment, so the option and the variable are one setting.
    if url:
        os.environ["FLOWSIEM_SPARK_MASTER"] = url
    return url


def _memory_limit(limit: Optional[str]) -> Optional[str]:
    import re

    if limit and not re.fullmatch(r"\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", limit, re.IGNORECASE):
        raise typer.BadParameter(f"'{limit}' is not a size like 4GB or 500MiB")
    if limit:
        os.environ["FLOWSIEM_MEMORY_LIMIT"] = limit.strip()
    return limit


MemoryLimitOpt = typer.Option(
    None, "--memory-limit", envvar="FLOWSIEM_MEMORY_LIMIT", callback=_memory_limit, expose_value=False,
    help="Memory the DuckDB engine may use (4GB, 500MiB); beyond it, it spills to FLOWSIEM_TMP "
         "(default: the system's temp directory). Default: DuckDB's, 80% of the machine's RAM.")


SparkMasterOpt = typer.Option(
    None, "--spark-master", envvar="FLOWSIEM_SPARK_MASTER", callback=_spark_master, expose_value=False,
    help="With --engine spark: the cluster to run on (spark://host:7077, yarn, k8s://..., local[4]). "
         "Default: spark-submit's --master when launched by it, else local[*].")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress or diagnostics; results only.")
FormatOpt = typer.Option("auto", "--format", "-f", help="Input format: auto, flows (seed parquet/CSV layout), zeek, nfdump.")
TimeUnitOpt = typer.Option(
    "auto", "--time-unit",
    help="Unit of a numeric timestamp column: auto, centiseconds-since-midnight (the seed's layout), "
         "s, ms, us, ns (epoch), or iso. The guess is printed so you can override it.")
DateOpt = typer.Option(None, "--date", help="Calendar day (YYYY-MM-DD) for day-relative timestamps; default 1970-01-01.")
InternalOpt = typer.Option(None, "--internal", help="Internal networks as CIDR,CIDR,... (default: inferred from the clean day's sources).")
GeoCountryOpt = typer.Option(None, "--geoip-country", help="A MaxMind GeoLite2/GeoIP2 Country (or City) .mmdb to use instead of the shipped data.")
OnBadRowsOpt = typer.Option(
    "error", "--on-bad-rows",
    help="Rows with unreadable values or invalid addresses: 'error' stops with a one-line message "
         "(file, column, rows, an example); 'skip' leaves them out, says how many and why, and keeps "
         "them in OUT/rejected.parquet.")
ExplainOnBadRowsOpt = typer.Option(
    "error", "--on-bad-rows",
    help="Rows with unreadable values or invalid addresses: 'error' stops with a one-line message "
         "(file, column, rows, an example); 'skip' leaves them out and says how many and why "
         "(explain writes no files: `detect --on-bad-rows skip` keeps them in OUT/rejected.parquet).")
GeoAsnOpt = typer.Option(None, "--geoip-asn", help="A MaxMind GeoLite2 ASN .mmdb to use instead of the shipped data.")


def _setup(quiet: bool) -> None:
    con_mod.set_quiet(quiet)


@app.command()
def generate(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory to write data.parquet, test.parquet, servers.parquet, servers_data.parquet and truth.json."),
    scenario: str = typer.Option("obvious", "--scenario", "-s", help="Scenario name (see --list)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same files."),
    scale: float = typer.Option(1.0, "--scale", help="Volume factor: 1 is about 1 M flows per day file and 0.7 M in servers.parquet."),
    list_: bool = typer.Option(False, "--list", help="List the scenarios and exit."),
    quiet: bool = QuietOpt,
):
    """Write a synthetic company day (clean day, test day, public-server clients) with known anomalies."""
    _setup(quiet)
    from . import simulate

    if list_:
        for name, sc in simulate.SCENARIOS.items():
            typer.echo(f"{name:<12} {sc.description}")
        return
    if out is None:
        raise UsageError("generate needs --out DIR (or --list to see the scenarios)")
    summary = simulate.generate(scenario, seed=seed, scale=scale, out_dir=out)
    c = con_mod.console()
    c.print(f"[bold]Generated[/] scenario [cyan]{scenario}[/] seed {seed} scale {scale} in {out}/")
    for name, n in summary.get("rows", {}).items():
        c.print(f"  {name:<16} {n:>12,} flows")
    c.print(f"  truth.json       {summary.get('anomalies', 0)} injected anomalies, "
            f"{summary.get('benign', 0)} benign changes")


@app.command()
def profile(
    data: str = typer.Argument(..., help="Clean-day flows: a file, a glob or a directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for profile.json and baseline/*.parquet."),
    servers: Optional[str] = typer.Option(None, "--servers", help="Flows of external clients to the public servers."),
    bucket: str = typer.Option("10m", "--bucket", help="Width of the flows-through-time buckets, e.g. 5m, 1h."),
    top: int = typer.Option(15, "--top", help="How many rows the 'top' tables keep."),
    fmt: str = FormatOpt,
    on_bad_rows: str = OnBadRowsOpt,
    time_unit: str = TimeUnitOpt,
    date: Optional[str] = DateOpt,
    internal: Optional[str] = InternalOpt,
    geoip_country: Optional[Path] = GeoCountryOpt,
    geoip_asn: Optional[Path] = GeoAsnOpt,
    engine: str = EngineOpt,
    spark_master: Optional[str] = SparkMasterOpt,
    memory_limit: Optional[str] = MemoryLimitOpt,
    quiet: bool = QuietOpt,
):
    """Learn what normal looks like: internal servers, traffic classes, per-host baselines.

    Writes OUT/profile.json (statistics, schema in the README) and OUT/baseline/*.parquet
    (the tables `flowsiem detect` loads), and prints a summary.
    """
    _setup(quiet)
    from .profile import ProfileOptions, build_profile, print_summary

    opts = ProfileOptions(
        bucket=bucket, top=top, fmt=fmt, time_unit=time_unit, date=date, internal=internal,
        geoip_country=geoip_country, geoip_asn=geoip_asn, engine=engine, on_bad_rows=on_bad_rows,
    )
    result = build_profile(data, out, servers=servers, options=opts)
    print_summary(result, out)


RulesOpt = typer.Option(None, "--rules", help="A rules YAML file merged over the shipped rules (thresholds, enabled, allowlist).")
DisableOpt = typer.Option(None, "--disable", help="Disable a rule id or a whole family (repeatable).")


NoReportOpt = typer.Option(False, "--no-report", help="Skip OUT/report.html (alerts and devices only; a little faster).")


def _detect_options(fmt, time_unit, date, engine, rules, disable, geoip_country, geoip_asn,
                    no_report=False, command="detect", on_bad_rows="error"):
    from .detect import DetectOptions

    return DetectOptions(fmt=fmt, time_unit=time_unit, date=date, engine=engine, rules_file=rules,
                         disable=list(disable or []), geoip_country=geoip_country, geoip_asn=geoip_asn,
                         report=not no_report, command=command, on_bad_rows=on_bad_rows)


def _print_detect(result) -> None:
    from .alerts import print_devices

    c = con_mod.console()
    print_devices(result.devices, c)
    c.print(f"Wrote [green]{result.out / 'alerts.jsonl'}[/] ({len(result.alerts)} alerts) and "
            f"[green]{result.out / 'devices.csv'}[/] ({len(result.devices)} devices)")
    if result.report:
        c.print(f"Report: [green]{result.report}[/] (open it in a browser)")


@app.command()
def detect(
    test: str = typer.Argument(..., help="The day to check: a file, a glob or a directory."),
    baseline: Path = typer.Option(..., "--baseline", "-b", help="The --out directory of `flowsiem profile`."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for alerts.jsonl and devices.csv."),
    servers: Optional[str] = typer.Option(None, "--servers", help="The same day's flows of external clients to the public servers (enables the external_abuse rules)."),
    rules: Optional[Path] = RulesOpt,
    disable: Optional[list[str]] = DisableOpt,
    fmt: str = FormatOpt,
    on_bad_rows: str = OnBadRowsOpt,
    time_unit: str = TimeUnitOpt,
    date: Optional[str] = DateOpt,
    geoip_country: Optional[Path] = GeoCountryOpt,
    geoip_asn: Optional[Path] = GeoAsnOpt,
    engine: str = EngineOpt,
    spark_master: Optional[str] = SparkMasterOpt,
    memory_limit: Optional[str] = MemoryLimitOpt,
    no_report: bool = NoReportOpt,
    quiet: bool = QuietOpt,
):
    """Apply the rules to a new day against a baseline; write explained alerts.

    OUT/alerts.jsonl has one alert per line in Elastic Common Schema (baseline vs today under
    `flowsiem.evidence`); OUT/devices.csv has one row per flagged device.
    """
    _setup(quiet)
    from .detect import detect as run_detect

    result = run_detect(test, baseline, out, servers=servers,
                        options=_detect_options(fmt, time_unit, date, engine, rules, disable, geoip_country, geoip_asn,
                                                 no_report, on_bad_rows=on_bad_rows))
    _print_detect(result)


@app.command()
def run(
    data: str = typer.Argument(..., help="The clean day (baseline) flows."),
    test: str = typer.Argument(..., help="The day to check."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for profile/, alerts.jsonl, devices.csv."),
    servers: Optional[str] = typer.Option(None, "--servers", help="The test day's flows of external clients to the public servers."),
    servers_baseline: Optional[str] = typer.Option(None, "--servers-baseline", help="A clean day of the public servers' clients to compare against (optional: without it clients are judged against their own population)."),
    rules: Optional[Path] = RulesOpt,
    disable: Optional[list[str]] = DisableOpt,
    internal: Optional[str] = InternalOpt,
    fmt: str = FormatOpt,
    on_bad_rows: str = OnBadRowsOpt,
    time_unit: str = TimeUnitOpt,
    date: Optional[str] = DateOpt,
    geoip_country: Optional[Path] = GeoCountryOpt,
    geoip_asn: Optional[Path] = GeoAsnOpt,
    engine: str = EngineOpt,
    spark_master: Optional[str] = SparkMasterOpt,
    memory_limit: Optional[str] = MemoryLimitOpt,
    no_report: bool = NoReportOpt,
    quiet: bool = QuietOpt,
):
    """The main job: profile the clean day, then detect on the test day, in one go."""
    _setup(quiet)
    from .detect import detect as run_detect
    from .profile import ProfileOptions, build_profile
    from .rules import load_rules

    load_rules(rules, list(disable or []))  # a bad rules file fails before any work
    popts = ProfileOptions(fmt=fmt, time_unit=time_unit, date=date, internal=internal,
                           geoip_country=geoip_country, geoip_asn=geoip_asn, engine=engine,
                           on_bad_rows=on_bad_rows)
    prof = build_profile(data, out / "profile", servers=servers_baseline, options=popts)
    p = prof.profile
    con_mod.info(f"baseline: {p['input']['rows']:,} flows, {p['hosts']['count']:,} hosts, "
                 f"{len(p['internal_servers'])} internal servers, networks {', '.join(p['internal_networks'])}")
    result = run_detect(test, out / "profile", out, servers=servers,
                        options=_detect_options(fmt, time_unit, date, engine, rules, disable, geoip_country, geoip_asn,
                                                no_report, "run", on_bad_rows))
    _print_detect(result)


@app.command()
def hunt(
    data: str = typer.Argument(..., help="The capture: a file, a glob or a directory (rotated hourly logs, several days, gzip)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for alerts.jsonl and devices.csv."),
    servers: Optional[str] = typer.Option(None, "--servers", help="Flows of external clients to the public servers, if kept apart (else the capture's inbound flows are used)."),
    internal: Optional[str] = typer.Option(None, "--internal", help="Internal networks as CIDR,CIDR,... (default: the capture's private sources, else its private destinations, else the address in at least half of the flows)."),
    rules: Optional[Path] = RulesOpt,
    disable: Optional[list[str]] = DisableOpt,
    fmt: str = FormatOpt,
    on_bad_rows: str = OnBadRowsOpt,
    time_unit: str = TimeUnitOpt,
    date: Optional[str] = DateOpt,
    geoip_country: Optional[Path] = GeoCountryOpt,
    geoip_asn: Optional[Path] = GeoAsnOpt,
    engine: str = EngineOpt,
    spark_master: Optional[str] = SparkMasterOpt,
    memory_limit: Optional[str] = MemoryLimitOpt,
    no_report: bool = NoReportOpt,
    quiet: bool = QuietOpt,
):
    """Hunt in one capture with no clean day: beacons, dead C2, scans, uploads, DGA, brute force.

    The reference is the capture itself (its hosts, each host's own time course); rules that
    need a clean day are skipped. Use `run` when you have one. Example:

    flowsiem hunt /var/log/zeek/2026-11-30/ --out hunt/
    """
    _setup(quiet)
    from .hunt import HuntOptions, hunt as run_hunt

    d = _detect_options(fmt, time_unit, date, engine, rules, disable, geoip_country, geoip_asn, no_report, "hunt",
                        on_bad_rows)
    opts = HuntOptions(**{**d.__dict__, "internal": internal})
    _print_detect(run_hunt(data, out, servers=servers, options=opts))


@app.command()
def report(
    out: Path = typer.Argument(..., help="The --out directory of `flowsiem run`, `detect` or `hunt`."),
    png: Optional[Path] = typer.Option(None, "--png", help="Also write each figure as a PNG file into this directory."),
    quiet: bool = QuietOpt,
):
    """Rebuild OUT/report.html from a run's outputs (no flows needed).

    The page is self-contained (plotly.js, styles and data inline): it opens offline, prints,
    and can be mailed. run, detect and hunt write it already; use this after editing
    alerts.jsonl or devices.csv, or for the PNGs:

    flowsiem report out/ --png out/figures/
    """
    _setup(quiet)
    from .report.page import build

    path = build(out, png_dir=png)
    con_mod.console().print(f"Report: [green]{path}[/]" + (f"; figures as PNG in [green]{png}[/]" if png else ""))


@app.command("rules")
def rules_cmd(
    rules: Optional[Path] = RulesOpt,
    disable: Optional[list[str]] = DisableOpt,
    family: Optional[str] = typer.Option(None, "--family", help="Only this family."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print descriptions and false-positive notes."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (for documentation)."),
):
    """List every rule: id, family, what it judges against, ATT&CK technique, severity, thresholds.

    "baseline" rules judge change from a clean day (run, detect); "capture" rules judge the
    analysed flows against their own hosts and time (run, detect and hunt).
    """
    from rich.table import Table

    from .rules import load_rules

    specs = load_rules(rules, list(disable or []))
    if markdown:
        typer.echo("| rule | family | judged against | ATT&CK | severity | thresholds (defaults) |")
        typer.echo("|---|---|---|---|---|---|")
        for s in specs.values():
            if family and s.family != family:
                continue
            th = ", ".join(f"`{k}={v}`" for k, v in s.thresholds.items())
            fam = s.family + (f" (on a {s.folds_into} member: part of it)" if s.folds_into else "")
            typer.echo(f"| `{s.id}` {s.name} | {fam} | {s.reference} | {s.technique} | {s.severity} | {th} |")
        return
    c = con_mod.console()
    t = Table(title=f"{len(specs)} rules", title_justify="left", show_lines=verbose)
    for col in ("id", "family\n[dim]judged against[/]", "technique", "severity", "on", "thresholds"):
        t.add_column(col, overflow="fold")
    for s in specs.values():
        if family and s.family != family:
            continue
        th = ", ".join(f"{k}={v}" for k, v in s.thresholds.items())
        if verbose:
            th += f"\n[dim]{s.description}[/]"
            if s.allowlist:
                th += f"\n[dim]allowlist: {', '.join(map(str, s.allowlist))}[/]"
        fam = s.family + (f"\n[dim]on a {s.folds_into} member: part of it[/]" if s.folds_into else "")
        t.add_row(f"{s.id}\n[dim]{s.name}[/]", f"{fam}\n[dim]{s.reference}[/]", s.technique, s.severity,
                  "yes" if s.enabled else "no", th)
    c.print(t)


@app.command()
def explain(
    ip: str = typer.Argument(..., help="The device (internal host, or external client of the public servers)."),
    test: str = typer.Argument(..., help="The day to look at."),
    baseline: Path = typer.Option(..., "--baseline", "-b", help="The --out directory of `flowsiem profile`."),
    servers: Optional[str] = typer.Option(None, "--servers", help="The same day's public-server client flows."),
    rules: Optional[Path] = RulesOpt,
    disable: Optional[list[str]] = DisableOpt,
    fmt: str = FormatOpt,
    on_bad_rows: str = ExplainOnBadRowsOpt,
    time_unit: str = TimeUnitOpt,
    date: Optional[str] = DateOpt,
    engine: str = EngineOpt,
    spark_master: Optional[str] = SparkMasterOpt,
    memory_limit: Optional[str] = MemoryLimitOpt,
    quiet: bool = QuietOpt,
):
    """Everything about one device: its baseline vs today (volumes, peers, resolvers, hours) and its alerts."""
    _setup(quiet)
    import ipaddress

    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise UsageError(f"'{ip}' is not an IP address") from None
    from .explain import explain as run_explain

    run_explain(ip, test, baseline, servers=servers,
                options=_detect_options(fmt, time_unit, date, engine, rules, disable, None, None,
                                        on_bad_rows=on_bad_rows))


_TERMINATED_BY: list[int] = []


def _terminated(signum, frame):
    # Recorded as well as raised: when the signal lands inside a DuckDB query, DuckDB turns the
    # SystemExit into its own "Query interrupted" error, which must still exit as terminated.
    _TERMINATED_BY.append(signum)
    con_mod.err_console().print("[yellow]terminated[/]")
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user-fixable errors into one line and exit status 2."""
    import signal

    # A SIGTERM (cron's timeout, a pipeline stopping) exits through Python, so scratch space is
    # removed; outputs are written atomically, so none is left half-written either way.
    signal.signal(signal.SIGTERM, _terminated)
    if not os.environ.get("FLOWSIEM_DEBUG"):
        # Library warnings (pandas, pyarrow deprecations) are for developers, who see them with
        # FLOWSIEM_DEBUG=1 and in the tests (warnings from flowsiem's own code fail pytest).
        import warnings

        warnings.simplefilter("ignore")
    try:
        app(args=argv, prog_name="flowsiem", standalone_mode=True)
    except FlowsiemError as exc:
        if _TERMINATED_BY:  # a reader's wrapped "Query interrupted"
            sys.exit(128 + _TERMINATED_BY[0])
        from rich.markup import escape

        # Escaped: a file name or value with [brackets] is text, not console markup.
        con_mod.err_console().print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        con_mod.err_console().print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # a bug, not bad input: one line, the traceback kept in a file
        if _TERMINATED_BY:
            sys.exit(128 + _TERMINATED_BY[0])
        import tempfile
        import traceback

        if os.environ.get("FLOWSIEM_DEBUG"):
            raise
        fd, path = tempfile.mkstemp(prefix="flowsiem-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            traceback.print_exc(file=fh)
        from rich.markup import escape

        con_mod.err_console().print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} (traceback in {path}; "
            "please report it)", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
