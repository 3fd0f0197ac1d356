"""`flowsiem hunt`: the capture-referenced rules on one hand-built capture with no clean day, and
on the real labelled captures (../shared/fixtures, outside the repo).

One capture holds every finding and, next to each, the benign look-alike it must stay quiet on:

  finding                                          look-alike (quiet)
  beacon: one host, tcp/443 every 5 min, all day    time sync (udp/123 every 64 s); an updater
                                                    polled on a timer by most hosts
  C2 that never answers: S0 every 2 min, all day    an outage: most hosts failing to one server
  vertical scan: 200 ports of one host, refused     a client using 5 services of the web server
  one-way upload: 100 MB out, 5 kB back             a backup most hosts send to; a video call
  DGA-like burst: 300 lookups, none followed        a browser burst, each lookup followed
  brute force: 120 logins of 1179 B, 20 a minute    an uptime monitor (1 a minute); a busy client
                                                    with varied requests
  outside probe: 300 ports of the web server        --
  own resolver: DNS on a timer to a network         a public resolver of a company all hosts use,
  nobody reaches                                    at random times (a notice)

A device counts as flagged for a family when it has an alert of medium severity or more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import HOUR, NET, POPULAR, WEB_SERVER, DNS_SERVER, hosts, make_office_day, rows
from test_hard_cases import _periodic

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
MINUTE = 6000  # centiseconds
H = hosts(30)

BEACONER, C2 = H[4], "45.33.2.10"
TIMESYNC, NTP = H[5], "162.159.200.1"
UPDATER = "20.190.1.1"
RETRIER, DEAD_C2 = H[6], "41.108.179.197"
OUTAGE = "23.45.67.89"
SCANNER, SCANNED = H[7], H[19]
SERVICES_USER = H[8]
EXFIL, DROP = H[9], "203.0.113.50"
BACKUP = "52.95.110.1"
CALLER, TURN = H[10], "52.113.1.1"
DGA = H[11]
BROWSER = H[12]
OWN_RESOLVER, ROGUE_DNS = H[2], "185.220.101.5"     # malware's own resolver (a network nobody reaches)
PUBLIC_DNS_USER, GOOGLE_DNS = H[3], "8.8.8.8"     # a resolver set by hand: Google, whom every host reaches
QUAD9 = "9.9.9.9"                                  # tried by hand as well by both of them
GUESSER, MONITOR, BUSY = "138.197.148.152", "34.120.1.1", "82.155.1.1"
PROBER = "104.156.155.13"


def _state(df, state):
    return df.assign(conn_state=state)


def _capture() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    day = make_office_day(seed=3, n_hosts=30).assign(conn_state="SF")
    parts = [day]
    # beacon and its look-alikes
    parts.append(rows(_periodic(300, 0, 24, seed=1, jitter=0.1), BEACONER, C2, up=300, down=200))
    parts.append(rows(_periodic(64, 0, 24, seed=2, jitter=0.02), TIMESYNC, NTP, proto="udp", port=123, up=48, down=48))
    parts += [rows(_periodic(1800, 0, 24, seed=10 + i, jitter=0.1), h, UPDATER, up=900, down=4000) for i, h in enumerate(H[13:29])]
    # C2 that never answers, and an outage
    parts.append(_state(rows(_periodic(120, 0, 24, seed=3), RETRIER, DEAD_C2, port=1177, up=0, down=0), "S0"))
    parts += [_state(rows(np.sort(rng.integers(0, 24 * HOUR, 40)), h, OUTAGE, up=0, down=0), "S0") for h in H[13:29]]
    # scan, and a client of several services
    scan = rows(10 * HOUR + np.arange(200) * 50, SCANNER, SCANNED, up=0, down=0).assign(port=np.arange(1, 201))
    parts.append(_state(scan, "REJ"))
    parts.append(rows(9 * HOUR + np.arange(50) * 3000, SERVICES_USER, WEB_SERVER).assign(port=np.tile([22, 80, 443, 445, 3389], 10)))
    # one-way upload, a shared backup, a call
    parts.append(rows(14 * HOUR + np.arange(5) * MINUTE * 10, EXFIL, DROP, up=20_000_000, down=1000))
    parts += [rows([2 * HOUR + i * 100], h, BACKUP, up=20_000_000, down=2000) for i, h in enumerate(H[13:29])]
    parts.append(rows([11 * HOUR], CALLER, TURN, proto="udp", port=3478, up=300_000_000, down=400_000_000))
    # DGA-like burst at 02:00 (nothing else then), and a browser burst with its connections
    dga_ts = 2 * HOUR + np.sort(rng.integers(0, 3 * MINUTE, 300))
    parts.append(rows(dga_ts, DGA, DNS_SERVER, proto="udp", port=53, up=30, down=100))
    web_ts = 10 * HOUR + np.arange(250) * 110
    parts.append(rows(web_ts, BROWSER, DNS_SERVER, proto="udp", port=53, up=30, down=200))
    parts.append(rows(web_ts + 50, BROWSER, np.array(POPULAR)[np.arange(250) % len(POPULAR)]))
    # resolvers: one nobody reaches, and a public one of a company everybody uses
    parts.append(rows(_periodic(600, 0, 24, seed=4, jitter=0.05), OWN_RESOLVER, ROGUE_DNS, proto="udp", port=53,
                      up=40, down=120))
    parts.append(rows(np.sort(rng.integers(9 * HOUR, 17 * HOUR, 60)), PUBLIC_DNS_USER, GOOGLE_DNS, proto="udp",
                      port=53, up=40, down=120))
    # ... each host also tries a second outside resolver by hand, at random times
    for h, dns in ((OWN_RESOLVER, QUAD9), (PUBLIC_DNS_USER, QUAD9)):
        parts.append(rows(np.sort(rng.integers(9 * HOUR, 17 * HOUR, 20)), h, dns, proto="udp", port=53, up=40, down=120))
    # outside: password guessing, an uptime monitor, a busy client, a probe
    parts.append(rows(3 * HOUR + np.arange(120) * 300, GUESSER, WEB_SERVER, port=22, up=1179, down=2000))
    parts.append(rows(np.arange(1440) * MINUTE, MONITOR, WEB_SERVER, up=400, down=5000))
    busy = rows(12 * HOUR + np.arange(300) * 600, BUSY, WEB_SERVER, down=30000)
    parts.append(busy.assign(up_bytes=rng.lognormal(np.log(3000), 0.8, len(busy)).astype(np.int64)))
    probe = rows(20 * HOUR + np.arange(300) * 20, PROBER, WEB_SERVER, up=0, down=0).assign(port=np.arange(1, 301))
    parts.append(_state(probe, "S0"))
    out = pd.concat(parts, ignore_index=True)
    out["timestamp"] = out.timestamp.clip(0, 24 * HOUR - 1)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def hunted(tmp_path_factory):
    from flowsiem.hunt import HuntOptions, hunt

    d = tmp_path_factory.mktemp("hunt")
    _capture().to_parquet(d / "capture.parquet", index=False)
    return hunt(d / "capture.parquet", d / "out", options=HuntOptions(examples=0))


@pytest.fixture(scope="module")
def engine():
    from flowsiem.engine import connect

    return connect("duckdb")


def _flagged(res, family=None, rule_id=None):
    return {a.source_ip for a in res.alerts if a.actionable
            and (family is None or a.rule.family == family) and (rule_id is None or a.rule.id == rule_id)}


def test_only_capture_rules_run_without_a_baseline(hunted):
    from flowsiem.rules import load_rules

    specs = load_rules()
    assert hunted.rules_run and all(specs[r].reference == "capture" for r in hunted.rules_run)


def test_beacon_found_time_sync_and_shared_updater_quiet(hunted):
    beacon = _flagged(hunted, rule_id="cnc.beacon")
    assert BEACONER in beacon
    assert TIMESYNC not in beacon and not beacon & set(H[13:29])


def test_unanswered_c2_found_outage_quiet(hunted):
    got = _flagged(hunted, rule_id="cnc.unanswered")
    assert got == {RETRIER}


def test_scan_found_ordinary_client_quiet(hunted):
    got = _flagged(hunted, rule_id="botnet.scan")
    assert got == {SCANNER}
    (a,) = [a for a in hunted.alerts if a.rule.id == "botnet.scan"]
    assert a.details["shape"] == "vertical" and a.destination_ip == SCANNED


def test_one_way_upload_found_backup_and_call_quiet(hunted):
    assert _flagged(hunted, family="exfiltration") == {EXFIL}


def test_dga_burst_found_browser_burst_quiet(hunted):
    assert _flagged(hunted, rule_id="cnc.dns_burst") == {DGA}


def test_brute_force_found_monitor_and_busy_client_quiet(hunted):
    assert _flagged(hunted, rule_id="external_abuse.brute_force") == {GUESSER}


def test_rare_resolver_found_public_resolver_a_notice(hunted):
    assert _flagged(hunted, rule_id="cnc.rare_resolver") == {OWN_RESOLVER}
    notices = {a.source_ip for a in hunted.alerts if a.rule.id == "cnc.rare_resolver" and not a.actionable}
    assert PUBLIC_DNS_USER in notices
    # one alert per host, on its most telling resolver; the others are related addresses
    by_host = {}
    for a in hunted.alerts:
        if a.rule.id == "cnc.rare_resolver":
            by_host.setdefault(a.source_ip, []).append(a)
    (own,), (public,) = by_host[OWN_RESOLVER], by_host[PUBLIC_DNS_USER]
    assert own.destination_ip == ROGUE_DNS and own.actionable and own.related == [QUAD9]
    assert public.destination_ip in {GOOGLE_DNS, QUAD9} and not public.actionable
    assert {public.destination_ip, *public.related} == {GOOGLE_DNS, QUAD9}
    assert "1 other outside resolver" in own.message


def test_outside_probe_found(hunted):
    assert PROBER in _flagged(hunted, rule_id="external_abuse.probe")
    assert not _flagged(hunted, rule_id="external_abuse.probe") & {GUESSER, MONITOR, BUSY}


def test_no_false_positive_among_the_office(hunted):
    """Every other internal host is ordinary: nothing at medium."""
    expected = {BEACONER, RETRIER, SCANNER, EXFIL, DGA, OWN_RESOLVER, GUESSER, PROBER}
    assert _flagged(hunted) == expected


def test_evidence_names_reference_and_numbers(hunted):
    (a,) = [a for a in hunted.alerts if a.rule.id == "cnc.beacon" and a.source_ip == BEACONER]
    assert "every ~5 min" in a.message and C2 in a.message
    assert any(e.metric.startswith("chance") and e.observed <= e.threshold for e in a.evidence)


# --- the network model of a capture ----------------------------------------------------------------

def test_capture_networks_public_host_seen_from_its_interface(engine):
    import ibis

    from flowsiem.hunt import capture_networks

    t = ibis.memtable(pd.DataFrame({"src_ip": ["147.32.83.165"] * 5 + ["104.156.155.13", "79.124.62.34"],
                                    "dst_ip": ["8.8.8.8", "1.1.1.1", "3.3.3.3", "4.4.4.4", "5.5.5.5"] + ["147.32.83.165"] * 2}))
    assert capture_networks(t).cidrs == ["147.32.83.165/32"]
    t2 = ibis.memtable(pd.DataFrame({"src_ip": ["138.197.148.152"] * 3, "dst_ip": ["172.31.5.68"] * 3}))
    assert capture_networks(t2).cidrs == ["172.31.5.0/24"]


def test_impossible_byte_counts_become_unknown(engine, tmp_path):
    """Zeek counts bytes from sequence numbers: 700 MB in 19 packets is an artefact, not an upload."""
    from flowsiem.io import read_flows

    p = tmp_path / "flows.csv"
    pd.DataFrame({"timestamp": [1.0, 2.0], "src_ip": ["10.0.0.1"] * 2, "dst_ip": ["1.2.3.4"] * 2,
                  "proto": ["tcp"] * 2, "port": [80, 80], "up_bytes": [700_518_728, 5000],
                  "down_bytes": [30798, 100], "up_pkts": [19, 10], "down_pkts": [25, 5]}).to_csv(p, index=False)
    res = read_flows(str(p), engine, time_unit="s")
    got = res.table.order_by("ts").to_pandas()
    assert pd.isna(got.up_bytes[0]) and got.up_bytes[1] == 5000
    assert any("more bytes than" in n for n in res.notes)


# --- real captures ----------------------------------------------------------------------------------

LABELLED = FIXTURES / "zeek-labelled"
needs_fixtures = pytest.mark.skipif(not LABELLED.exists(), reason="../shared/fixtures not present")


def _hunt_file(path, tmp_path):
    from flowsiem.hunt import HuntOptions, hunt

    return hunt(str(path), tmp_path / "out", options=HuntOptions(examples=1))


@needs_fixtures
def test_njrat_retries_found_on_the_real_capture(tmp_path):
    res = _hunt_file(LABELLED / "ctu230-njrat-c2" / "conn.log", tmp_path)
    top = [d for d in res.devices if d["severity"] != "low"]
    assert top and top[0]["ip"] == "192.168.1.115" and "cnc" in top[0]["families"]


@needs_fixtures
def test_attacked_host_is_not_compromised_its_attackers_are_found(tmp_path):
    res = _hunt_file(LABELLED / "ctu-normal43-day1" / "conn.log.labeled", tmp_path)
    victim = {a.rule.family for a in res.alerts if a.source_ip == "147.32.83.165" and a.actionable}
    assert not victim & {"botnet", "exfiltration", "cnc"}
    assert "104.156.155.13" in _flagged(res, family="external_abuse")


@needs_fixtures
def test_clean_ubuntu_capture_has_nothing_at_medium(tmp_path):
    res = _hunt_file(LABELLED / "ubuntu-benign-20230220" / "conn.log.labeled", tmp_path)
    assert not _flagged(res)


@needs_fixtures
def test_hunt_cli_on_a_zeek_file(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "flowsiem.cli", "hunt",
                        str(LABELLED / "rita-proxy-beacon" / "conn.log"), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "judge change from a clean day" in r.stderr
    first = (out / "devices.csv").read_text().splitlines()[1]
    assert first.startswith("10.136.0.18,medium,cnc")
    alert = json.loads((out / "alerts.jsonl").read_text().splitlines()[0])
    assert alert["rule"]["id"] == "cnc.beacon" and alert["destination"]["ip"] == "10.136.0.16"


def test_a_fleet_without_name_lookups_is_not_deployed_software(tmp_path):
    """Three hosts on one timer to one company's service: software deployed on several machines
    (a notice) when its check-ins follow DNS lookups, as software finding its servers by name
    does; the same fleet with no lookup before its check-ins polls an address written into it:
    an implant on each machine, at medium."""
    from conftest import with_lookups
    from flowsiem.hunt import HuntOptions, hunt

    implants, agents = H[20:23], H[24:27]
    parts = [make_office_day(seed=3, n_hosts=30)]
    parts += [rows(_periodic(600, 0, 24, seed=40 + i, jitter=0.05), h, "52.95.110.77", up=700, down=900)
              for i, h in enumerate(implants)]
    parts += [with_lookups(rows(_periodic(900, 0, 24, seed=50 + i, jitter=0.05), h, "20.190.1.7", up=900, down=4000),
                           share=0.4, seed=i) for i, h in enumerate(agents)]
    cap = pd.concat(parts, ignore_index=True).sort_values("timestamp", kind="stable")
    cap.to_parquet(tmp_path / "c.parquet", index=False)
    res = hunt(tmp_path / "c.parquet", tmp_path / "out", options=HuntOptions(examples=0))
    beacons = {a.source_ip: a for a in res.alerts if a.rule.id == "cnc.beacon"}
    assert set(implants) <= _flagged(res, rule_id="cnc.beacon")
    assert all("written into it" in beacons[h].message for h in implants)
    assert set(agents) <= set(beacons) and not set(agents) & _flagged(res)
    assert all("software deployed on several machines" in beacons[h].message for h in agents)
