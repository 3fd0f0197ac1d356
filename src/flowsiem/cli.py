"""The `flowsiem` command. Each subcommand parses options, picks the engine and calls a library
function; all errors a user can fix are printed as one line with exit status 2."""

from __future__ import annotations

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
        "  flowsiem profile days/data.parquet --servers days/servers.parquet --out profile/"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# --- shared options -----------------------------------------------------------------------

EngineOpt = typer.Option("duckdb", "--engine", help="Execution engine: duckdb (in process) or spark (Ibis PySpark backend).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress or diagnostics; results only.")
FormatOpt = typer.Option("auto", "--format", "-f", help="Input format: auto, flows (seed parquet/CSV layout), zeek, nfdump.")
TimeUnitOpt = typer.Option(
    "auto", "--time-unit",
    help="Unit of a numeric timestamp column: auto, centiseconds-since-midnight (the seed's layout), "
         "s, ms, us, ns (epoch), or iso. The guess is printed so you can override it.")
DateOpt = typer.Option(None, "--date", help="Calendar day (YYYY-MM-DD) for day-relative timestamps; default 1970-01-01.")
InternalOpt = typer.Option(None, "--internal", help="Internal networks as CIDR,CIDR,... (default: inferred from the clean day's sources).")
GeoCountryOpt = typer.Option(None, "--geoip-country", help="A MaxMind GeoLite2/GeoIP2 Country (or City) .mmdb to use instead of the shipped data.")
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
    time_unit: str = TimeUnitOpt,
    date: Optional[str] = DateOpt,
    internal: Optional[str] = InternalOpt,
    geoip_country: Optional[Path] = GeoCountryOpt,
    geoip_asn: Optional[Path] = GeoAsnOpt,
    engine: str = EngineOpt,
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
        geoip_country=geoip_country, geoip_asn=geoip_asn, engine=engine,
    )
    result = build_profile(data, out, servers=servers, options=opts)
    print_summary(result, out)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user-fixable errors into one line and exit status 2."""
    try:
        app(args=argv, standalone_mode=True)
    except FlowsiemError as exc:
        con_mod.err_console().print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        con_mod.err_console().print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # a bug, not bad input: one line, the traceback kept in a file
        import os
        import tempfile
        import traceback

        if os.environ.get("FLOWSIEM_DEBUG"):
            raise
        fd, path = tempfile.mkstemp(prefix="flowsiem-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            traceback.print_exc(file=fh)
        con_mod.err_console().print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (traceback in {path}; "
            "please report it)", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
