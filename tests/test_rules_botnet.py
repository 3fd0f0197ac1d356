"""botnet rules on small hand-made days: they fire on P2P meshes, fan-outs and common beacons,
stay quiet on benign drift (new laptop, busier host, new popular sites, new CDN addresses, late
worker, a new internal service, established peer services, multicast chatter), carry
baseline-vs-today evidence and ECS fields, and an allowlist silences them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import DNS_SERVER, HOUR, NET, POPULAR, WEB_SERVER, hosts, rows, with_lookups

BOTNET_RULES = ("botnet.new_internal_peers", "botnet.coordinated_group", "botnet.common_beacon")
C2 = "45.32.7.77"  # a VPS address no host used on the baseline day
OTHERS = ["exfiltration", "cnc", "external_abuse"]  # other families' rules: not under test here


def _by_rule(res, rid):
    return {a.source_ip: a for a in res.alerts if a.rule.id == rid}


def _botnet(res):
    return [a for a in res.alerts if a.rule.family == "botnet"]


def _spread(rng, n, lo_h=8, hi_h=19):
    return np.sort(rng.integers(lo_h * HOUR, hi_h * HOUR, n))


def _beacon(rng, src, dst, period_s=600, start_h=2.0, end_h=23.5, jitter=0.05, port=443, up=1200):
    """A timer: one connection every period_s (+- jitter) from start_h to end_h, similar sizes."""
    n = int((end_h - start_h) * 3600 / period_s)
    t = start_h * HOUR + np.cumsum(period_s * 100 * (1 + jitter * rng.standard_normal(n)))
    t = t[t < end_h * HOUR].astype(np.int64)
    sizes = np.rint(up * (1 + 0.03 * rng.standard_normal(len(t)))).astype(np.int64)
    return rows(t, src, dst, port=port, up=sizes, down=2000)


def _mesh(rng, members, port=6667, per_link=14, proto="tcp"):
    """Every member connects to every other one, per_link flows each, spread over 06-23 h."""
    out = []
    for a in members:
        for b in members:
            if a != b:
                out.append(rows(_spread(rng, per_link, 6, 23), a, b, proto=proto, port=port, up=900, down=1500))
    return out


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """One profile + detect shared by the firing tests, on the ordinary office day: a 3-host P2P
    mesh, a host fanning out to 4 new peers, 3 hosts beaconing to one new VPS address, and 3
    hosts polling an internal hub on a timer."""
    from conftest import make_office_day

    from flowsiem.detect import DetectOptions, detect
    from flowsiem.profile import ProfileOptions, build_profile

    rng = np.random.default_rng(7)
    h = hosts()
    base, test = make_office_day(seed=1), make_office_day(seed=2)
    extra = _mesh(rng, [h[0], h[1], h[2]])
    extra += [rows(_spread(rng, 6), h[9], h[i], port=445, up=700, down=400) for i in (20, 21, 22, 23)]
    extra += [_beacon(rng, src, C2) for src in (h[4], h[5], h[6])]
    # three hosts polling a fourth (an internal hub/proxy) on a timer; the hub never connects back
    extra += [_beacon(rng, src, h[28], period_s=900, start_h=1.0, port=8443, up=600) for src in (h[25], h[26], h[27])]
    # a fourth poller whose machine is on for 3.5 hours only, and a colleague reaching the hub by hand
    extra.append(_beacon(rng, h[24], h[28], period_s=900, start_h=9.0, end_h=12.5, port=8443, up=600))
    extra.append(rows(_spread(rng, 6, 9, 17), h[19], h[28], port=8443, up=900, down=3000))
    test = pd.concat([test, *extra], ignore_index=True).sort_values("timestamp", kind="stable")
    d = tmp_path_factory.mktemp("botnet")
    base.to_parquet(d / "data.parquet", index=False)
    test.to_parquet(d / "test.parquet", index=False)
    build_profile(d / "data.parquet", d / "profile", options=ProfileOptions())
    res = detect(d / "test.parquet", d / "profile", d / "out", options=DetectOptions(examples=2, disable=OTHERS))
    return res, h, d


def test_p2p_mesh_members_are_new_internal_peers(attacked):
    res, h, _ = attacked
    got = _by_rule(res, "botnet.new_internal_peers")
    mesh = {h[0], h[1], h[2]}
    assert mesh <= set(got)
    a = got[h[0]]
    assert set(a.related) == {h[1], h[2]}
    ev = {e.metric: e for e in a.evidence}
    peers = ev["new internal peers (non-server hosts, pair unseen on the baseline day)"]
    assert (peers.unit, peers.observed, peers.baseline) == ("hosts", 2, 0)
    mutual = ev["peers that also open connections back to the host (mutual links)"]
    assert mutual.observed == 2
    flows = ev["flows on the new peer links (both directions)"]
    assert flows.unit == "flows" and flows.observed == 4 * 14 and flows.baseline == 0
    svc = next(e for m, e in ev.items() if m.startswith("host pairs using tcp/6667"))
    assert svc.baseline == 0 and svc.observed == 3
    assert "tcp/6667" in a.message and "never talked to" in a.message
    assert a.examples and all(x["port"] == 6667 for x in a.examples)
    # the receivers of the fan-out and the polled hub never initiate: they are not flagged
    assert not ({h[20], h[21], h[22], h[23], h[28]} & set(got))


def test_fan_out_to_several_new_peers(attacked):
    res, h, _ = attacked
    a = _by_rule(res, "botnet.new_internal_peers")[h[9]]
    assert set(a.related) == {h[20], h[21], h[22], h[23]}
    ev = {e.metric: e for e in a.evidence}
    assert ev["peers that also open connections back to the host (mutual links)"].observed == 0
    assert "fanning out on tcp/445" in a.message


def test_hosts_polling_a_new_internal_peer_are_a_group(attacked):
    """Three hosts polling one internal hub on a timer: one new one-way link each, so not a
    new_internal_peers case alone, but a group sharing a rhythm (coordinated_group)."""
    res, h, _ = attacked
    pollers = {h[25], h[26], h[27]}
    assert not pollers & set(_by_rule(res, "botnet.new_internal_peers"))
    got = _by_rule(res, "botnet.coordinated_group")
    a = got[h[25]]
    assert "every ~15 min" in a.message and "polls new internal peer" in a.message
    ev = {e.metric: e for e in a.evidence}
    assert ev["new internal peers the group polls on a timer"].observed == 1
    score = ev["the host's beacon score to the shared destination (RITA-style)"]
    assert score.observed >= 0.8 and score.threshold == 0.5


def test_coordinated_groups_list_the_other_members(attacked):
    res, h, _ = attacked
    got = _by_rule(res, "botnet.coordinated_group")
    mesh, beacons, pollers = {h[0], h[1], h[2]}, {h[4], h[5], h[6]}, {h[25], h[26], h[27], h[24]}
    assert set(got) == mesh | beacons | pollers | {h[28]}  # the one-way fan-out is no group; the hub is the relay
    for m in pollers:
        assert set(got[m].related) == (pollers - {m}) | {h[28]}
        assert "polls new internal peer" in got[m].message and got[m].destination_ip == h[28]
    for m in mesh:
        assert set(got[m].related) == mesh - {m}
    for m in beacons:
        assert set(got[m].related) == beacons - {m}
        assert got[m].destination_ip == C2
        size = next(e for e in got[m].evidence if e.metric.startswith("hosts in the group"))
        assert (size.observed, size.baseline, size.threshold) == (3, 0, 2)


def test_a_poller_of_a_proven_relay_joins_on_fewer_hours(attacked):
    """Three hosts prove the relay's timer over the day; a fourth polls it on the same service and
    timer for 3.5 hours only (its machine was switched off): too short to prove a rhythm alone
    (min_active_hours), regular beyond chance (join_alpha), so a member. A colleague who reached
    the hub a few times by hand is not."""
    res, h, _ = attacked
    got = _by_rule(res, "botnet.coordinated_group")
    a = got[h[24]]
    assert a.destination_ip == h[28] and "polls new internal peer" in a.message and "every ~15 min" in a.message
    assert h[19] not in got and h[19] not in got[h[28]].related
    assert "is polled on a timer by 4 internal host(s)" in got[h[28]].message


def test_common_beacon_to_a_new_destination(attacked):
    res, h, _ = attacked
    got = _by_rule(res, "botnet.common_beacon")
    assert set(got) == {h[4], h[5], h[6]}
    a = got[h[4]]
    assert a.destination_ip == C2 and set(a.related) == {h[5], h[6]}
    ev = {e.metric: e for e in a.evidence}
    gap = ev["median gap between connections"]
    assert gap.unit == "seconds" and 540 < gap.observed < 660
    flows = ev["connections to the destination"]
    assert flows.baseline == 0 and flows.observed > 100
    prev = ev["share of today's active internal hosts using the destination (prevalence)"]
    assert prev.unit == "share" and prev.observed == pytest.approx(3 / 30, abs=0.01) and prev.threshold == 0.25
    score = ev["beacon score (RITA-style: timing, size, hourly histogram, duration)"]
    assert score.observed >= 0.8 and score.threshold == 0.5
    assert "every ~10 min" in a.message and "0 flows to it from any host" in a.message
    assert a.details["beacon"]["timing"] > 0.8


def test_ecs_fields(attacked):
    res, _, _ = attacked
    techniques = {"botnet.new_internal_peers": "T1090.001", "botnet.coordinated_group": "T1584.005",
                  "botnet.common_beacon": "T1071"}
    seen = set()
    for a in _botnet(res):
        doc = a.to_ecs()
        assert doc["rule"]["category"] == "botnet"
        assert doc["threat"]["technique"]["id"] == [techniques[a.rule.id]]
        assert 0 <= doc["event"]["risk_score"] <= 100
        assert doc["message"] and doc["flowsiem"]["evidence"]
        assert all({"metric", "unit", "observed"} <= set(e) for e in doc["flowsiem"]["evidence"])
        assert any("baseline" in e for e in doc["flowsiem"]["evidence"])
        seen.add(a.rule.id)
    assert seen == set(BOTNET_RULES)


def test_allowlists_silence_each_rule(attacked, tmp_path):
    from flowsiem.detect import DetectOptions, detect

    res, h, d = attacked
    f = tmp_path / "rules.yaml"
    f.write_text("rules:\n"
                 f"  botnet.common_beacon:\n    allowlist: ['45.32.0.0/16']\n"
                 f"  botnet.coordinated_group:\n    allowlist: ['{C2}', '{h[28]}', '{h[0]}', '{h[1]}', '{h[2]}']\n"
                 f"  botnet.new_internal_peers:\n    allowlist: ['{NET}.0/24']\n")
    quiet = detect(d / "test.parquet", d / "profile", tmp_path / "out",
                   options=DetectOptions(rules_file=f, examples=0, disable=OTHERS))
    assert _botnet(res) and not _botnet(quiet)
    # thresholds are overridable too: demanding 4 beaconing hosts silences the 3-host beacon
    g = tmp_path / "strict.yaml"
    g.write_text("rules:\n  botnet.common_beacon:\n    thresholds: {min_hosts: 4}\n")
    strict = detect(d / "test.parquet", d / "profile", tmp_path / "out2",
                    options=DetectOptions(rules_file=g, examples=0, disable=OTHERS + ["botnet.new_internal_peers",
                                                                                    "botnet.coordinated_group"]))
    assert not _botnet(strict)


def test_benign_drift_stays_quiet(office, detect_day):
    """New laptop, busier host, new popular sites, new CDN addresses, a late worker, a new internal
    service with several one-way clients, a single host polling a new server, two users browsing
    a new site, multicast/broadcast chatter: no botnet alert."""
    rng = np.random.default_rng(11)
    h = hosts()
    base, test = office(seed=1), office(seed=2)
    extra = []
    # a new laptop: internal servers and popular services only
    lap = f"{NET}.200"
    n = 300
    extra.append(pd.DataFrame({"timestamp": _spread(rng, n), "src_ip": lap,
                               "dst_ip": rng.choice([DNS_SERVER, WEB_SERVER, *POPULAR], n),
                               "proto": "tcp", "port": 443, "up_bytes": 5000, "down_bytes": 50000}))
    # a host whose volume rises 1.5x (same destinations)
    busy = test[test.src_ip == h[3]]
    extra.append(busy.sample(frac=0.5, random_state=1))
    # new CDN addresses of a popular service, used irregularly by most hosts
    for src in h[:22]:
        extra.append(rows(_spread(rng, int(rng.integers(15, 40))), src, "142.250.184.99",
                          up=rng.integers(3000, 20000, 1)[0]))
    # two users browsing a new site in bursts, and one host polling a new server on a timer
    for src in (h[12], h[13]):
        t0 = int(rng.integers(9, 16)) * HOUR
        extra.append(rows(np.sort(t0 + rng.integers(0, HOUR, 25)), src, "151.101.77.7",
                          up=rng.integers(500, 30000, 25)))
    extra.append(_beacon(rng, h[14], "167.99.3.3"))
    # a late worker: its ordinary mix moved to the evening
    late = test[test.src_ip == h[15]].copy()
    late["timestamp"] = late["timestamp"] + 4 * HOUR
    test = test[test.src_ip != h[15]]
    extra.append(late)
    # a new internal service: three hosts use h[16]:8080 all day, it never connects back
    for src in (h[17], h[18], h[19]):
        extra.append(rows(_spread(rng, 30), src, h[16], port=8080, up=800, down=20000))
    # multicast and broadcast chatter (never peers)
    for src in h[:10]:
        extra.append(rows(_spread(rng, 20), src, "224.0.0.251", proto="udp", port=5353, up=100, down=0))
        extra.append(rows(_spread(rng, 20), src, f"{NET}.255", proto="udp", port=138, up=200, down=0))
    test = pd.concat([test, *extra], ignore_index=True).sort_values("timestamp", kind="stable")
    res = detect_day(base, test, disable=OTHERS)
    assert not _botnet(res), [a.message for a in _botnet(res)]
    # the benign traffic does reach the rules: loosening the gates that keep it quiet flags it
    from flowsiem.detect import DetectOptions, detect

    d = res.out.parent
    loose = d / "loose.yaml"
    loose.write_text("rules:\n"
                     "  botnet.common_beacon:\n    thresholds: {min_hosts: 1, max_prevalence: 1.0}\n"
                     "  botnet.new_internal_peers:\n    thresholds: {min_fanout_peers: 1}\n")
    noisy = detect(d / "test.parquet", d / "profile", d / "out-loose",
                   options=DetectOptions(rules_file=loose, examples=0, disable=OTHERS))
    assert h[14] in {a.source_ip for a in noisy.alerts if a.rule.id == "botnet.common_beacon"}  # lone poller
    assert {h[17], h[18], h[19]} <= {a.source_ip for a in noisy.alerts if a.rule.id == "botnet.new_internal_peers"}
    assert lap not in {a.source_ip for a in noisy.alerts}  # the laptop only uses servers and popular sites


def test_established_peer_service_is_drift(office, detect_day):
    """Hosts that already shared files host-to-host on tcp/445 on the baseline day: new mutual
    links on tcp/445 are drift; so are unicast replies of a discovery protocol the baseline
    broadcast (udp/137); the same mesh on a port never used host-to-host is not."""
    rng = np.random.default_rng(5)
    h = hosts()
    base, test = office(seed=1), office(seed=2)
    share = [rows(_spread(rng, 10), a, b, port=445, up=3000, down=90000)
             for a, b in ((h[10], h[11]), (h[12], h[13]), (h[14], h[15]))]
    share += [rows(_spread(rng, 20), a, f"{NET}.255", proto="udp", port=137, up=90, down=0) for a in h[:10]]
    base = pd.concat([base, *share], ignore_index=True).sort_values("timestamp", kind="stable")
    test = pd.concat([test, *_mesh(rng, [h[0], h[1]], port=445), *_mesh(rng, [h[20], h[21]], proto="udp", port=137),
                      *_mesh(rng, [h[5], h[6]], port=4444, per_link=5)],
                     ignore_index=True).sort_values("timestamp", kind="stable")
    res = detect_day(base, test, disable=OTHERS)
    flagged = {a.source_ip for a in _botnet(res)}
    assert flagged == {h[5], h[6]}


def test_shared_timer_to_a_vendor_the_network_uses_is_a_notice(office, detect_day):
    """An agent rolled out today to several machines polls a new address of an organisation every
    host already uses (GOOGLE here): the same shape as a shared beacon, so only a low notice that
    says why. The same timer to a network nobody uses stays a high alert."""
    rng = np.random.default_rng(21)
    h = hosts()
    base, test = office(seed=1), office(seed=2)
    agent = [with_lookups(_beacon(rng, src, "142.250.180.77", period_s=900)) for src in (h[3], h[7], h[11], h[19])]
    c2 = [_beacon(rng, src, C2, period_s=900) for src in (h[4], h[5])]
    test = pd.concat([test, *agent, *c2], ignore_index=True).sort_values("timestamp", kind="stable")
    res = detect_day(base, test, disable=OTHERS)
    beacon = _by_rule(res, "botnet.common_beacon")
    assert {h[3], h[7], h[11], h[19], h[4], h[5]} == set(beacon)
    for src in (h[3], h[7], h[11], h[19]):
        a = beacon[src]
        assert a.severity_name == "low" and not a.actionable and "GOOGLE" in a.message and "deployed" in a.message
        share = next(e for e in a.evidence if e.metric.startswith("share of the internal hosts that reached"))
        assert share.observed >= share.threshold == 0.1
    assert beacon[h[4]].severity_name == "high" and beacon[h[4]].actionable
    assert {a.source_ip for a in res.alerts if a.actionable} == {h[4], h[5]}


def test_shared_timer_to_a_vendor_s_address_without_lookups_is_a_botnet(office, detect_day):
    """The same timer to the same vendor's new address, but no DNS lookup ever precedes it while
    these hosts resolve everything else: an address written into the program. Deployed software
    finds its (rotating) cloud servers by name; C2 implants aimed at a cloud VM need not."""
    rng = np.random.default_rng(21)
    h = hosts()
    base, test = office(seed=1), office(seed=2)
    bots = [_beacon(rng, src, "142.250.180.77", period_s=900) for src in (h[3], h[7], h[11], h[19])]
    test = pd.concat([test, *bots], ignore_index=True).sort_values("timestamp", kind="stable")
    res = detect_day(base, test, disable=OTHERS)
    beacon = _by_rule(res, "botnet.common_beacon")
    for src in (h[3], h[7], h[11], h[19]):
        a = beacon[src]
        assert a.severity_name == "high" and a.actionable and "written into it" in a.message, a.message
        resolved = next(e for e in a.evidence if e.metric.startswith("share of the group's connections"))
        assert resolved.observed < resolved.threshold


def test_fanout_on_one_timer_is_a_monitor_notice_and_a_spreading_host_is_not(office, detect_day):
    """Two hosts each open new links to four internal peers on a port nobody used host-to-host:
    one polls them all on one tight timer (a monitoring or management system: a notice saying
    so), the other reaches them at random times (spreading: an alert). Both fan-outs are scored
    together in one engine query; each keeps its own verdict."""
    rng = np.random.default_rng(31)
    h = hosts()
    base, test = office(seed=1), office(seed=2)
    monitor, spreader = h[2], h[3]
    polls = [_beacon(rng, monitor, dst, period_s=300, start_h=0.2, end_h=23.8, jitter=0.01, port=10050, up=200)
             for dst in h[10:14]]
    spread = [rows(_spread(rng, 12), spreader, dst, port=10050, up=900, down=1500) for dst in h[15:19]]
    test = pd.concat([test, *polls, *spread], ignore_index=True).sort_values("timestamp", kind="stable")
    res = detect_day(base, test, disable=OTHERS)
    peers = _by_rule(res, "botnet.new_internal_peers")
    assert {monitor, spreader} <= set(peers)
    assert not peers[monitor].actionable and "monitoring or management system" in peers[monitor].message
    assert peers[spreader].actionable and "monitoring" not in peers[spreader].message


def test_a_group_holding_a_quarter_of_the_network_is_a_change_not_a_botnet(office, detect_day):
    """Ten of thirty hosts start talking to each other on a new port (a rollout of peer-to-peer
    software, or a worm): as one coordinated group that is a third of the network acting
    together, a change of the network (a notice), while three hosts doing the same stay a
    group alert. Each spreading host keeps its own new_internal_peers alert either way."""
    rng = np.random.default_rng(41)
    h = hosts()
    base, test = office(seed=1), office(seed=2)
    big, small = h[0:10], h[20:23]
    test = pd.concat([test, *_mesh(rng, big, port=7680, per_link=6), *_mesh(rng, small, port=6881)],
                     ignore_index=True).sort_values("timestamp", kind="stable")
    res = detect_day(base, test, disable=OTHERS)
    group = _by_rule(res, "botnet.coordinated_group")
    assert set(big) | set(small) <= set(group)
    for x in big:
        assert not group[x].actionable and "change of the network" in group[x].message
    assert all(group[x].actionable and "change of the network" not in group[x].message for x in small)
    peers = _by_rule(res, "botnet.new_internal_peers")
    assert all(peers[x].actionable for x in big)
