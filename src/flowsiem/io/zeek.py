"""Zeek / Bro conn.log, as TSV (the classic ASCII writer) or JSON lines.

Mapping to the canonical table:
    ts (epoch seconds) -> ts          id.orig_h -> src_ip      id.resp_h -> dst_ip
    proto              -> proto       id.resp_p -> port        id.orig_p -> src_port
    orig_bytes         -> up_bytes    resp_bytes -> down_bytes
Unset fields (`-` in TSV, an absent key in JSON) become null: Zeek leaves the byte counts unset
for connections it saw no payload size for, and the notes report how many rows that is.

TSV: a file is one or more *header blocks* (`#separator`, `#fields`, `#types`, ... lines) each
followed by data lines; rotated or concatenated logs repeat the block, possibly with other
columns (`_node_name` in a cluster, `vlan`, no `local_resp` in old Bro). The file is read in
bounded blocks of lines (sniff.TextBlocks); in each we locate the `#` lines with `bytes.find`
(only header lines are visited in Python) and hand each data segment to pyarrow's CSV reader
with the field list of the header in force. Lines with the wrong number of fields are skipped
and counted. A missing `#close`, gzip (found by magic bytes) and file names with colons need
nothing special.

JSON lines are parsed by DuckDB's JSON reader (a private in-memory connection, whatever the
engine), reading only the keys we need as text and streaming the result in batches; a line that
is not valid JSON becomes an empty row, which we drop and count like a torn TSV line.
"""

from __future__ import annotations

import codecs
import re
import warnings
from pathlib import Path

from ..errors import InputError
from . import tables
from .sniff import GZIP_MAGIC

# canonical column -> Zeek field
FIELDS = {
    "ts": "ts", "src_ip": "id.orig_h", "dst_ip": "id.resp_h", "proto": "proto",
    "port": "id.resp_p", "src_port": "id.orig_p", "up_bytes": "orig_bytes", "down_bytes": "resp_bytes",
    "duration": "duration", "conn_state": "conn_state", "up_pkts": "orig_pkts", "down_pkts": "resp_pkts",
}
REQUIRED = ("ts", "src_ip", "dst_ip", "proto", "port")
_NON_SPACE = re.compile(rb"\S")


def _types():
    """Fast-path types for pyarrow (text where a value may not be a number)."""
    import pyarrow as pa

    return {"ts": pa.float64(), "port": pa.int64(), "src_port": pa.int64(),
            "up_bytes": pa.int64(), "down_bytes": pa.int64(), "duration": pa.float64(),
            "up_pkts": pa.int64(), "down_pkts": pa.int64()}


# --- TSV --------------------------------------------------------------------------------------

class _Header:
    def __init__(self):
        self.separator = "\t"
        self.unset = "-"
        self.fields: list[str] | None = None
        self.path: str | None = None

    def copy(self):
        h = _Header()
        h.separator, h.unset, h.fields, h.path = self.separator, self.unset, self.fields, self.path
        return h

    def update(self, line: bytes, path: Path):
        text = line.decode("utf-8", errors="replace").rstrip("\r")
        if text.startswith("#separator"):
            value = text[len("#separator"):].strip()
            try:
                with warnings.catch_warnings():  # an invalid escape ("\\q") warns, then passes
                    warnings.simplefilter("error")
                    sep = codecs.decode(value, "unicode_escape") if value else "\t"
            except (UnicodeDecodeError, DeprecationWarning):
                sep = value
            if len(sep) != 1:
                raise InputError(f"unsupported #separator {value!r} (one character expected)",
                                 file=str(path))
            self.separator = sep
            return
        key, _, rest = text.partition(self.separator)
        if key == "#fields":
            self.fields = rest.split(self.separator)
        elif key == "#unset_field":
            self.unset = rest
        elif key == "#path":
            self.path = rest.strip()


def _segments(data: bytes, path: Path, header: _Header):
    """Yield (start, end, header) for every run of data lines, visiting only `#` lines.

    `header` is the state carried from block to block (a header line updates it in place)."""
    pos, n = 0, len(data)
    while pos < n:
        if data[pos:pos + 1] == b"#":
            end = data.find(b"\n", pos)
            end = n if end == -1 else end
            header.update(data[pos:end], path)
            pos = end + 1
            continue
        nxt = data.find(b"\n#", pos)
        end = n if nxt == -1 else nxt + 1
        if _NON_SPACE.search(data, pos, end):  # not just blank lines (and no copy of the slice)
            yield pos, end, header.copy()
        pos = end


def read_tsv_file(path: Path, blocks, spool, file_index: int):
    """One TSV conn.log, block by block, into `spool`. Returns (rows, torn lines, canonical->field
    names, notes)."""
    header = _Header()
    rows, torn, names, notes, seen_text = 0, 0, None, [], False
    missing_bytes_noted = False
    for data in blocks:
        seen_text = seen_text or bool(_NON_SPACE.search(data))
        view = memoryview(data)
        for start, end, hdr in _segments(data, path, header):
            if hdr.fields is None:
                raise InputError("data lines before any #fields header line", file=str(path))
            if hdr.path and hdr.path != "conn":
                raise InputError(f"is a Zeek '{hdr.path}' log; flowsiem reads conn logs", file=str(path))
            pos = {f: i for i, f in enumerate(hdr.fields)}
            for canon in REQUIRED:
                if FIELDS[canon] not in pos:
                    raise InputError("required field is missing from #fields", file=str(path),
                                     column=FIELDS[canon])
            wanted = {canon: pos[f] for canon, f in FIELDS.items() if f in pos}
            if ("up_bytes" not in wanted or "down_bytes" not in wanted) and not missing_bytes_noted:
                notes.append(f"{path}: no orig_bytes/resp_bytes fields; byte counts are unknown")
                missing_bytes_noted = True
            tbl, bad = tables.read_delimited(view[start:end], path, ncols=len(hdr.fields),
                                             wanted=wanted, delimiter=hdr.separator, types=_types(),
                                             null_values=[hdr.unset], quoting=False)
            spool.add(tbl, file_index)
            rows += tbl.num_rows
            torn += bad
            names = names or {canon: FIELDS[canon] for canon in wanted}
    if not seen_text:
        raise InputError("file is empty", file=str(path))
    return rows, torn, names or dict(FIELDS), notes


# --- JSON -------------------------------------------------------------------------------------

def read_json_file(path: Path, gz: bool, spool, file_index: int):
    """One JSON-lines conn.log into `spool`, in batches. Returns (rows, unreadable lines)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = {f: "VARCHAR" for f in FIELDS.values()}
    con = duckdb.connect(config={"autoinstall_known_extensions": False})  # offline, as engine.py
    rows = bad = 0
    try:
        rel = con.sql(
            "SELECT * FROM read_json($p, format='newline_delimited', columns=$c, "
            "ignore_errors=true, compression=$z)",
            params={"p": str(path), "c": columns, "z": "gzip" if gz else "uncompressed"})
        for batch in rel.fetch_record_batch(_JSON_BATCH_ROWS):
            tbl = pa.Table.from_batches([batch])
            # ignore_errors turns a line that is not JSON into an all-null row: drop, count.
            empty = None
            for f in FIELDS.values():
                e = pc.is_null(tbl.column(f))
                empty = e if empty is None else pc.and_(empty, e)
            n_bad = pc.sum(empty).as_py() or 0
            if n_bad:
                tbl = tbl.filter(pc.invert(empty))
            bad += n_bad
            rows += tbl.num_rows
            spool.add(pa.table({canon: tbl.column(f) for canon, f in FIELDS.items()}), file_index)
    except duckdb.Error as exc:
        raise InputError(f"cannot parse JSON lines: {str(exc).splitlines()[0][:300]}",
                         file=str(path)) from None
    finally:
        con.close()
    return rows, bad


_JSON_BATCH_ROWS = 100_000  # rows of JSON parsed per batch: bounded memory for any file size


# --- both -------------------------------------------------------------------------------------

def read_zeek(files: list[Path], fmts: dict[Path, str], engine, blocks_of):
    """Read Zeek conn logs (TSV or JSON, each file by its own format) into one RawInput."""
    spool = tables.Spool(engine)
    names, notes = [], []
    for i, path in enumerate(files):
        if fmts[path] == "zeek-json":
            with open(path, "rb") as fh:
                gz = fh.read(2) == GZIP_MAGIC
            if Path(path).stat().st_size == 0:
                raise InputError("file is empty", file=str(path))
            rows, bad = read_json_file(path, gz, spool, i)
            if bad:
                notes.append(f"skipped {bad:,} unreadable line{'s' if bad != 1 else ''} in {path} "
                             f"(not a JSON object, or no conn fields)")
            names.append(dict(FIELDS))
            if rows == 0:
                notes.append(f"{path} has no records")
            continue
        rows, torn, file_names, file_notes = read_tsv_file(path, blocks_of(path), spool, i)
        notes.extend(file_notes)
        if torn:
            notes.append(tables.torn_note(torn, path))
        if rows == 0:
            notes.append(f"{path} has no records")
        names.append(file_names)
    return spool.finish(files, names, notes=notes, default_unit="s")
