"""From a reader's raw table to the canonical flow table, with one validation pass.

Every reader hands over a `RawInput`: an Ibis table whose columns already carry the canonical
*names* (ts, src_ip, dst_ip, proto, port, src_port, up_bytes, down_bytes) but still the input's
*types* (text from CSV/TSV/JSON, whatever the parquet file holds). `finish()` then

  1. picks the time unit (the caller's, the format's own, or `guess_time_unit` on min/max),
  2. builds the conversion as Ibis expressions (portable: DuckDB and PySpark),
  3. validates with two queries that together read each column once:
       - one aggregate counting every row-level problem (timestamps, byte counts, ports) plus
         the rows without byte counts;
       - the distinct addresses of src_ip/dst_ip, checked with a portable regular expression
         (distinct addresses are few, so this costs a hash aggregate, not a regex per row),
  4. raises `InputError(file=, column=, rows=)` for the first problem, naming the file: with
     several files the failing check is re-run per file (only on this error path),
  5. returns the lazy canonical table (nothing is materialised here).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..schema import CANONICAL_TYPES
from . import timeunits as tu

MAX_IP_PACKET = 65535  # bytes: the largest IPv4 packet (IPv6 jumbograms aside)
# The most bytes one flow record may count: 2**53, 9.0 PB. A 100 Gbit/s link running flat out
# needs more than 8 days to carry that, and 2**53 is where a float64 (JSON readers, pandas with
# missing values) stops holding whole byte counts exactly; a larger count is a corrupt counter or
# a sentinel, and summing a few of them would overflow the int64 totals.
MAX_FLOW_BYTES = 2**53
_INT64_FLOAT_LIMIT = 9.0e18  # float values at or beyond this do not fit an int64 (kept below 2**63)

RAW_COLUMNS = ("ts", "src_ip", "dst_ip", "proto", "port", "src_port", "up_bytes", "down_bytes",
               "duration", "conn_state", "up_pkts", "down_pkts")

# --- IP address syntax ------------------------------------------------------------------------
# A full-match regex for IPv4 dotted quads (no leading zeros, like Python's ipaddress) and every
# IPv6 text form (RFC 4291 sec. 2.2, including "::" compression and an embedded IPv4 tail; no
# zone index). Built from alternatives only - no look-arounds - so RE2 (DuckDB) and Java regex
# (Spark) both run it. tests/test_readers.py checks it against ipaddress with hypothesis.
_H = "[0-9A-Fa-f]{1,4}"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4 = rf"{_OCTET}(\.{_OCTET}){{3}}"


def _ipv6_pattern() -> str:
    alts = [rf"({_H}:){{7}}{_H}", rf"({_H}:){{6}}{_V4}"]
    for n in range(8):  # n groups before "::", at most 7 - n after it
        left = "" if n == 0 else rf"({_H}:){{{n - 1}}}{_H}"
        k = 7 - n
        right = "" if k == 0 else rf"({_H}(:{_H}){{0,{k - 1}}})?"
        alts.append(f"{left}::{right}")
        if n <= 5:  # an IPv4 tail takes two groups: at most 5 - n groups between
            k4 = 5 - n
            mid = "" if k4 == 0 else rf"({_H}:){{0,{k4}}}"
            alts.append(f"{left}::{mid}{_V4}")
    return "|".join(f"({a})" for a in alts)


IP_PATTERN = rf"^(({_V4})|({_ipv6_pattern()}))$"

# Transport names: numbers (IANA) and other spellings -> the canonical lower-case name.
# ICMPv6 becomes "icmp", as Zeek reports it.
PROTO_NAMES = {
    "1": "icmp", "2": "igmp", "6": "tcp", "17": "udp", "47": "gre", "50": "esp", "51": "ah",
    "58": "icmp", "132": "sctp", "icmp6": "icmp", "icmpv6": "icmp", "ipv6-icmp": "icmp",
    "ipv6_icmp": "icmp",
}

_MAX_BAD_IPS = 1000  # distinct bad addresses fetched to count the rows they occur in


@dataclass
class RawInput:
    """What a reader produces (see the module docstring)."""

    table: object                        # ibis.Table with RAW_COLUMNS (any types)
    ts_kind: str                         # int | float | text-int | text-float | iso | iso-parsed | timestamp
    files: list[Path]
    per_file: Callable[[int], object]    # raw table of files[i] alone (error path only)
    names: list[dict[str, str]]          # per file: canonical column -> its name in that file
    ts_min: float | None = None          # known range of numeric timestamps (None: ask the engine)
    ts_max: float | None = None
    default_unit: str | None = None      # the format's own unit, used for "auto" (Zeek: "s")
    notes: list[str] = field(default_factory=list)
    not_utf8: list = field(default_factory=list)  # (file, lines left out, an example) per text file


@dataclass
class Finished:
    table: object
    time_unit: str | None
    rows: int
    notes: list[str]
    rejected: object = None    # with on_bad_rows="skip": the skipped raw rows (as text) and why
    rejected_rows: int = 0


# --- type handling ----------------------------------------------------------------------------

def _or(a, b):
    """`a | b` where None means "never" (a literal False is a scalar: it cannot be summed)."""
    if a is None:
        return b
    return a if b is None else (a | b)


def _null(typ: str):
    import ibis

    return ibis.null().cast(typ)


def _as_int(col):
    """(value as int64, condition 'present but not a number') for any raw column type."""
    import ibis

    t = col.type()
    if t.is_null():
        return _null("int64"), None
    if t.is_integer():
        return col.cast("int64"), None
    if t.is_floating():
        # NaN is how pandas writes "missing"; +-inf and huge values are not counts.
        present = col.notnull() & ~col.isnan()
        ok = present & ~col.isinf() & (col.abs() < _INT64_FLOAT_LIMIT)
        return ibis.ifelse(ok, col, ibis.null()).round().cast("int64"), present & ~ok
    if t.is_decimal():
        return col.cast("int64"), None
    # No strip(): TRY_CAST already ignores surrounding blanks (DuckDB and Spark), and TRIM on
    # every row costs more than the cast itself.
    text = col.cast("string") if not t.is_string() else col
    conv = text.try_cast("int64")
    return conv, text.notnull() & (text != "") & conv.isnull()


def _beyond_int64(col, as_int):
    """(above, below): present values that are numbers too large (or too small) for an int64 --
    1e20 as text or in a float column, +-inf. `_as_int` (whose value is `as_int`) leaves them null
    and flags them as not numbers; they are numbers out of range. (None, None) for columns that
    cannot hold them."""
    import ibis

    t = col.type()
    if t.is_integer() or t.is_null() or t.is_decimal():
        return None, None
    if t.is_floating():
        num = col
    else:
        text = col.cast("string") if not t.is_string() else col
        # Only what did not read as an int64 is read again as a float (the rare error path).
        num = ibis.ifelse(as_int.isnull(), text.try_cast("float64"), ibis.null())
    known = num.notnull() & ~num.isnan()
    return ((known & (num >= _INT64_FLOAT_LIMIT)).fill_null(False),
            (known & (num <= -_INT64_FLOAT_LIMIT)).fill_null(False))


def _as_float(col):
    """A non-negative float, or null (optional columns: unreadable values are simply unknown)."""
    import ibis

    t = col.type()
    if t.is_null():
        return _null("float64")
    v = col.cast("float64") if (t.is_numeric()) else col.cast("string").try_cast("float64")
    return ibis.ifelse(v.notnull() & ~v.isnan() & ~v.isinf() & (v >= 0), v, ibis.null())


def _proto(col):
    t = col.type()
    if t.is_integer():
        text = col.cast("string")
    elif t.is_floating():
        text = _as_int(col)[0].cast("string")
    elif t.is_null():
        return _null("string")
    else:
        text = col.cast("string").lower()
    return text.substitute(PROTO_NAMES)


def _is_icmp(col):
    """Raw proto is ICMP (v4 or v6). An IN-list, not the CASE of _proto: DuckDB evaluates a
    CASE inside a larger AND/OR many times slower."""
    t = col.type()
    if t.is_integer():
        return col.isin([1, 58]).fill_null(False)
    if t.is_null():
        return None
    names = ["1", "58"] + [k for k, v in PROTO_NAMES.items() if v == "icmp" and not k.isdigit()] + ["icmp"]
    return col.cast("string").lower().isin(names).fill_null(False)


def _ts_value(col, kind: str, unit: str | None, date: _dt.date):
    """(timestamp expression, condition 'present but unreadable', condition 'out of range').

    Out of range: a number below 0 (before the epoch, or before the day's midnight) or a time
    in the future (tu.latest_plausible). Such values are left out of the conversion, so one
    absurd value cannot overflow it."""
    import ibis

    if kind in ("timestamp", "iso-parsed", "iso"):  # a native timestamp, or ISO text
        if kind == "iso":
            conv = tu.text_to_timestamp(col)
            bad = col.notnull() & conv.isnull()
        else:
            conv, bad = col.cast("timestamp"), None
        return conv, bad, conv > ibis.timestamp(tu.latest_plausible())
    is_int = kind in ("int", "text-int")
    if kind in ("text-int", "text-float"):
        num = col.try_cast("int64" if is_int else "float64")
        bad = col.notnull() & num.isnull()
    elif kind == "float":
        ok = ~col.isnan() & ~col.isinf()
        num = ibis.ifelse(ok, col, ibis.null())
        bad = col.notnull() & ~ok
    else:
        num, bad = col, None
    hi = tu.raw_upper_bound(unit, date)
    in_range = (num >= 0) & (num <= (int(hi) if is_int else hi))
    conv = tu.numeric_to_timestamp(ibis.ifelse(in_range, num, ibis.null()), unit, date, is_integer=is_int)
    return conv, bad, num.notnull() & ~in_range


class _Plan:
    """The conversion of one raw table (the same code serves the whole input and each file)."""

    def __init__(self, kind: str, unit: str | None, date: _dt.date):
        self.kind, self.unit, self.date = kind, unit, date

    def columns(self, t):
        import ibis

        ts, ts_bad, ts_range = _ts_value(t.ts, self.kind, self.unit, self.date)
        proto = _proto(t.proto)
        is_icmp = _is_icmp(t.proto)
        out = {"ts": ts, "src_ip": t.src_ip.cast("string"), "dst_ip": t.dst_ip.cast("string"),
               "proto": proto}
        checks = {"ts_missing": t.ts.isnull(), "ts_bad": ts_bad, "ts_range": ts_range}
        for name in ("port", "src_port"):
            val, bad = _as_int(t[name])
            in_range = (val >= 0) & (val <= 65535)
            # ICMP "ports" are type/code pairs in some exporters (nfdump "8.0"): keep them null.
            out[name] = ibis.ifelse(in_range, val, ibis.null()).cast("int32")
            bad = _or(bad, val.notnull() & ~in_range)
            checks[f"{name}_bad"] = bad if is_icmp is None else bad & ~is_icmp
        # Optional columns: carried when the reader has them; a value that does not read is null
        # (no rule depends on them, so they never stop a run).
        out["duration"] = _as_float(t.duration)
        out["conn_state"] = _null("string") if t.conn_state.type().is_null() \
            else t.conn_state.cast("string").upper()
        for name in ("up_pkts", "down_pkts"):
            val, _ = _as_int(t[name])
            out[name] = ibis.ifelse(val >= 0, val, ibis.null())
        impossible = None
        for name, pkts in (("up_bytes", "up_pkts"), ("down_bytes", "down_pkts")):
            val, bad = _as_int(t[name])
            above, below = _beyond_int64(t[name], val)
            checks[f"{name}_bad"] = bad if above is None else bad & ~(above | below)
            checks[f"{name}_neg"] = _or(val < 0, below)
            checks[f"{name}_absurd"] = _or(val > MAX_FLOW_BYTES, above)
            # More bytes than the packets could carry (an IP packet holds at most 65,535): Zeek
            # counts bytes from TCP sequence numbers, and a connection seen in part gets absurd
            # counts (700 MB in 19 packets). Such a count is unknown, not an upload.
            over = out[pkts].notnull() & (val > out[pkts] * MAX_IP_PACKET)
            out[name] = ibis.ifelse(over, ibis.null(), val)
            impossible = _or(impossible, over)
        checks["bytes_impossible"] = impossible
        checks["no_bytes"] = out["up_bytes"].isnull() | out["down_bytes"].isnull()
        return out, checks

    def canonical(self, t):
        out, _ = self.columns(t)
        return t.select(**{c: out[c].cast(typ) for c, typ in CANONICAL_TYPES.items()})

    def counts(self, t, keys=None) -> dict[str, int]:
        _, checks = self.columns(t)
        keys = list(checks) if keys is None else keys
        aggs = {k: checks[k].fill_null(False).cast("int64").sum() for k in keys
                if checks[k] is not None}
        aggs["rows"] = t.count()
        row = t.aggregate(**aggs).to_pyarrow().to_pylist()[0]
        out = {k: 0 for k in keys}
        out.update({k: int(v or 0) for k, v in row.items()})
        return out

    def example(self, t, key: str, column: str):
        _, checks = self.columns(t)
        got = t.filter(checks[key].fill_null(False)).select(v=t[column]).limit(1).to_pyarrow()
        vals = got.column("v").to_pylist()
        return vals[0] if vals else None


_ABSURD = "more than 9.0 PB (2**53 bytes) in one flow, over 8 days of a 100 Gbit/s link"

# Row-level problems in the order they are reported: (check, raw column, message).
_PROBLEMS = [
    ("ts_missing", "ts", "timestamp is missing"),
    ("ts_bad", "ts", "timestamps that cannot be read{unit}{example}"),
    ("ts_range", "ts", "timestamps out of range{unit} (negative, or later than tomorrow){example}"),
    ("up_bytes_bad", "up_bytes", "byte counts that are not whole numbers{example}"),
    ("down_bytes_bad", "down_bytes", "byte counts that are not whole numbers{example}"),
    ("up_bytes_neg", "up_bytes", "negative byte counts{example}"),
    ("down_bytes_neg", "down_bytes", "negative byte counts{example}"),
    ("up_bytes_absurd", "up_bytes", "byte counts out of range{example}: " + _ABSURD),
    ("down_bytes_absurd", "down_bytes", "byte counts out of range{example}: " + _ABSURD),
    ("port_bad", "port", "ports that are not integers in 0..65535{example}"),
    ("src_port_bad", "src_port", "ports that are not integers in 0..65535{example}"),
]


def _fmt_example(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return f" (e.g. {v!r})"


def _resolve_unit(raw: RawInput, requested: str, date: _dt.date) -> str | None:
    """The unit of the ts column; may run one min/max aggregate for numeric columns."""
    kind = raw.ts_kind
    first = str(raw.files[0]) if raw.files else None
    col = raw.names[0].get("ts", "ts") if raw.names else "ts"
    if kind == "timestamp":
        return None
    if kind in ("iso", "iso-parsed"):
        if requested not in ("auto", "iso"):
            raise InputError(f"timestamps are text (dates), not numbers in '{requested}'; "
                             f"use --time-unit iso or auto", file=first, column=col)
        return "iso"
    if requested == "iso":
        raise InputError("timestamps are numbers, not ISO text; pass the numeric unit "
                         "(centiseconds, s, ms, us, ns) or auto", file=first, column=col)
    lo, hi = raw.ts_min, raw.ts_max
    if lo is None or hi is None:
        if kind in ("int", "float"):  # one cheap aggregate on the ts column alone
            t = raw.table
            num = t.ts if kind == "int" else t.ts.isnan().ifelse(None, t.ts)
            got = t.aggregate(lo=num.min(), hi=num.max()).to_pyarrow().to_pylist()[0]
            lo, hi = got["lo"], got["hi"]
    if requested != "auto":
        unit = requested
    elif raw.default_unit:
        unit = raw.default_unit
    else:
        unit = tu.guess_time_unit(lo, hi)
    if lo is None or hi is None:
        return unit
    guessing = requested == "auto" and not raw.default_unit
    # A few absurd values (a corrupt row, a sensor whose clock jumped) must not decide the unit
    # of millions: when the extremes disagree, the typical value does. The absurd rows are then
    # row-level problems ("out of range"), not the whole file's.
    if (guessing and tu.guess_time_unit(lo, lo) != tu.guess_time_unit(hi, hi)) \
            or not tu.fits(lo, hi, unit, date):
        mid = _typical_ts(raw)
        if guessing and mid is not None:
            unit = tu.guess_time_unit(mid, mid)
        if mid is None or not tu.fits(mid, mid, unit, date):
            _check_range_per_file(raw, lo, hi, unit, date, col)
    return unit


def _typical_ts(raw: RawInput) -> float | None:
    """The (approximate) median of a numeric timestamp column: one aggregate on that column."""
    t = raw.table
    num = t.ts.try_cast("float64") if raw.ts_kind.startswith("text") else t.ts.cast("float64")
    if raw.ts_kind == "float":
        num = num.isnan().ifelse(None, num)
    got = t.aggregate(mid=num.approx_median()).to_pyarrow().column("mid")[0].as_py()
    return None if got is None else float(got)


def _check_range_per_file(raw, lo, hi, unit, date, col):
    try:
        tu.check_range(lo, hi, unit, date, column=col,
                       file=str(raw.files[0]) if len(raw.files) == 1 else None)
    except InputError as exc:
        if len(raw.files) <= 1:
            raise
        # Several files: name the one holding the out-of-range value (error path only).
        for i, f in enumerate(raw.files):
            t = raw.per_file(i)
            num = t.ts.try_cast("float64") if raw.ts_kind.startswith("text") else t.ts
            got = t.aggregate(lo=num.min(), hi=num.max()).to_pyarrow().to_pylist()[0]
            if got["lo"] is None:
                continue
            try:
                tu.check_range(got["lo"], got["hi"], unit, date)
            except InputError as inner:
                raise InputError(str(inner), file=str(f), column=raw.names[i].get("ts", col)) from None
        raise exc


ON_BAD_ROWS = ("error", "skip")


def finish(raw: RawInput, time_unit: str, date, on_bad_rows: str = "error") -> Finished:
    """Convert and validate (see the module docstring). With on_bad_rows="skip", rows with a
    problem are set aside (Finished.rejected) instead of stopping the run."""
    day = tu.parse_date(date)
    unit = _resolve_unit(raw, time_unit, day)
    plan = _Plan(raw.ts_kind, unit, day)
    notes = list(raw.notes)
    t = raw.table
    for path, n, example in raw.not_utf8:
        what = f"line{'s' if n != 1 else ''} that {'are' if n != 1 else 'is'} not UTF-8 text"
        if on_bad_rows != "skip":
            raise InputError(f"{what} (e.g. '{example}'); --on-bad-rows skip leaves "
                             f"{'them' if n != 1 else 'it'} out", file=str(path), rows=n)
        notes.append(f"skipped {n:,} {what} in {path} (e.g. '{example}')")

    counts = plan.counts(t)
    if counts["rows"] == 0:
        raise InputError("no flow records", file=", ".join(str(f) for f in raw.files) or None)
    rejected, n_rejected = None, 0
    if on_bad_rows == "skip":
        t, rejected, n_rejected, what = _set_aside(raw, plan, counts)
        if n_rejected:
            counts = plan.counts(t)
            notes.append(f"skipped {n_rejected:,} row{'s' if n_rejected != 1 else ''} of "
                         f"{counts['rows'] + n_rejected:,} ({what})")
            if counts["rows"] == 0:
                raise InputError(f"no valid flow records: every row has a problem ({what})",
                                 file=", ".join(str(f) for f in raw.files) or None)
    else:
        for key, col, message in _PROBLEMS:
            if counts[key]:
                _raise_problem(raw, plan, key, col, message, counts[key], unit)
        _check_addresses(raw)

    if raw.ts_kind == "timestamp" and time_unit not in ("auto", "iso"):
        notes.append(f"--time-unit {time_unit} ignored: the timestamp column already holds timestamps")
    if date and unit != "centiseconds":
        notes.append(f"--date {date} ignored: timestamps in '{unit or 'timestamp'}' are absolute")
    if counts.get("bytes_impossible"):
        n = counts["bytes_impossible"]
        notes.append(f"{n:,} row{'s' if n != 1 else ''} with more bytes than {'their' if n != 1 else 'its'} "
                     f"packets can carry (sequence-number artefacts): byte counts set to unknown")
    if counts["no_bytes"]:
        n = counts["no_bytes"]
        verb = "have" if n != 1 else "has"
        notes.append(f"{n:,} row{'s' if n != 1 else ''} of {counts['rows']:,} {verb} no byte counts "
                     f"(up_bytes or down_bytes unknown)")
    return Finished(table=plan.canonical(t), time_unit=unit, rows=counts["rows"], notes=notes,
                    rejected=rejected, rejected_rows=n_rejected)


_REASONS = {"ts_missing": "timestamp missing", "ts_bad": "unreadable timestamp",
            "ts_range": "timestamp out of range (negative or in the future)",
            "up_bytes_bad": "byte count not a whole number", "down_bytes_bad": "byte count not a whole number",
            "up_bytes_neg": "negative byte count", "down_bytes_neg": "negative byte count",
            "up_bytes_absurd": "byte count out of range (over 9.0 PB)",
            "down_bytes_absurd": "byte count out of range (over 9.0 PB)",
            "port_bad": "port not in 0..65535", "src_port_bad": "port not in 0..65535",
            "src_ip": "invalid source address", "dst_ip": "invalid destination address"}


def _set_aside(raw: RawInput, plan: "_Plan", counts: dict):
    """(the rows without problems, the others as text with a `reason` column, how many, a summary).

    The reason is each row's first problem in the order errors are reported."""
    import ibis

    t = raw.table
    _, checks = plan.columns(t)
    conds = [(checks[key].fill_null(False), _REASONS[key]) for key, _, _ in _PROBLEMS if counts[key]]
    values, has_null = _bad_addresses(t, limit=None)
    for col in ("src_ip", "dst_ip"):
        if values or has_null:
            c = t[col].cast("string")
            bad = c.isin(values) if values else ibis.literal(False)
            conds.append(((bad | c.isnull()) if has_null else bad, _REASONS[col]))
    if not conds:
        return t, None, 0, ""
    reason = ibis.cases(*conds, else_=ibis.null().cast("string"))
    marked = t.mutate(reason=reason)
    kept = marked.filter(marked.reason.isnull()).drop("reason")
    gone = marked.filter(marked.reason.notnull())
    by_reason = gone.group_by("reason").aggregate(n=gone.count()).to_pyarrow().to_pylist()
    n = sum(r["n"] for r in by_reason)
    what = "; ".join(f"{r['reason']}: {r['n']:,}" for r in sorted(by_reason, key=lambda r: -r["n"]))
    rejected = gone.select(*[gone[c].cast("string").name(c) for c in RAW_COLUMNS], "reason")
    return kept, rejected, n, what


def _raise_problem(raw, plan, key, col, message, total, unit):
    unit_txt = f" as '{unit}'" if unit else ""
    if len(raw.files) <= 1:
        where, t, n, idx = (raw.files[0] if raw.files else None), raw.table, total, 0
    else:
        where = t = None
        n = idx = 0
        for i, f in enumerate(raw.files):
            ti = raw.per_file(i)
            c = plan.counts(ti, [key])[key]
            if c:
                where, t, n, idx = f, ti, c, i
                break
        if t is None:  # should not happen; fall back to the whole input
            t, n = raw.table, total
    example = plan.example(t, key, col) if key != "ts_missing" else None
    msg = message.format(unit=unit_txt, example=_fmt_example(example))
    if n != total:
        rest = total - n
        msg += f"; {rest:,} more row{'s' if rest != 1 else ''} in other files"
    name = raw.names[idx].get(col, col) if raw.names else col
    raise InputError(msg, file=None if where is None else str(where), column=name, rows=n)


def _bad_addresses(t, limit: int | None) -> tuple[list[str], bool]:
    """(up to `limit` distinct invalid addresses of src_ip/dst_ip, whether some are missing)."""
    import pyarrow.compute as pc

    # Distinct per column first, then union: the engine deduplicates before anything else, and
    # the regex then runs on the distinct addresses only (in pyarrow, vectorised RE2).
    src = t.select(ip=t.src_ip.cast("string")).distinct()
    dst = t.select(ip=t.dst_ip.cast("string")).distinct()
    ips = src.union(dst, distinct=True).to_pyarrow().column("ip")
    ok = pc.match_substring_regex(ips, IP_PATTERN)
    bad_mask = pc.invert(pc.fill_null(ok, False))
    if not pc.any(bad_mask).as_py():
        return [], False
    bad = pc.filter(ips, bad_mask)
    bad = (bad if limit is None else bad.slice(0, limit)).to_pylist()
    values = [b for b in bad if b is not None]
    return values, len(values) != len(bad)


def _check_addresses(raw: RawInput) -> None:
    """Distinct src/dst addresses through IP_PATTERN; count affected rows only if some fail."""
    t = raw.table
    values, has_null = _bad_addresses(t, limit=_MAX_BAD_IPS)
    if not values and not has_null:
        return

    def cond(tab, col):
        c = tab[col].cast("string")
        e = c.isin(values) if values else None
        if has_null:
            e = c.isnull() if e is None else (e | c.isnull())
        return e

    for col in ("src_ip", "dst_ip"):
        n = int(t.aggregate(n=cond(t, col).fill_null(False).cast("int64").sum()).to_pyarrow()
                .column("n")[0].as_py() or 0)
        if not n:
            continue
        where, rows, idx = (raw.files[0] if raw.files else None), n, 0
        if len(raw.files) > 1:
            for i, f in enumerate(raw.files):
                ti = raw.per_file(i)
                c = int(ti.aggregate(n=cond(ti, col).fill_null(False).cast("int64").sum())
                        .to_pyarrow().column("n")[0].as_py() or 0)
                if c:
                    where, rows, idx = f, c, i
                    break
        name = raw.names[idx].get(col, col) if raw.names else col
        src = raw.per_file(idx) if len(raw.files) > 1 else t
        got = src.filter(cond(src, col).fill_null(False)).select(v=src[col]).limit(1).to_pyarrow()
        example = got.column("v")[0].as_py() if got.num_rows else None
        what = "missing or invalid IP addresses" if has_null else "invalid IP addresses"
        msg = what + (f" (e.g. {example!r})" if example is not None else "")
        if rows != n:
            msg += f"; {n - rows:,} more rows in other files"
        raise InputError(msg, file=None if where is None else str(where), column=name, rows=rows)
