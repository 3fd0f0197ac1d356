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
  192.168/16 | public FCCN block), internal_servers [{ip, services [{proto, port}]}] (DNS, HTTPS and,
  in most companies, a backup NAS), internal_hosts [ip] (the clean day's hosts),
  public_servers [{ip, services}] (tcp/443; some also expose tcp/22 to administrators),
  anomalies [{family, kind, hosts [ip], details {strength 0..1, kind-specific knobs (dst_ip /
      resolver_ip, proto, port, period_s, jitter, timing, window_hours, ...), flows, up_bytes,
      down_bytes actually written}}], family -> kinds:
        botnet          p2p_mesh | star (hosts = pollers + the hub, a workstation acting as relay) |
                        slow_star (tcp/445 or 139, one poll per 15-30 min) | coordinated_beacon
        exfiltration    https_upload (timing spread | burst | night) | dns_tunnel
        cnc             dns_new_resolver (1-3 hosts, same outside resolver) | dns_off_hours
        external_abuse  flood | bulk_download | off_hours | unusual_origin | low_and_slow |
                        deep_night | brute_force
  benign [{kind, hosts [ip], details {days: "both" | "test", ...; flows, up_bytes, down_bytes
      (test day) and flows_clean_day when the entry has flows of its own}}]:
        days "both" (the company's routines, present in data.parquet too; built from the seed):
          periodic_updater, ntp_sync, monitoring_poller, nas_backup, cloud_sync, public_resolver,
          night_worker (evening shift), search_crawler, uptime_monitor, evening_client, ssh_admin
        days "test" (the test day's look-alikes, drawn by the scenario): new_device (office,
          evening or overnight rhythm), volume_increase, new_popular_destinations, late_worker,
          night_worker, busy_external_client, new_cdn_addresses, periodic_updater (an agent rolled
          out today), monitoring_poller (deployed today), cloud_backup, public_resolver (new today),
          shared_service, evening_client, late_night_client
  world {hosts, external_destinations, external_clients, absent_on_test_day, search_crawlers,
      machines_left_on, monitoring_host, nas, expected flows, rhythm and byte medians},
  generator {version, seconds}.

  "hosts" of anomalies are exactly the devices an analyst should flag: internal sources (and star
  hubs) for botnet/exfiltration/cnc, external clients for external_abuse. "hosts" of benign entries
  are the look-alikes; a routine's hosts exclude today's anomalous hosts and hosts absent today.
  For external_abuse entries the client's flows in servers.parquet are exactly details.flows (a
  client of the clean day that turns rogue loses its ordinary traffic that day).

Determinism: same scenario + seed + scale -> byte-identical files. data.parquet and
servers_data.parquet depend on seed and scale only (the same for every scenario).
generate(..., test_day_only=True) writes only test.parquet, servers.parquet and truth.json (for
callers that keep one clean day per seed and scale, as bench/quality.py does): byte-identical to a
full run's (truth.json but for its generator.seconds timing), about half the writing time.

Modules: catalog (real public address blocks), model (network, hosts, rhythms, vectorised flow
draws), routines (behaviour present on both days: agents, NTP, monitoring, backups, sync, ...),
streams (Poisson channels, timers, sessions), inject (anomalies and the test day's benign changes),
scenarios, generate (streaming writer, truth.json).
"""

from __future__ import annotations

from .generate import arrow_schema, generate
from .scenarios import BENIGN_KINDS, FAMILY_KINDS, SCENARIOS, Scenario

__all__ = ["BENIGN_KINDS", "FAMILY_KINDS", "SCENARIOS", "Scenario", "arrow_schema", "generate"]
