"""The cases the rules used to get wrong (issue 6), each on a small hand-built day.

Quality is what an analyst must act on: a device counts as flagged for a family when it has an
alert of that family at medium severity or more; low alerts are notices. One office day (30
hosts, 08-19 h) and one public-server client population carry every case; each test names the
class it covers.

  1  DNS beacons of several hosts to one outside resolver: C&C over DNS, not a botnet
  2  a bulk upload to the service the host syncs to every day, in its working hours: a notice
  3  a public resolver queried at irregular, user-driven times: a notice
  4  a host new today, DNS-heavier than most, working into the evening: not C&C
  5  human but unusual hours (an evening home user, a late worker): not abuse
  6  a new client a little busier than the busiest client of the baseline day: not a flood
  7  the hub of a star is flagged; a slow star on a file-sharing port is found
  8  low and slow outside clients: rare origin around the clock; deep-night only
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import HOUR, NET, POPULAR, PUBLIC_SERVER, hosts, make_office_day, rows

h = hosts()
BEACONERS = [h[0], h[1], h[2]]            # 1: poll 45.33.32.156 on udp/53 every 5 minutes
C2_RESOLVER = "45.33.32.156"
BULK_SYNC = h[3]                          # 2: syncs 3 MB to DROPBOX daily; today 12 MB more, 10-16 h
SYNC = "162.125.19.131"
PUBLIC_DNS = h[4]                         # 3: 40 lookups to 8.8.8.8 at random times, 09-18 h
NEW_EVENING = f"{NET}.150"                # 4: new today, 16-24 h, more DNS than most hosts
POLLERS = [h[20], h[21], h[22], h[23]]    # 7: poll HUB on tcp/445 every 20 minutes, 08-18 h
HUB = h[28]
SHARERS = [(h[10], h[11]), (h[12], h[13]), (h[14], h[15])]  # tcp/445 is an established peer service

EVENING = "85.241.3.3"                    # 5: a busy evening home user (60 visits, 19-23 h), new
LATE = "85.241.4.4"                       # 5: a late worker: 40 visits 10-18 h and 20 at 00-02 h, new
BUSY_NEW = "85.241.5.5"                   # 6: a new client 1.6x the busiest client of the baseline day
LOW_SLOW = "5.16.183.107"                 # 8: RU, an ordinary 48 visits spread evenly over 24 h
DEEP_NIGHT = "85.241.6.6"                 # 8: 12 visits between 02 and 05 h, nothing else


def _periodic(period_s, start_h, end_h, seed, jitter=0.05):
    rng = np.random.default_rng(seed)
    n = int((end_h - start_h) * 3600 / period_s)
    ts = start_h * HOUR + rng.uniform(0, period_s * 100) + np.cumsum(period_s * 100 * (1 + jitter * rng.standard_normal(n)))
    return ts[ts < end_h * HOUR].astype(np.int64)


def _random(n, start_h, end_h, seed):
    return np.sort(np.random.default_rng(seed).integers(int(start_h * HOUR), int(end_h * HOUR), n))


def _office_days():
    base, test = make_office_day(seed=1), make_office_day(seed=2)
    share = [rows(_random(12, 9, 17, 40 + i), a, b, port=445, up=3000, down=90000) for i, (a, b) in enumerate(SHARERS)]
    sync = [rows(_random(20, 9, 18, 60 + i), BULK_SYNC, SYNC, up=150_000, down=3000) for i in range(2)]
    base = pd.concat([base, *share, sync[0]], ignore_index=True)
    extra = [rows(_periodic(300, 0, 24, seed=1 + i), src, C2_RESOLVER, proto="udp", port=53, up=150, down=210)
             for i, src in enumerate(BEACONERS)]
    extra += [sync[1], rows(_random(12, 10, 16, 5), BULK_SYNC, SYNC, up=1_000_000, down=9000)]
    extra.append(rows(_random(40, 9, 18, 6), PUBLIC_DNS, "8.8.8.8", proto="udp", port=53, up=70, down=180))
    newcomer = make_office_day(seed=9)
    newcomer = newcomer[newcomer.src_ip == f"{NET}.7"].assign(src_ip=NEW_EVENING)
    newcomer["timestamp"] = newcomer.timestamp + 8 * HOUR
    dns = newcomer[newcomer.port == 53]
    extra += [newcomer, dns.assign(timestamp=lambda d: d.timestamp + 4100)]  # twice the usual lookups
    extra += [rows(_periodic(1200, 8, 18, seed=20 + i), src, HUB, port=445, up=600, down=900)
              for i, src in enumerate(POLLERS)]
    test = pd.concat([test, *extra], ignore_index=True)
    clip = lambda d: d.assign(timestamp=d.timestamp.clip(0, 24 * HOUR - 1)).sort_values("timestamp", kind="stable")  # noqa: E731
    return clip(base), clip(test)


def _population(seed, n_day=240, n_evening=90, heavy=4):
    """Clients of the public server: most visit in the afternoon, a third of them in the evening
    (at home, fewer visits each), and a few heavy regulars (offices behind one address)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_day + n_evening + heavy):
        c = f"82.155.{100 + i // 200}.{i % 200 + 1}"
        r = np.random.default_rng(5000 + i)
        if i < n_day:
            n, centre, width = int(r.integers(30, 90)), 14, 3
        elif i < n_day + n_evening:
            n, centre, width = int(r.integers(5, 25)), 21, 1.3
        else:
            n, centre, width = int(r.integers(300, 400)), 13, 2.5
        ts = rng.normal(centre * HOUR, width * HOUR, n).clip(0, 24 * HOUR - 1).astype(np.int64)
        frames.append(rows(np.sort(ts), c, PUBLIC_SERVER, up=rng.integers(800, 20000, n),
                           down=rng.integers(7000, 150000, n)))
    return pd.concat(frames, ignore_index=True)


def _client(ts, ip, seed):
    rng = np.random.default_rng(seed)
    return rows(ts, ip, PUBLIC_SERVER, up=rng.integers(800, 20000, len(ts)), down=rng.integers(7000, 150000, len(ts)))


def _servers_days():
    base, test = _population(1), _population(2)
    busiest = int(base.groupby("src_ip").size().max())
    rng = np.random.default_rng(3)
    extra = [
        _client(_random(60, 19, 24, 11), EVENING, 11),
        _client(np.concatenate([_random(40, 10, 18, 12), _random(20, 0, 2, 13)]), LATE, 12),
        _client(np.sort(rng.normal(14 * HOUR, 2.5 * HOUR, int(1.6 * busiest)).clip(0, 24 * HOUR - 1).astype(np.int64)),
                BUSY_NEW, 14),
        _client(_periodic(1800, 0, 24, seed=15, jitter=0.3), LOW_SLOW, 15),
        _client(_random(12, 2, 5, 16), DEEP_NIGHT, 16),
    ]
    return base, pd.concat([test, *extra], ignore_index=True).sort_values("timestamp", kind="stable")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    from flowsiem.detect import DetectOptions, detect
    from flowsiem.profile import ProfileOptions, build_profile

    d = tmp_path_factory.mktemp("hard")
    (base, test), (sbase, stest) = _office_days(), _servers_days()
    for name, df in (("data", base), ("test", test), ("servers_data", sbase), ("servers", stest)):
        df.to_parquet(d / f"{name}.parquet", index=False)
    build_profile(d / "data.parquet", d / "profile", servers=d / "servers_data.parquet", options=ProfileOptions())
    return detect(d / "test.parquet", d / "profile", d / "out", servers=d / "servers.parquet",
                  options=DetectOptions(examples=0))


def _flagged(res, family):
    """Devices an analyst must act on for `family`: an alert of medium severity or more."""
    return {a.source_ip for a in res.alerts if a.rule.family == family and a.actionable}


def _alerts(res, ip):
    return [a for a in res.alerts if a.source_ip == ip]


def test_1_dns_beacons_of_several_hosts_are_cnc_not_botnet(result):
    assert set(BEACONERS) <= _flagged(result, "cnc")
    assert not set(BEACONERS) & (_flagged(result, "botnet") | _flagged(result, "exfiltration"))
    for host in BEACONERS:
        a = max((a for a in _alerts(result, host) if a.rule.family == "cnc"), key=lambda a: a.severity_number)
        assert a.destination_ip == C2_RESOLVER
        assert set(BEACONERS) - {host} <= set(a.related), "the other hosts on the same channel"


def test_2_bulk_upload_to_a_service_the_host_uses_is_a_notice(result):
    assert BULK_SYNC not in _flagged(result, "exfiltration")
    (a,) = [a for a in _alerts(result, BULK_SYNC) if a.rule.family == "exfiltration"]
    assert a.severity_name == "low" and "DROPBOX" in a.message and "already sent data to" in a.message


def test_3_public_resolver_at_user_driven_times_is_a_notice(result):
    assert PUBLIC_DNS not in _flagged(result, "cnc")
    (a,) = [a for a in _alerts(result, PUBLIC_DNS) if a.rule.family == "cnc"]
    assert a.rule.id == "cnc.new_resolver" and a.severity_name == "low" and "policy" in a.message


def test_4_a_host_new_today_is_judged_against_its_peers(result):
    assert not [a for a in _alerts(result, NEW_EVENING) if a.actionable]


def test_5_evening_and_late_hours_of_people_are_not_abuse(result):
    assert not {EVENING, LATE} & _flagged(result, "external_abuse")


def test_6_a_little_busier_than_yesterday_s_busiest_client_is_not_a_flood(result):
    assert BUSY_NEW not in _flagged(result, "external_abuse")


def test_7_star_hub_is_flagged_and_a_slow_star_on_a_sharing_port_is_found(result):
    group = {a.source_ip: a for a in result.alerts if a.rule.id == "botnet.coordinated_group"}
    assert set(POLLERS) | {HUB} <= set(group) <= set(POLLERS) | {HUB}
    hub = group[HUB]
    assert set(hub.related) == set(POLLERS) and hub.details["relay"]
    assert "polled on a timer by 4 internal host(s)" in hub.message and "tcp/445" in hub.message
    assert {a for s in SHARERS for a in s}.isdisjoint(_flagged(result, "botnet"))


def test_8_low_and_slow_outside_clients_are_found(result):
    got = {a.source_ip: a for a in result.alerts if a.rule.family == "external_abuse" and a.actionable}
    assert got[LOW_SLOW].rule.id == "external_abuse.unusual_origin" and "low and slow" in got[LOW_SLOW].message
    assert got[DEEP_NIGHT].rule.id == "external_abuse.off_hours"


def test_nothing_else_is_flagged(result):
    """The ordinary hosts and clients of both days stay below medium."""
    expected = set(BEACONERS) | set(POLLERS) | {HUB, LOW_SLOW, DEEP_NIGHT}
    assert {a.source_ip for a in result.alerts if a.actionable} == expected
