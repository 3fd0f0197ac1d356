"""Arrow helpers shared by the text readers (flows CSV, Zeek, nfdump).

Text formats are parsed by pyarrow's multi-threaded CSV reader, only the columns we need.
Fast path: numeric columns are parsed as numbers (smaller, and cheap for the engine). If any
value does not convert, that file is parsed again as *text* and the conversion happens in the
engine (canonical.py), where bad values are counted and named instead of aborting the parse.
Lines with the wrong number of fields (torn lines from a log that was being written or copied)
are skipped through pyarrow's `invalid_row_handler` and reported in the notes.

Text is parsed a block at a time (sniff.TextBlocks) and each parsed block goes to a `Spool`,
tagged with its file's index: with DuckDB the blocks are written to parquet files in the run's
scratch directory and the engine reads them like any parquet input, so memory stays bounded by a
few blocks whatever the size of the log.
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

    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    stats = _TsStats()
    stats.add(arr)
    return stats.kind(pa.string())


class _TsStats:
    """What the time-unit guess needs of a timestamp column, accumulated block by block."""

    def __init__(self):
        self.present = self.numeric = 0
        self.all_int = True
        self.lo = self.hi = None

    def _range(self, lo, hi):
        if lo is not None:
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)

    def add(self, col):
        import pyarrow as pa
        import pyarrow.compute as pc

        t = col.type
        n = len(col) - col.null_count
        if n == 0:
            return
        self.present += n
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            self.numeric += n
            self.all_int = self.all_int and pa.types.is_integer(t)
            mm = pc.min_max(col)
            self._range(mm["min"].as_py(), mm["max"].as_py())
            return
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            return  # ISO text that pyarrow already parsed: present, not a number
        mask = pc.match_substring_regex(col, _NUM_RE)
        n_num = pc.sum(mask).as_py() or 0
        if n_num == 0:
            return
        self.numeric += n_num
        nums = pc.utf8_trim_whitespace(pc.filter(col, mask))
        self.all_int = self.all_int and bool(pc.all(pc.match_substring_regex(nums, _INT_RE)).as_py())
        mm = pc.min_max(pc.cast(nums, pa.float64()))
        self._range(mm["min"].as_py(), mm["max"].as_py())

    def kind(self, typ):
        """(kind, min, max) for the column's type after the blocks are put together."""
        import pyarrow as pa

        if pa.types.is_integer(typ) or pa.types.is_floating(typ):
            return ("int" if pa.types.is_integer(typ) else "float"), self.lo, self.hi
        if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
            return "iso-parsed", None, None
        if self.present == 0:
            return "text-float", None, None
        if self.numeric == 0 or self.numeric * 2 < self.present:
            return "iso", None, None
        return ("text-int" if self.all_int else "text-float"), self.lo, self.hi


def header_and_bodies(blocks, path: Path):
    """(column names of the first non-empty line, iterator over the text after it, block by block)."""
    it = iter(blocks)
    for block in it:
        if not block.strip():
            continue
        header, rest = split_header(block, path)

        def bodies():
            if len(rest):
                yield rest
            yield from it

        return header, bodies()
    raise InputError("file is empty", file=str(path))


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


def _unify(schemas):
    """One schema for all blocks: equal types stay, int+float -> float, else text."""
    import pyarrow as pa

    schema = []
    for c in RAW_COLUMNS:
        kinds = {s.field(c).type for s in schemas} - {pa.null()}
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


class Spool:
    """Parsed blocks of raw rows (RAW_COLUMNS) on their way to the engine, tagged with the index
    of the file they come from.

    With DuckDB each block is written at once to a parquet file in the run's scratch directory
    (memory: one block), and the engine reads them lazily like any parquet input. Spark's
    executors may not see this machine's disk, so for Spark the blocks stay in memory and are
    handed over as one table."""

    def __init__(self, engine):
        import tempfile

        self.engine = engine
        scratch = getattr(engine, "scratch", None)
        self.dir = tempfile.mkdtemp(prefix="spool-", dir=scratch) if scratch else None
        self.blocks: list = []  # Arrow tables (in memory) or (path, schema) (on disk)
        self.ts = _TsStats()

    def add(self, tbl, file_index: int) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        if tbl.num_rows == 0:
            return
        tbl = tbl.select(list(RAW_COLUMNS))
        tbl = tbl.append_column("_file", pa.array(np.full(tbl.num_rows, file_index, dtype=np.int32)))
        self.ts.add(tbl.column("ts"))
        if self.dir is None:
            self.blocks.append(tbl)
            return
        path = f"{self.dir}/block-{len(self.blocks):06d}.parquet"
        pq.write_table(tbl, path, compression="zstd")
        self.blocks.append((path, tbl.schema))

    def finish(self, files: list[Path], names: list[dict[str, str]], *,
               notes: list[str] | None = None, default_unit: str | None = None) -> RawInput:
        schemas = [b.schema if self.dir is None else b[1] for b in self.blocks]
        schema = _unify(schemas)
        kind, lo, hi = self.ts.kind(schema.field("ts").type)
        if self.dir is None or not self.blocks:
            table = self._in_memory(schema)
        else:
            table = self._on_disk(schema)

        def per_file(i: int):
            return table.filter(table["_file"] == i)

        return RawInput(table=table, ts_kind=kind, files=list(files), per_file=per_file, names=names,
                        ts_min=lo, ts_max=hi, default_unit=default_unit, notes=list(notes or []))

    def _in_memory(self, schema):
        import pyarrow as pa

        full = pa.schema(list(schema) + [pa.field("_file", pa.int32())])
        combined = pa.concat_tables([b.cast(full) for b in self.blocks]) if self.blocks else full.empty_table()
        self.blocks = []
        return self.engine.from_arrow(combined)

    def _on_disk(self, schema):
        """Blocks of one layout are read together; layouts (a block parsed as text because of a bad
        value, a column absent from one file) are cast to the common types and unioned."""
        import ibis

        groups: dict = {}
        for path, block_schema in self.blocks:
            groups.setdefault(block_schema, []).append(path)
        parts = []
        for block_schema, paths in groups.items():
            t = self.engine.read_parquet(paths)
            casts = {f.name: t[f.name].cast(ibis.dtype(f.type)) for f in schema
                     if block_schema.field(f.name).type != f.type}
            parts.append(t.mutate(**casts).select(*RAW_COLUMNS, "_file") if casts else t)
        return parts[0] if len(parts) == 1 else ibis.union(*parts)


__all__ = ["text_ts_info", "split_header", "header_and_bodies", "read_delimited", "torn_note",
           "Spool"]
