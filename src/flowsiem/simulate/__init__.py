"""Synthetic company days with known anomalies, in the seed's layout.

    from flowsiem import simulate
    simulate.SCENARIOS                     # name -> Scenario(.name, .description, knobs)
    simulate.generate("obvious", seed=3, scale=1.0, out_dir="days/")

writes, in out_dir:

  data.parquet          a clean day of the internal network (sources are internal hosts)
  test.parquet          the next day: same network, injected anomalies and benign changes
  servers.parquet       external clients -> the company's public servers, test day (external abuse)
  servers_data.parquet  the same client population on the clean day (a baseline for servers.parquet)
  truth.json            the network, its servers, every anomaly and benign change (tests/benchmarks only)

Columns: timestamp (int64, hundredths of a second since midnight), src_ip, dst_ip, proto ("tcp"/"udp"),
port (int32, destination), up_bytes, down_bytes (int64); rows sorted by timestamp.

truth.json:

  scenario, seed, scale, description, timestamp_unit, files{data,test,servers,servers_data},
  rows{file: n}, internal_networks ["a.b.c.0/24"], internal_network_kind (private 10/8 | 172.16/12 |
  192.168/16 | public FCCN block), internal_servers [{ip, services [{proto, port}]}], internal_hosts
  [ip] (the clean day's hosts), public_servers [{ip, services}],
  anomalies [{family: botnet|exfiltration|cnc|external_abuse, kind, hosts [ip], details {strength
      0..1, kind-specific knobs (dst_ip / resolver_ip, proto, port, period_s, window_hours, ...),
      flows, up_bytes, down_bytes actually written}}],
  benign [{kind: new_device|volume_increase|new_popular_destinations|late_worker|
      busy_external_client|new_cdn_addresses, hosts [ip], details {...}}],
  world {hosts, external_destinations, external_clients, absent_on_test_day, search_crawlers,
      expected flows, rhythm and byte medians}, generator {version, seconds}.

  "hosts" are internal sources for botnet/exfiltration/cnc and external clients for external_abuse.
  For external_abuse entries the client's flows in servers.parquet are exactly details.flows (a
  client of the clean day that turns rogue loses its ordinary traffic that day).

Determinism: same scenario + seed + scale -> byte-identical files. data.parquet and
servers_data.parquet depend on seed and scale only (the same for every scenario).

Modules: catalog (real public address blocks), model (network, hosts, rhythms, vectorised flow
draws), inject (anomalies and benign changes), scenarios, generate (streaming writer, truth.json).
"""

from __future__ import annotations

from .generate import arrow_schema, generate
from .scenarios import BENIGN_KINDS, FAMILY_KINDS, SCENARIOS, Scenario

__all__ = ["SCENARIOS", "Scenario", "generate", "arrow_schema", "FAMILY_KINDS", "BENIGN_KINDS"]
