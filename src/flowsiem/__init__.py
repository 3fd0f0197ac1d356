"""flowsiem: a SIEM for network flow records.

Layout (where things go):
  io/         readers: every input format -> one canonical flow table (schema.py)
  enrich/     country / ASN per unique IP
  engine.py   the Ibis backend (DuckDB by default, PySpark for clusters)
  network.py  internal networks, traffic classes, internal servers
  profile.py  the "non-anomalous analysis": statistics + per-host baselines
  simulate/   synthetic company days with injected anomalies (truth.json)
  cli.py      the `flowsiem` command
"""

__version__ = "0.1.0"
