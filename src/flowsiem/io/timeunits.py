"""Timestamp units: names, the automatic guess, and the conversion to a real `timestamp`.

Flow files carry time in many ways. The seed's parquet files hold *hundredths of a second since
midnight* (1.43e6 .. 8.49e6 for a working day), Zeek writes epoch seconds with microseconds,
nfdump writes `YYYY-MM-DD HH:MM:SS.mmm`, other exporters write epoch milliseconds or nanoseconds.

`guess_time_unit(min, max)` picks the unit from the range of the values (rule below); callers
pass the guess on so the CLI can print it and users can override it with `--time-unit`.

Conversions are Ibis expressions that work on DuckDB and PySpark alike: a numeric value becomes
whole microseconds, then `base + interval(us)` where base is `--date` (day-relative units) or
1970-01-01 (epoch units). Results are naive timestamps holding the UTC wall clock.
"""

from __future__ import annotations

import datetime as _dt
import math

from ..errors import InputError, UsageError

#: Accepted `time_unit` names ("auto" asks for a guess).
TIME_UNITS: tuple[str, ...] = ("auto", "centiseconds", "s", "ms", "us", "ns", "iso")

# Longer spellings users type; mapped to the names above.
_ALIASES = {
    "centiseconds-since-midnight": "centiseconds", "cs": "centiseconds", "centisecond": "centiseconds",
    "hundredths": "centiseconds",
    "seconds": "s", "sec": "s", "second": "s", "epoch": "s",
    "milliseconds": "ms", "millis": "ms", "millisecond": "ms",
    "microseconds": "us", "micros": "us", "microsecond": "us", "µs": "us",
    "nanoseconds": "ns", "nanos": "ns", "nanosecond": "ns",
    "iso8601": "iso", "iso-8601": "iso", "text": "iso", "string": "iso",
}

#: One day in centiseconds: day-relative values are below this.
CENTISECONDS_PER_DAY = 8_640_000

# Microseconds per unit (centiseconds are relative to --date, the others to the epoch).
_US_PER_UNIT = {"centiseconds": 10_000, "s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}

# Plausible range for converted timestamps: outside it the unit is surely wrong, and DuckDB
# would overflow converting it, so we stop with a message instead of a traceback.
_MIN_YEAR, _MAX_YEAR = 1900, 2200

_EPOCH = _dt.datetime(1970, 1, 1)

# How far past the reader's clock a flow may be stamped: sensors with a skewed clock, and
# exporters that print local time (up to UTC+14) run ahead of UTC by hours, not by days.
FUTURE_SLACK = _dt.timedelta(days=1)


def latest_plausible() -> _dt.datetime:
    """The latest instant a flow record can carry (naive UTC, like the canonical timestamps)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None) + FUTURE_SLACK


def raw_upper_bound(unit: str, date: _dt.date) -> float:
    """The largest raw value in `unit` that is not in the future (values below 0 are not times
    of a flow either: before the epoch, or before the day's midnight)."""
    base = _dt.datetime.combine(date, _dt.time()) if unit == "centiseconds" else _EPOCH
    return (latest_plausible() - base) / _dt.timedelta(microseconds=1) / _US_PER_UNIT[unit]


def normalize_time_unit(name: str | None) -> str:
    """Map a user-supplied unit name (case-insensitive, aliases allowed) to one of TIME_UNITS."""
    key = (name or "auto").strip().lower()
    key = _ALIASES.get(key, key)
    if key not in TIME_UNITS:
        raise UsageError(f"unknown time unit '{name}' (choose one of: {', '.join(TIME_UNITS)})")
    return key


def parse_date(date: str | _dt.date | None) -> _dt.date:
    """The day that day-relative (centiseconds) timestamps are placed on; default 1970-01-01."""
    if date is None or date == "":
        return _dt.date(1970, 1, 1)
    if isinstance(date, _dt.datetime):
        return date.date()
    if isinstance(date, _dt.date):
        return date
    try:
        day = _dt.date.fromisoformat(str(date).strip())
    except ValueError:
        raise UsageError(f"--date must be YYYY-MM-DD, got '{date}'") from None
    if day > latest_plausible().date():
        raise UsageError(f"--date {day} is in the future")
    return day


def guess_time_unit(min_value, max_value) -> str:
    """Guess the unit of a timestamp column from its smallest and largest value.

    Rule (first match wins):
      * either value is a string (or the values are not numbers) -> "iso"
      * min >= 0 and max < 8,640,000 (one day in hundredths)      -> "centiseconds" since midnight
      * min >= 0 and max < 17,280,000 (two days)                  -> "centiseconds" too: a day
        whose last flows run past midnight (as epoch seconds these would be mid-1970)
      * otherwise by magnitude m = max(|min|, |max|):
          m < 1e11 -> "s"   (epoch seconds: ~1.7e9 today; 1e11 s is the year 5138)
          m < 1e14 -> "ms"  (~1.7e12 today)
          m < 1e17 -> "us"  (~1.7e15 today)
          else     -> "ns"  (~1.7e18 today)
    No values at all (None) guesses "centiseconds", the seed's layout. Values under one day are
    ambiguous (epoch seconds in early January 1970 look the same); pass the unit to override.
    """
    if isinstance(min_value, str) or isinstance(max_value, str):
        return "iso"
    try:
        lo = None if min_value is None else float(min_value)
        hi = None if max_value is None else float(max_value)
    except (TypeError, ValueError):
        return "iso"
    vals = [v for v in (lo, hi) if v is not None and math.isfinite(v)]
    if not vals:
        return "centiseconds"
    lo, hi = min(vals), max(vals)
    if lo >= 0 and hi < 2 * CENTISECONDS_PER_DAY:
        return "centiseconds"
    m = max(abs(lo), abs(hi))
    if m < 1e11:
        return "s"
    if m < 1e14:
        return "ms"
    if m < 1e17:
        return "us"
    return "ns"


def to_datetime(value: float, unit: str, date: _dt.date) -> _dt.datetime | None:
    """The instant one numeric value stands for (None when it is out of Python's range)."""
    base = _dt.datetime.combine(date, _dt.time()) if unit == "centiseconds" else _EPOCH
    try:
        return base + _dt.timedelta(microseconds=float(value) * _US_PER_UNIT[unit])
    except (OverflowError, ValueError):
        return None


def fits(min_value, max_value, unit: str, date: _dt.date) -> bool:
    """Whether `check_range` accepts these values."""
    try:
        check_range(min_value, max_value, unit, date)
    except InputError:
        return False
    return True


def check_range(min_value, max_value, unit: str, date: _dt.date, *, file=None, column=None) -> None:
    """Refuse a unit that puts the data outside 1900..2200 (a wrong guess or a wrong --time-unit)."""
    if unit not in _US_PER_UNIT:
        return
    for v in (min_value, max_value):
        if v is None or not math.isfinite(float(v)):
            continue
        when = to_datetime(v, unit, date)
        if when is None or not (_MIN_YEAR <= when.year < _MAX_YEAR):
            year = "out of range" if when is None else f"year {when.year}"
            raise InputError(
                f"timestamp {v:g} read as '{unit}' gives {year}; pass --time-unit "
                f"(one of: {', '.join(u for u in TIME_UNITS if u != 'auto')})",
                file=file, column=column)


def numeric_to_timestamp(value, unit: str, date: _dt.date, *, is_integer: bool):
    """Ibis expression: numeric column `value` in `unit` -> timestamp (portable DuckDB/PySpark).

    The caller has checked the range with `check_range`, so the integer arithmetic cannot overflow.
    """
    import ibis

    per_us = _US_PER_UNIT[unit]
    if unit == "ns":
        us = (value // 1000) if is_integer else (value / 1000).floor()
    elif is_integer:
        us = value * per_us if per_us != 1 else value
    else:
        us = (value * per_us).round()
    us = us.cast("int64")
    if unit == "centiseconds":
        base = ibis.timestamp(_dt.datetime.combine(date, _dt.time()))
    else:
        base = ibis.timestamp(_EPOCH)
    return (base + us.as_interval("us")).cast("timestamp")


def text_to_timestamp(value):
    """Ibis expression: ISO-8601-like text -> timestamp, NULL where unparseable.

    Text with a UTC offset ("...+02:00", "...Z") is converted to UTC; text without one is taken
    as it stands. Going through `timestamp with time zone` does both (the session zone is UTC).
    """
    import ibis.expr.datatypes as dt

    return value.try_cast(dt.Timestamp(timezone="UTC")).cast("timestamp")
