"""Arrow helpers shared by the text readers (flows CSV, Zeek, nfdump).

Text formats are parsed by pyarrow's multi-threaded CSV reader, only the columns we need.
Fast path: numeric columns are parsed as numbers (smaller, and cheap for the engine). If any
value does not convert, that file is parsed again as *text* and the conversion happens in the
engine (canonical.py), where bad values are counted and named instead of aborting the parse.
Lines with the wrong number of fields (torn lines from a log that was being written or copied)
are skipped through pyarrow's `invalid_row_handler` and reported in the notes. Per-file tables
are tagged with their file index, concatenated and registered with the engine (`from_arrow`).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError
from .canonical import RAW_COLUMNS, RawInput

# Numbers as text: the time-unit guess needs their range, and "int" vs "float" picks the cast.
_NUM_RE = r"^\s*-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
_INT_RE = r"^\s*-?[0-9]+\s*$"


def text_ts_info(arr):
    """Classify a text timestamp column: ("text-int" | "text-float" | "iso", min, max).

    Numbers win when at least half of the present values look like numbers; the rest are then
    reported as unreadable timestamps. min/max are those of the numeric values (for the guess).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray) and arr.num_chunks == 0:
        return "text-float", None, None
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    present = len(arr) - arr.null_count
    if present == 0:
        return "text-float", None, None
    mask = pc.match_substring_regex(arr, _NUM_RE)
    n_num = pc.sum(mask).as_py() or 0
    if n_num == 0 or n_num * 2 < present:
        return "iso", None, None
    nums = pc.utf8_trim_whitespace(pc.filter(arr, mask))
    is_int = bool(pc.all(pc.match_substring_regex(nums, _INT_RE)).as_py())
    mm = pc.min_max(pc.cast(nums, pa.float64()))
    return ("text-int" if is_int else "text-float"), mm["min"].as_py(), mm["max"].as_py()


def split_header(data: bytes, path: Path) -> tuple[list[str], memoryview]:
    """(column names of the first non-empty line, the bytes after it)."""
    if not data.strip():
        raise InputError("file is empty", file=str(path))
    view = memoryview(data)
    pos = 0
    n = len(data)
    while pos < n:
        end = data.find(b"\n", pos)
        end = n if end == -1 else end
        line = bytes(view[pos:end]).strip()
        if line:
            text = line.decode("utf-8", errors="replace").lstrip("\ufeff")
            names = [c.strip().strip('"').strip() for c in text.split(",")]
            return names, view[end + 1:] if end < n else view[n:]
        pos = end + 1
    raise InputError("file is empty", file=str(path))


def read_delimited(body, path: Path, *, ncols: int, wanted: dict[str, int], delimiter: str,
                   types: dict | None = None, null_values: list[str] | None = None,
                   quoting: bool = True):
    """Parse header-less delimited bytes. Returns (table of RAW_COLUMNS, torn line count).

    `wanted` maps canonical names to field positions; absent canonical columns are all-null.
    `types` (canonical -> pyarrow type) is the fast path: numbers parsed by pyarrow are smaller
    and cheaper for the engine than text. If a value does not convert, the file is parsed again
    as text so that the engine can count and name the bad values (canonical.py).
    Columns not in `types` are text, except that None as a type lets pyarrow infer it.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    src = {f"c{idx}": canon for canon, idx in wanted.items()}
    if not _has_text(body):
        return pa.table({c: pa.nulls(0, pa.null()) for c in RAW_COLUMNS}), 0

    def parse(col_types):
        torn: list[int] = []

        def on_bad_row(row):  # a line with the wrong number of fields: skip it, count it
            torn.append(1)
            return "skip"

        read_opts = pcsv.ReadOptions(column_names=[f"c{i}" for i in range(ncols)], use_threads=True)
        parse_opts = pcsv.ParseOptions(
            delimiter=delimiter, quote_char='"' if quoting else False, double_quote=quoting,
            escape_char=False, newlines_in_values=False, ignore_empty_lines=True,
            invalid_row_handler=on_bad_row)
        conv_opts = pcsv.ConvertOptions(
            include_columns=list(src), column_types=col_types,
            strings_can_be_null=True, quoted_strings_can_be_null=True,
            **({"null_values": null_values} if null_values is not None else {}))
        tbl = pcsv.read_csv(pa.BufferReader(pa.py_buffer(body)), read_options=read_opts,
                            parse_options=parse_opts, convert_options=conv_opts)
        return tbl, len(torn)

    text_types = {c: pa.string() for c in src}
    try:
        if types:
            typed = {c: t for c, t in ((c, types.get(src[c], pa.string())) for c in src) if t is not None}
            try:
                tbl, torn = parse(typed)
            except pa.ArrowInvalid as exc:
                if "conversion error" not in str(exc).lower():
                    raise
                tbl, torn = parse(text_types)  # slow path: let the engine count the bad values
        else:
            tbl, torn = parse(text_types)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"cannot parse: {_short(exc)}", file=str(path)) from None
    cols = {src[name]: tbl.column(name) for name in tbl.column_names}
    n = tbl.num_rows
    out = {c: cols[c] if c in cols else pa.nulls(n, pa.null()) for c in RAW_COLUMNS}
    return pa.table(out), torn


_NON_SPACE = re.compile(rb"\S")


def _has_text(body) -> bool:
    return _NON_SPACE.search(body) is not None


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300]


def torn_note(n: int, path: Path) -> str:
    return f"skipped {n:,} torn line{'s' if n != 1 else ''} in {path} (wrong number of fields)"


def _unify(parts):
    """One schema for all per-file tables: equal types stay, int+float -> float, else text."""
    import pyarrow as pa

    schema = []
    for c in RAW_COLUMNS:
        kinds = {p.schema.field(c).type for p in parts} - {pa.null()}
        if not kinds:
            typ = pa.string()
        elif len(kinds) == 1:
            typ = kinds.pop()
        elif all(pa.types.is_integer(k) or pa.types.is_floating(k) for k in kinds):
            typ = pa.float64()
        else:
            typ = pa.string()
        schema.append((c, typ))
    return pa.schema(schema)


def concat(parts):
    """Concatenate tables of RAW_COLUMNS whose types may differ (typed here, text there)."""
    import pyarrow as pa

    if not parts:
        return pa.table({c: pa.nulls(0, pa.null()) for c in RAW_COLUMNS})
    schema = _unify(parts)
    return pa.concat_tables([t.select(list(RAW_COLUMNS)).cast(schema) for t in parts])


def _ts_kind(col):
    """(kind, min, max) of an Arrow timestamp column (see canonical.RawInput)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        mm = pc.min_max(col)
        return ("int" if pa.types.is_integer(t) else "float"), mm["min"].as_py(), mm["max"].as_py()
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "iso-parsed", None, None  # ISO text that pyarrow already parsed
    return text_ts_info(col)


def raw_from_arrow(parts, files: list[Path], names: list[dict[str, str]], engine, *,
                   notes: list[str] | None = None, default_unit: str | None = None) -> RawInput:
    """Concatenate per-file tables (tagged with their file index) and register them."""
    import numpy as np
    import pyarrow as pa

    schema = _unify(parts)
    tagged = []
    for i, t in enumerate(parts):
        t = t.select(list(RAW_COLUMNS)).cast(schema)
        tagged.append(t.append_column("_file", pa.array(np.full(t.num_rows, i, dtype=np.int32))))
    combined = pa.concat_tables(tagged)
    kind, lo, hi = _ts_kind(combined.column("ts"))
    table = engine.from_arrow(combined)
    del combined, tagged

    def per_file(i: int):
        return table.filter(table["_file"] == i)

    return RawInput(table=table, ts_kind=kind, files=list(files), per_file=per_file, names=names,
                    ts_min=lo, ts_max=hi, default_unit=default_unit, notes=list(notes or []))


__all__ = ["text_ts_info", "split_header", "read_delimited", "torn_note", "raw_from_arrow",
           "concat"]
