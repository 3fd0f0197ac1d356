"""nfdump CSV (`nfdump -r FILE -o csv`), both header generations.

nfdump 1.6:  ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,...
             ts like `2019-03-05 10:00:01` (or `.123`); pr as text (`TCP`) or a number;
             the output may end with a `Summary` line followed by totals - not flows.
nfdump 1.7:  firstSeen,lastSeen,duration,proto,srcAddr,dstAddr,srcPort,dstPort,...,
             inPackets,inBytes,outPackets,outBytes,...   (proto as a number)

Mapping: sa/srcAddr -> src_ip, da/dstAddr -> dst_ip, dp/dstPort -> port, sp/srcPort -> src_port,
pr/proto -> proto (`TCP`/6 -> tcp), ibyt/inBytes -> up_bytes, obyt/outBytes -> down_bytes.
A missing byte column becomes 0 (unidirectional NetFlow has no reverse bytes) and is noted.
nfdump prints local wall-clock time of the machine that ran it; times are kept as printed.
Header names are matched case-insensitively; the header may contain duplicate names.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from . import tables

ALIASES = {
    "ts": ("ts", "firstseen", "tstart", "first_seen", "start"),
    "src_ip": ("sa", "srcaddr", "src_addr", "srcip"),
    "dst_ip": ("da", "dstaddr", "dst_addr", "dstip"),
    "proto": ("pr", "proto", "protocol"),
    "port": ("dp", "dstport", "dst_port"),
    "src_port": ("sp", "srcport", "src_port"),
    "up_bytes": ("ibyt", "inbytes", "byt", "bytes", "in_bytes"),
    "down_bytes": ("obyt", "outbytes", "out_bytes"),
    "duration": ("td", "duration"),
    "up_pkts": ("ipkt", "inpkt", "in_pkts"),
    "down_pkts": ("opkt", "outpkt", "out_pkts"),
}
REQUIRED = ("ts", "src_ip", "dst_ip", "proto", "port")


def _until_summary(bodies):
    """The blocks of text up to nfdump's trailing `Summary` block (which is not flows)."""
    at_line_start = True
    for data in bodies:
        data = bytes(data)
        idx = 0 if at_line_start and data.startswith(b"Summary") else data.find(b"\nSummary")
        if idx != -1:
            yield data[:idx + 1 if idx else 0]
            return
        at_line_start = data.endswith(b"\n")
        yield data


def read_nfdump(files: list[Path], engine, blocks_of):
    import pyarrow as pa

    spool = tables.Spool(engine)
    names, notes = [], []
    for i, path in enumerate(files):
        header, bodies = tables.header_and_bodies(_until_summary(blocks_of(path)), path)
        lower = [h.lower() for h in header]
        idx, found = {}, {}
        for canon, aliases in ALIASES.items():
            for a in aliases:
                if a in lower:
                    idx[canon] = lower.index(a)
                    found[canon] = header[idx[canon]]
                    break
        for canon in REQUIRED:
            if canon not in idx:
                want = ALIASES[canon][0]
                raise InputError(f"required column is missing (nfdump '{want}' or "
                                 f"'{ALIASES[canon][1]}'); the file has: {', '.join(header[:20])}",
                                 file=str(path), column=want)
        names.append(found)
        types = {"ts": None, "port": pa.int64(), "src_port": pa.int64(),
                 "up_bytes": pa.int64(), "down_bytes": pa.int64(), "duration": pa.float64(),
                 "up_pkts": pa.int64(), "down_pkts": pa.int64()}
        torn = 0
        for body in bodies:
            tbl, bad = tables.read_delimited(body, path, ncols=len(header), wanted=idx,
                                             delimiter=",", types=types)
            torn += bad
            for canon in ("up_bytes", "down_bytes"):
                if canon not in idx:
                    zero = pa.repeat(pa.scalar(0, pa.int64()), tbl.num_rows)
                    tbl = tbl.set_column(tbl.column_names.index(canon), canon, zero)
            spool.add(tbl, i)
        if torn:
            notes.append(tables.torn_note(torn, path))
        for canon, label in (("up_bytes", "ibyt/inBytes"), ("down_bytes", "obyt/outBytes")):
            if canon not in idx:
                notes.append(f"{path}: no {label} column; {canon} set to 0")
    return spool.finish(files, names, notes=notes)
