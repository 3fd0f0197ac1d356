"""How flowsiem writes numbers for people: bytes, durations, hours of the day, lists of addresses.
Shared by the profile summary, the rules' messages and explain."""

from __future__ import annotations


def is_missing(x) -> bool:
    """None or NaN."""
    return x is None or x != x


def fmt_bytes(n) -> str:
    """1234567 -> '1.2 MB' (decimal units, as network tools print them)."""
    try:
        n = float(n)
    except (TypeError, ValueError):
        return "?"
    if n != n:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n}"


def fmt_duration(seconds) -> str:
    """90 -> '90 s', 900 -> '15 min', 9000 -> '2.5 h'."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "?"
    if s != s:
        return "?"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def fmt_count(x) -> str:
    return "n/a" if is_missing(x) else f"{int(round(float(x))):,}"


def fmt_share(x) -> str:
    return "n/a" if is_missing(x) else f"{100 * float(x):.0f} %"


def fmt_hours(hours) -> str:
    """[0, 1, 2, 5, 22, 23] -> '00-02h, 05h, 22-23h'."""
    hs = sorted({int(h) for h in hours})
    if not hs:
        return "none"
    runs, start, prev = [], hs[0], hs[0]
    for h in hs[1:]:
        if h != prev + 1:
            runs.append((start, prev))
            start = h
        prev = h
    runs.append((start, prev))
    return ", ".join(f"{a:02d}h" if a == b else f"{a:02d}-{b:02d}h" for a, b in runs)


def fmt_list(items, n: int = 4) -> str:
    """The first n items, and how many more."""
    items = [str(x) for x in items]
    head = ", ".join(items[:n])
    return head + (f" and {len(items) - n} more" if len(items) > n else "")


def fmt_service(proto, port) -> str:
    """('tcp', 443) -> 'tcp/443' (just the protocol when there is no port, e.g. ICMP)."""
    try:
        return f"{proto}/{int(port)}"
    except (TypeError, ValueError):
        return f"{proto}"
