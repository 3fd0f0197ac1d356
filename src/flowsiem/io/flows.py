"""The seed layout: `timestamp, src_ip, dst_ip, proto, port, up_bytes, down_bytes` as parquet or CSV.

Column names are matched case-insensitively; `timestamp` may be `ts`, `port` may be `dst_port`,
and an optional `src_port` (or `sport`) is kept. Extra columns are ignored.

Parquet is read lazily by the engine (`engine.read_parquet`): a 100 M-row day is never loaded
into Python. The file footers are read with pyarrow to find the columns, the row count and the
min/max statistics of the timestamp column, which is all the time-unit guess needs. Files with
the same layout are read by one `read_parquet` call; layouts that differ (another column case,
int vs float timestamps) are read separately and unioned.

CSV (with a header line) is parsed by pyarrow into text columns; the conversions happen in the
shared pipeline (canonical.py), which counts bad values instead of failing on the first one.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .canonical import RAW_COLUMNS, RawInput
from . import tables

# canonical column -> accepted names (lower case), first match wins
ALIASES = {
    "ts": ("timestamp", "ts"),
    "src_ip": ("src_ip",),
    "dst_ip": ("dst_ip",),
    "proto": ("proto", "protocol"),
    "port": ("port", "dst_port", "dport"),
    "src_port": ("src_port", "sport"),
    "up_bytes": ("up_bytes",),
    "down_bytes": ("down_bytes",),
    "duration": ("duration",),
    "conn_state": ("conn_state",),
    "up_pkts": ("up_pkts", "orig_pkts"),
    "down_pkts": ("down_pkts", "resp_pkts"),
}
REQUIRED = ("ts", "src_ip", "dst_ip", "proto", "port", "up_bytes", "down_bytes")


def match_columns(names: list[str], path: Path) -> dict[str, str]:
    """canonical -> actual column name; InputError naming the first missing required column."""
    lower = {}
    for n in names:
        lower.setdefault(n.strip().lower(), n)
    found = {}
    for canon, aliases in ALIASES.items():
        for a in aliases:
            if a in lower:
                found[canon] = lower[a]
                break
    for canon in REQUIRED:
        if canon not in found:
            want = "timestamp" if canon == "ts" else canon
            alts = " or ".join(f"'{a}'" for a in ALIASES[canon][1:])
            hint = f" (or {alts})" if alts else ""
            raise InputError(f"required column is missing{hint}; the file has: {', '.join(names)}",
                             file=str(path), column=want)
    return found


# --- parquet ----------------------------------------------------------------------------------

def _ts_kind_of(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "timestamp"
    if pa.types.is_dictionary(arrow_type):
        return _ts_kind_of(arrow_type.value_type)
    return "text"


def _parquet_info(path: Path):
    """(ParquetFile metadata, arrow schema) or InputError."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        return pf, pf.schema_arrow
    except Exception as exc:  # pyarrow raises several types for corrupt footers
        raise InputError(f"not a readable parquet file ({exc})", file=str(path)) from None


def _ts_stats(pf, column: str):
    """(min, max) of a numeric column from the row-group statistics, or None when absent."""
    md = pf.metadata
    idx = None
    for j in range(md.num_columns):
        if md.schema.column(j).path == column:
            idx = j
            break
    if idx is None:
        return None
    lo = hi = None
    for g in range(md.num_row_groups):
        col = md.row_group(g).column(idx)
        if md.row_group(g).num_rows == 0:
            continue
        st = col.statistics
        if st is None or not st.has_min_max:
            return None
        try:
            a, b = float(st.min), float(st.max)
        except (TypeError, ValueError):
            return None
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
    return lo, hi


def read_parquet(files: list[Path], engine) -> RawInput:
    import ibis

    layouts: dict[tuple, list[int]] = {}
    names_per_file: list[dict[str, str]] = []
    kinds: list[str] = []
    stats: list = []
    notes: list[str] = []
    empty = [p for p in files if _parquet_info(p)[0].metadata.num_rows == 0]
    if len(empty) == len(files):
        raise InputError("file has no rows", file=str(files[0]))
    if empty:  # an empty hour among many is not an error, but say so
        notes.append(f"{len(empty)} parquet file{'s' if len(empty) != 1 else ''} without rows: "
                     f"{', '.join(p.name for p in empty[:5])}")
    files = [p for p in files if p not in empty]
    for i, path in enumerate(files):
        pf, schema = _parquet_info(path)
        found = match_columns(list(schema.names), path)
        names_per_file.append(found)
        kind = _ts_kind_of(schema.field(found["ts"]).type)
        if kind == "text":  # numbers or dates stored as text: look at the first row group only
            sample = pf.read_row_group(0, columns=[found["ts"]]).column(0)
            kind, _, _ = tables.text_ts_info(sample)
            stats.append(None)  # min/max of the whole column comes from the engine below
        else:
            stats.append(_ts_stats(pf, found["ts"]) if kind in ("int", "float") else None)
        kinds.append(kind)
        key = tuple(sorted(found.items())) + tuple(str(schema.field(c).type) for c in found.values())
        layouts.setdefault(key, []).append(i)

    kind = _merge_kinds(kinds, files)

    def raw_of(view, found):
        return _raw_of(view, found, kind)

    parts = []
    for key, idxs in layouts.items():
        view = engine.read_parquet([files[i] for i in idxs])
        parts.append(raw_of(view, names_per_file[idxs[0]]))
    table = parts[0] if len(parts) == 1 else ibis.union(*_harmonise(parts))

    def per_file(i: int):
        return raw_of(engine.read_parquet([files[i]]), names_per_file[i])

    lo = hi = None
    if kind in ("int", "float") and all(s is not None for s in stats):
        lo = min(s[0] for s in stats)
        hi = max(s[1] for s in stats)
    elif kind.startswith("text-"):  # numbers stored as text: the exact range from the engine
        lo, hi = _ts_range(table, kind)
    return RawInput(table=table, ts_kind=kind, files=list(files), per_file=per_file,
                    names=names_per_file, ts_min=lo, ts_max=hi, notes=notes)


def _raw_of(view, found: dict[str, str], kind: str):
    """A parquet view with its columns renamed to the canonical names, types widened."""
    import ibis

    cols = {}
    for canon in RAW_COLUMNS:
        if canon in found:
            cols[canon] = view[found[canon]]
        else:
            cols[canon] = ibis.null().cast("string" if canon == "conn_state" else "int64")
    cols["ts"] = _cast_ts(cols["ts"], kind)
    for c in ("port", "src_port", "up_bytes", "down_bytes", "up_pkts", "down_pkts"):
        cols[c] = _widen(cols[c])
    cols["proto"] = cols["proto"].cast("string") if not cols["proto"].type().is_integer() \
        else cols["proto"].cast("int64")
    return view.select(**cols)


def read_remote_parquet(urls: list[str], engine) -> RawInput:
    """Parquet at addresses only the engine can open (Spark: hdfs://, s3a://, file://, globs and
    directories, through the user's Spark configuration). Nothing is read on this machine: the
    columns come from the engine's schema, the time range from one aggregate."""
    view = engine.read_parquet(urls)
    found = match_columns(list(view.columns), urls[0] if len(urls) == 1 else ", ".join(urls))
    kind = _ts_kind_of(view[found["ts"]].type().to_pyarrow())
    if kind == "text":  # numbers or dates stored as text: a sample decides, as for local files
        sample = view.select(v=view[found["ts"]].cast("string")).limit(10_000).to_pyarrow().column("v")
        kind = tables.text_ts_info(sample)[0]
    table = _raw_of(view, found, kind)
    lo, hi = _ts_range(table, kind) if kind in ("int", "float") or kind.startswith("text-") else (None, None)
    return RawInput(table=table, ts_kind=kind, files=list(urls), per_file=lambda i: table,
                    names=[found] * len(urls), ts_min=lo, ts_max=hi)


def _ts_range(table, kind: str) -> tuple:
    """(min, max) of a numeric timestamp column, or of the numbers in a text one: one aggregate."""
    num = table.ts.try_cast("float64") if kind.startswith("text-") else table.ts.cast("float64")
    got = table.aggregate(lo=num.min(), hi=num.max()).to_pyarrow().to_pylist()[0]
    return got["lo"], got["hi"]


def _merge_kinds(kinds: list[str], files: list[Path]) -> str:
    uniq = set(kinds)
    if len(uniq) == 1:
        return kinds[0]
    if uniq <= {"int", "float"}:
        return "float"
    if uniq <= {"text-int", "text-float"}:
        return "text-float"
    first = kinds[0]
    other = next(i for i, k in enumerate(kinds) if k != first)
    raise InputError(f"timestamps are {kinds[other]} here but {first} in {files[0]}; "
                     f"read these files separately", file=str(files[other]))


def _cast_ts(col, kind):
    if kind == "int":
        return col.cast("int64")
    if kind == "float":
        return col.cast("float64")
    if kind == "timestamp":
        return col.cast("timestamp")
    return col.cast("string")


def _widen(col):
    t = col.type()
    if t.is_integer() or t.is_boolean():
        return col.cast("int64")
    if t.is_floating() or t.is_decimal():
        return col.cast("float64")
    return col.cast("string")


def _harmonise(parts):
    """Union needs equal types: where layouts disagree (int here, text there) use the wider type."""
    cols = parts[0].columns
    out_types = {}
    for c in cols:
        types = {str(p[c].type()) for p in parts}
        if len(types) == 1:
            continue
        if types <= {"int64", "float64"}:
            out_types[c] = "float64"
        else:
            out_types[c] = "string"
    if not out_types:
        return parts
    return [p.mutate(**{c: p[c].cast(t) for c, t in out_types.items()}) for p in parts]


# --- CSV --------------------------------------------------------------------------------------

def read_csv(files: list[Path], engine, blocks_of) -> RawInput:
    """Seed-layout CSV files (header line required), read block by block (`blocks_of(path)`)."""
    import pyarrow as pa

    spool = tables.Spool(engine)
    names, notes = [], []
    for i, path in enumerate(files):
        header, bodies = tables.header_and_bodies(blocks_of(path), path)
        found = match_columns(header, path)
        names.append(found)
        idx = {canon: header.index(actual) for canon, actual in found.items()}
        types = {"ts": None, "port": pa.int64(), "src_port": pa.int64(),
                 "up_bytes": pa.int64(), "down_bytes": pa.int64()}
        torn = 0
        for body in bodies:
            tbl, bad = tables.read_delimited(body, path, ncols=len(header), wanted=idx,
                                             delimiter=",", types=types)
            torn += bad
            spool.add(tbl, i)
        if torn:
            notes.append(tables.torn_note(torn, path))
    return spool.finish(files, names, notes=notes)
