"""Readers: every supported input -> one canonical flow table (see flowsiem.schema).

    from flowsiem.io import read_flows
    res = read_flows("days/*.parquet", engine)              # fmt/time unit guessed
    res = read_flows("zeek/", engine, fmt="zeek")           # every conn log in a folder
    res.table      # ibis.Table, canonical schema, lazy (nothing loaded yet for parquet)

Formats (`fmt`): "auto" (recognised by content: sniff.py), "flows" (the seed layout as parquet
or CSV: flows.py), "zeek" (conn.log as TSV or JSON lines, gzip or not: zeek.py), "nfdump"
(`nfdump -o csv`: nfdump.py). A concrete name such as "zeek-json" is accepted too.

Time units (`time_unit`, timeunits.py): "auto", "centiseconds" (hundredths of a second since
midnight, placed on `date`), "s"/"ms"/"us"/"ns" since the epoch, or "iso" text. "auto" uses the
format's own unit where it has one (Zeek: seconds) and otherwise `guess_time_unit` on the
column's min/max; `ReadResult.time_unit_guessed` tells the CLI to print the guess.

Addresses (hdfs://, s3a://, file:// ...) are parquet in the flows layout that Spark opens itself
(`--engine spark`): flows.read_remote_parquet.

Bad input raises `flowsiem.errors.InputError` naming the file, the column and the number of
rows affected; lines that cannot be flows (torn lines, nfdump's summary) are skipped and
reported in `ReadResult.notes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..engine import is_address
from ..errors import FlowsiemError, InputError, UsageError
from .sniff import FAMILIES, FORMATS
from .timeunits import TIME_UNITS, guess_time_unit, normalize_time_unit, parse_date

__all__ = ["read_flows", "ReadResult", "TIME_UNITS", "FORMATS", "guess_time_unit"]

_FMT_ALIASES = {"parquet": "flows", "csv": "flows", "seed": "flows", "bro": "zeek",
                "conn": "zeek", "netflow": "nfdump", "nfdump-csv": "nfdump-csv"}


@dataclass
class ReadResult:
    table: object                      # ibis.Table with the canonical schema
    files: list[Path]
    fmt: str                           # "flows-parquet", "flows-csv", "zeek-tsv", "zeek-json", "nfdump-csv"
    time_unit: str | None              # unit of the timestamp column (None: it was a timestamp already)
    time_unit_guessed: bool            # True when time_unit was "auto"
    notes: list[str] = field(default_factory=list)
    rejected: object = None            # on_bad_rows="skip": skipped rows (text) with a reason column
    rejected_rows: int = 0


def _normalize_fmt(fmt: str | None) -> str:
    key = (fmt or "auto").strip().lower()
    key = _FMT_ALIASES.get(key, key)
    if key not in FORMATS:
        raise UsageError(f"unknown format '{fmt}' (choose one of: auto, flows, zeek, nfdump)")
    return key


def _family(resolved_fmt: str) -> str:
    return next(k for k, v in FAMILIES.items() if resolved_fmt in v)


def _names(paths, limit=5) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def read_flows(source, engine, fmt: str = "auto", time_unit: str = "auto", date=None,
               on_bad_rows: str = "error") -> ReadResult:
    """Read flow records from `source` (file, glob, directory or a list of them) into `engine`.

    Returns a ReadResult whose `table` has the canonical schema (flowsiem.schema). Raises
    InputError for unreadable or invalid input and UsageError for bad option values. Rows with
    a problem (unreadable values, invalid addresses) are an InputError, or with on_bad_rows="skip"
    are left out and returned in `rejected`.
    """
    from . import sniff
    from .canonical import ON_BAD_ROWS

    if on_bad_rows not in ON_BAD_ROWS:
        raise UsageError(f"--on-bad-rows '{on_bad_rows}': choose one of {', '.join(ON_BAD_ROWS)}")

    fmt_req = _normalize_fmt(fmt)
    unit_req = normalize_time_unit(time_unit)
    parse_date(date)  # fail on a bad --date before touching any file
    items = [str(s) for s in (source if isinstance(source, (list, tuple)) else [source])]
    remote = [s for s in items if is_address(s)]
    if remote:
        return _read_remote(remote, items, engine, fmt_req, unit_req, date, on_bad_rows)
    files, explicit = sniff.resolve_sources(source)

    resolved: dict[Path, str] = {}
    not_flows: list[Path] = []
    not_conn: list[Path] = []
    unknown_forced: list[tuple[Path, bytes]] = []  # found by dir/glob, format forced, not sniffed
    wanted = FAMILIES.get(fmt_req, (fmt_req,))
    for f in files:
        head = sniff.read_head(f)
        if not head.strip(b" \t\r\n\0"):
            raise InputError("file is empty", file=str(f))
        sniffed = sniff.sniff(f, head)
        if sniffed.fmt and sniffed.fmt.startswith("zeek") and sniffed.zeek_path not in (None, "conn") \
                and (fmt_req == "auto" or sniffed.fmt in wanted):
            if f in explicit:
                raise InputError(f"is a Zeek '{sniffed.zeek_path}' log; flowsiem reads conn logs",
                                 file=str(f))
            not_conn.append(f)
            continue
        if fmt_req == "auto":
            if sniffed.fmt is None:
                if f in explicit:
                    raise InputError(
                        "unknown format: not parquet, a Zeek conn.log (TSV or JSON), nfdump CSV "
                        "or a CSV with src_ip,dst_ip columns (use --format to force one)", file=str(f))
                not_flows.append(f)
                continue
            resolved[f] = sniffed.fmt
        elif f in explicit:
            resolved[f] = sniff.resolve_forced(f, fmt_req, head)
        elif sniffed.fmt in wanted:
            resolved[f] = sniffed.fmt
        elif sniffed.fmt is None:
            unknown_forced.append((f, head))
        else:
            not_flows.append(f)  # another format than the one asked for
    if fmt_req != "auto" and unknown_forced:
        # In a folder, files we cannot recognise are read with the forced format only when
        # nothing there was recognised as that format (e.g. headerless logs), else skipped.
        if resolved:
            not_flows.extend(f for f, _ in unknown_forced)
        else:
            for f, head in unknown_forced:
                resolved[f] = sniff.resolve_forced(f, fmt_req, head)
        resolved = {f: resolved[f] for f in files if f in resolved}

    notes: list[str] = []
    if not_flows:
        what = "flow data" if fmt_req == "auto" else f"{fmt_req} data"
        notes.append(f"skipped {len(not_flows)} file{'s' if len(not_flows) != 1 else ''} "
                     f"that {'are' if len(not_flows) != 1 else 'is'} not {what}: {_names(not_flows)}")
    if not_conn:
        notes.append(f"skipped {len(not_conn)} Zeek log{'s' if len(not_conn) != 1 else ''} "
                     f"that {'are' if len(not_conn) != 1 else 'is'} not conn logs: {_names(not_conn)}")
    if not resolved:
        where = ", ".join(str(s) for s in (source if isinstance(source, (list, tuple)) else [source]))
        raise InputError(f"no flow files found among {len(files)} file{'s' if len(files) != 1 else ''} "
                         f"(parquet, Zeek conn.log, nfdump CSV or flows CSV)", file=where)

    order = list(resolved)
    fmts = sorted(set(resolved.values()))
    families = {_family(x) for x in fmts}
    if len(families) > 1 or (len(fmts) > 1 and families != {"zeek"}):
        a = order[0]
        b = next(p for p in order if resolved[p] != resolved[a])
        raise InputError(f"is {resolved[b]} but {a} is {resolved[a]}; read different formats "
                         f"separately", file=str(b))

    streams: list[sniff.TextBlocks] = []

    def blocks_of(path: Path) -> sniff.TextBlocks:
        streams.append(sniff.TextBlocks(path))
        return streams[-1]

    try:
        raw = _read(order, resolved, fmts, engine, blocks_of)
        raw.not_utf8 = [(s.path, s.not_utf8, s.not_utf8_example) for s in streams if s.not_utf8]
        truncated = [s.path for s in streams if s.truncated]
        if truncated:
            raw.notes.insert(0, f"gzip stream ends early in {_names(truncated)} (still being "
                                f"written?); read the complete part")
        from .canonical import finish

        done = finish(raw, unit_req, date, on_bad_rows)
    except FlowsiemError:
        raise
    except Exception as exc:  # a library error on a bad file must not surface as a traceback
        if not _is_library_error(exc):
            raise
        raise _cannot_read(exc, str(order[0]) if len(order) == 1 else ", ".join(str(p) for p in order[:3])) from exc

    fmt_name = "+".join(fmts)
    return ReadResult(table=done.table, files=order, fmt=fmt_name, time_unit=done.time_unit,
                      time_unit_guessed=unit_req == "auto" and done.time_unit is not None,
                      notes=notes + done.notes, rejected=done.rejected, rejected_rows=done.rejected_rows)


def _read_remote(remote, items, engine, fmt_req, unit_req, date, on_bad_rows) -> ReadResult:
    """Addresses such as hdfs://, s3a:// or file:// URLs: parquet in the flows layout, read by
    Spark (a cluster's executors cannot see this machine's files; they can see its storage)."""
    from . import flows
    from .canonical import finish

    if len(remote) != len(items):
        local = next(s for s in items if s not in remote)
        raise UsageError(f"inputs mix addresses ({remote[0]}) and local paths ({local}); give one kind")
    if engine.name != "spark":
        raise UsageError(f"{remote[0]}: addresses (hdfs://, s3a://, file://...) are read by Spark; "
                         f"add --engine spark, or copy the data to a local path")
    if fmt_req not in ("auto", "flows", "flows-parquet"):
        raise UsageError(f"{remote[0]}: inputs at an address are read as parquet in the flows layout, "
                         f"not {fmt_req}")
    try:
        raw = flows.read_remote_parquet(remote, engine)
        done = finish(raw, unit_req, date, on_bad_rows)
    except FlowsiemError:
        raise
    except Exception as exc:  # the engine's answer for a missing path, a denied bucket, ...
        if not _is_library_error(exc):
            raise
        raise _cannot_read(exc, ", ".join(remote)) from exc
    return ReadResult(table=done.table, files=list(remote), fmt="flows-parquet", time_unit=done.time_unit,
                      time_unit_guessed=unit_req == "auto" and done.time_unit is not None,
                      notes=done.notes, rejected=done.rejected, rejected_rows=done.rejected_rows)


def _read(order, resolved, fmts, engine, blocks_of):
    family = _family(fmts[0])
    if family == "zeek":
        from .zeek import read_zeek

        return read_zeek(order, resolved, engine, blocks_of)
    if family == "nfdump":
        from .nfdump import read_nfdump

        return read_nfdump(order, engine, blocks_of)
    from . import flows

    if fmts == ["flows-parquet"]:
        return flows.read_parquet(order, engine)
    return flows.read_csv(order, engine, blocks_of)


def _cannot_read(exc: Exception, where: str) -> InputError:
    msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return InputError(f"cannot read: {msg}", file=where)


def _is_library_error(exc: Exception) -> bool:
    """Errors raised by the parsing/query libraries on bad data (not our own bugs)."""
    mods = (type(exc).__module__ or "").split(".")[0]
    return mods in {"pyarrow", "duckdb", "_duckdb", "ibis", "pyspark", "py4j"} or isinstance(
        exc, (OSError, UnicodeDecodeError, EOFError))
