"""The canonical flow table every reader produces and every analysis consumes.

One row per flow, as seen from the initiator:
  ts          timestamp (no time zone; day-relative inputs are placed on --date)
  src_ip      initiator address, IPv4 or IPv6 text
  dst_ip      responder address
  proto       lower-case transport name: "tcp", "udp", "icmp", ...
  port        responder (destination) port; null where the protocol has none
  src_port    initiator port; null where the input does not carry it
  up_bytes    bytes sent by the initiator (Zeek orig_bytes); null when unknown
  down_bytes  bytes sent by the responder (Zeek resp_bytes); null when unknown
Optional (null when the input does not carry them; never required by any rule):
  duration    seconds from first to last packet (Zeek duration, nfdump td)
  conn_state  Zeek's connection state (S0, REJ, SF, ...), upper case
  up_pkts     packets sent by the initiator (Zeek orig_pkts, nfdump ipkt)
  down_pkts   packets sent by the responder (Zeek resp_pkts, nfdump opkt)
"""

from __future__ import annotations

CANONICAL_COLUMNS: tuple[str, ...] = (
    "ts", "src_ip", "dst_ip", "proto", "port", "src_port", "up_bytes", "down_bytes",
    "duration", "conn_state", "up_pkts", "down_pkts",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("duration", "conn_state", "up_pkts", "down_pkts")

# Ibis type strings; kept as text so importing this module stays cheap.
CANONICAL_TYPES: dict[str, str] = {
    "ts": "timestamp",
    "src_ip": "string",
    "dst_ip": "string",
    "proto": "string",
    "port": "int32",
    "src_port": "int32",
    "up_bytes": "int64",
    "down_bytes": "int64",
    "duration": "float64",
    "conn_state": "string",
    "up_pkts": "int64",
    "down_pkts": "int64",
}


def canonical_schema():
    import ibis

    return ibis.schema(CANONICAL_TYPES)


def arrow_schema():
    """The same schema as a pyarrow schema (for readers that build Arrow batches)."""
    import pyarrow as pa

    return pa.schema([
        ("ts", pa.timestamp("us")),
        ("src_ip", pa.string()),
        ("dst_ip", pa.string()),
        ("proto", pa.string()),
        ("port", pa.int32()),
        ("src_port", pa.int32()),
        ("up_bytes", pa.int64()),
        ("down_bytes", pa.int64()),
        ("duration", pa.float64()),
        ("conn_state", pa.string()),
        ("up_pkts", pa.int64()),
        ("down_pkts", pa.int64()),
    ])


def conform(table):
    """Cast/order an Ibis table to the canonical schema (missing optional columns -> null)."""
    import ibis

    cols = {}
    for name, typ in CANONICAL_TYPES.items():
        if name in table.columns:
            cols[name] = table[name].cast(typ)
        else:
            cols[name] = ibis.null().cast(typ)
    return table.select(**cols)
