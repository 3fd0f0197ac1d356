"""Which files to read, what format each one is, and their bytes (gzip undone).

Sources: a file, a glob (`days/*.parquet`, `logs/**/conn.*.log.gz`), a directory (its files,
not its subdirectories, sorted by name; hidden files skipped) or a list of those.

Formats are recognised by content, never by name alone:
  * `PAR1` magic                               -> flows-parquet
  * gzip magic (1f 8b)                         -> look at the decompressed start
  * a `#separator` or `#fields` line           -> zeek-tsv
  * a JSON object with an `id.orig_h` key      -> zeek-json
  * CSV header with `sa` and `da`, or `srcAddr` -> nfdump-csv
  * CSV header with `src_ip` and `dst_ip` (or three of the seed's column names) -> flows-csv
Zeek logs other than conn.log (dns.log, http.log ... found in the same folder) are recognised so
that a directory or glob can skip them with a note.
"""

from __future__ import annotations

import glob as _glob
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"

#: Resolved format names, grouped by the `fmt` family a user can ask for.
FAMILIES = {
    "flows": ("flows-parquet", "flows-csv"),
    "zeek": ("zeek-tsv", "zeek-json"),
    "nfdump": ("nfdump-csv",),
}
FORMATS = ("auto",) + tuple(FAMILIES) + tuple(f for fs in FAMILIES.values() for f in fs)

# Keys only conn.log has (dns.log and friends also carry id.* and proto).
_CONN_KEYS = {"conn_state", "orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts", "history",
              "orig_ip_bytes", "missed_bytes"}
_FLOWS_NAMES = {"timestamp", "ts", "src_ip", "dst_ip", "proto", "port", "up_bytes", "down_bytes"}
_GLOB_CHARS = set("*?[")
_HEAD = 64 * 1024


@dataclass
class Sniff:
    fmt: str | None           # resolved format, None when unknown
    zeek_path: str | None = None  # for Zeek logs: "conn", "dns", ... (None when not told)


# --- sources ----------------------------------------------------------------------------------


def resolve_sources(source) -> tuple[list[Path], set[Path]]:
    """Expand `source` into files. Returns (files in order, the subset named explicitly).

    Files found through a glob or a directory may be skipped later when they are not flow data;
    explicitly named files must be readable flow files.
    """
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise InputError("no input given")
    files: list[Path] = []
    explicit: set[Path] = set()
    for item in items:
        text = str(item)
        p = Path(text).expanduser()
        if p.is_dir():
            found = sorted(c for c in p.iterdir() if c.is_file() and not c.name.startswith("."))
            if not found:
                raise InputError("directory has no files", file=str(p))
            files.extend(found)
        elif p.exists():
            if not p.is_file():
                raise InputError("not a regular file", file=str(p))
            files.append(p)
            explicit.add(p)
        elif _GLOB_CHARS & set(text):
            found = sorted(Path(m) for m in _glob.glob(os.path.expanduser(text), recursive=True)
                           if Path(m).is_file())
            if not found:
                raise InputError(f"no files match '{text}'")
            files.extend(found)
        else:
            raise InputError("no such file or directory", file=text)
    seen: set[Path] = set()
    unique = []
    for f in files:  # a file named twice (a glob and a path) is read once
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    for f in unique:
        if not os.access(f, os.R_OK):
            raise InputError("permission denied", file=str(f))
    return unique, explicit


# --- bytes ------------------------------------------------------------------------------------

#: Size of the decompressed blocks text readers parse at a time: memory stays bounded by a few
#: blocks whatever the file size (a block of conn.log is ~100 k lines).
BLOCK_SIZE = 16 * 1024 * 1024


class TextBlocks:
    """A text file's (decompressed) content in blocks that end at a line end.

    Iterate to get the blocks (bytes; each ends just after a newline, except maybe the last);
    `truncated` is True afterwards when a gzip stream ended early (a log still being written:
    the complete part is kept; the torn last line is the reader's to drop). `pieces()` gives the
    decompressed bytes as they come, for a look at the start of a file."""

    def __init__(self, path: Path, size: int | None = None):
        self.path, self.size, self.truncated = Path(path), size or BLOCK_SIZE, False
        self.not_utf8 = 0          # lines left out because they are not UTF-8 text
        self.not_utf8_example: str | None = None

    def __iter__(self):
        carry = b""
        for piece in self.pieces():
            data = carry + piece if carry else piece
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            yield self._utf8(data[:cut])
        if carry:
            yield self._utf8(carry)

    def _utf8(self, block: bytes) -> bytes:
        """The block without its lines that are not UTF-8 (counted, one kept as an example): the
        parsers would otherwise fail on the whole file, or on a torn line, print a traceback."""
        try:
            block.decode("utf-8")
            return block
        except UnicodeDecodeError:
            pass
        kept = []
        for line in block.splitlines(keepends=True):
            try:
                line.decode("utf-8")
                kept.append(line)
            except UnicodeDecodeError:
                self.not_utf8 += 1
                if self.not_utf8_example is None:
                    self.not_utf8_example = line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")[:200]
        return b"".join(kept)

    def pieces(self):
        try:
            with open(self.path, "rb") as fh:
                if fh.read(2) != GZIP_MAGIC:
                    fh.seek(0)
                    while piece := fh.read(self.size):
                        yield piece
                    return
                fh.seek(0)
                yield from self._gunzip(fh)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", file=str(self.path)) from None

    def _gunzip(self, fh):
        z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        produced = started = False  # started: the current member has had input
        while True:
            raw = fh.read(max(self.size // 4, 1))
            if not raw:
                self.truncated = self.truncated or (started and not z.eof)
                return
            while raw:
                try:  # at most one block out per call, however well the input compresses
                    out = z.decompress(raw, self.size)
                except zlib.error as exc:
                    if produced:  # garbage after a complete member: keep what we have
                        self.truncated = True
                        return
                    raise InputError(f"not a valid gzip file ({exc})", file=str(self.path)) from None
                started = True
                if out:
                    produced = True
                    yield out
                if not z.eof:
                    raw = z.unconsumed_tail  # empty: this input is used up, read more
                    continue
                rest = z.unused_data  # the next member of a concatenated gzip, or padding
                if rest and not rest.strip(b"\0"):
                    return
                z, started, raw = zlib.decompressobj(16 + zlib.MAX_WBITS), False, rest


def read_head(path: Path, size: int = _HEAD) -> bytes:
    """The first `size` bytes of the (decompressed) content."""
    head = b""
    for piece in TextBlocks(path, size).pieces():
        head += piece
        if len(head) >= size:
            break
    return head[:size]


# --- sniffing ---------------------------------------------------------------------------------

def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def csv_header(line: str) -> list[str]:
    """Column names of a CSV header line, lower-cased, quotes and blanks removed."""
    return [c.strip().strip('"').strip().lower() for c in line.lstrip("\ufeff").split(",")]


def _zeek_tsv_path(text: str) -> str | None:
    fields = None
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, _, rest = line.partition("\t" if "\t" in line else " ")
        if key == "#path":
            return rest.strip()
        if key == "#fields":
            fields = set(rest.split("\t"))
    if fields is not None:
        return "conn" if fields & _CONN_KEYS else "unknown"
    return None


def _zeek_json_path(line: str) -> str | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("_path"), str):
        return obj["_path"]
    return "conn" if set(obj) & _CONN_KEYS else "unknown"


def sniff(path: Path, head: bytes | None = None) -> Sniff:
    """Recognise the format of one file from its content."""
    head = read_head(path) if head is None else head
    if head[:4] == PARQUET_MAGIC:
        return Sniff("flows-parquet")
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    line = first_line(text)
    if line.startswith("#separator") or line.startswith("#fields"):
        return Sniff("zeek-tsv", _zeek_tsv_path(text.lstrip()))
    if line.startswith("{") and '"id.orig_h"' in line:
        return Sniff("zeek-json", _zeek_json_path(line))
    cols = set(csv_header(line)) if "," in line else set()
    if ({"sa", "da"} <= cols) or ("srcaddr" in cols and "dstaddr" in cols):
        return Sniff("nfdump-csv")
    # The seed layout; three of its names are enough, so that a file missing one column is read
    # as flows CSV and fails naming that column instead of "unknown format".
    if {"src_ip", "dst_ip"} <= cols or len(cols & _FLOWS_NAMES) >= 3:
        return Sniff("flows-csv")
    return Sniff(None)


def resolve_forced(path: Path, family: str, head: bytes) -> str:
    """The concrete format of a file when the user named the family (--format zeek, ...)."""
    if family not in FAMILIES:  # a concrete format such as "zeek-json"
        if (head[:4] == PARQUET_MAGIC) != (family == "flows-parquet"):
            what = "a parquet file" if head[:4] == PARQUET_MAGIC else "not a parquet file"
            raise InputError(f"is {what}, not {family}", file=str(path))
        return family
    is_parquet = head[:4] == PARQUET_MAGIC
    if family == "flows":
        return "flows-parquet" if is_parquet else "flows-csv"
    if is_parquet:
        raise InputError(f"is a parquet file, not {family} text (use --format flows or auto)", file=str(path))
    if family == "zeek":
        line = first_line(head.decode("utf-8", errors="replace").lstrip("\ufeff"))
        return "zeek-json" if line.startswith("{") else "zeek-tsv"
    return "nfdump-csv"
