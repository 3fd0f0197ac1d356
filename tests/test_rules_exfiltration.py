"""exfiltration rules on small hand-made days: upload volume and DNS tunnelling.

One ordinary office day is the baseline; the next ordinary day gets the anomalies and the benign
changes the issue lists (volume rise, new laptop, new popular sites, late worker, big-but-ordinary
uploader, more ordinary DNS, the company DNS server forwarding more). Each rule must flag exactly
the anomalous hosts, with baseline-vs-today evidence, and an allowlist must silence it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import DNS_SERVER, HOUR, NET, POPULAR, make_office_day, rows

from flowsiem.rules import load_rules

UPLOAD_NEW = f"{NET}.5"          # uploads to an address nobody used
UPLOAD_NIGHT = f"{NET}.7"        # uploads to a popular service it already uses, at 02-04h when it is silent
UPLOAD_HUGE = f"{NET}.6"         # uploads to a popular service it already uses, 10x the peers' busiest whole day
UPLOAD_ORG = f"{NET}.9"          # spreads an upload over several addresses of an organisation it never used
UPLOAD_NEW_IP = f"{NET}.19"      # uploads to a new address of an organisation it browses (GOOGLE), daytime
NEW_HOST_UPLOAD = f"{NET}.90"    # absent from the baseline, uploads a lot
TUNNEL = f"{NET}.20"             # DNS tunnel through the company resolver
TUNNEL_EXT = f"{NET}.23"         # DNS tunnel to an outside resolver
DNS_FLOOD = f"{NET}.24"          # ~30x its DNS, ordinary-sized queries: volume alone

VOLUME_UP = f"{NET}.10"          # benign: 1.5x its usual traffic
NEW_LAPTOP = f"{NET}.77"         # benign: new device, ordinary use
NEW_SITES = f"{NET}.12"          # benign: a few new popular destinations
LATE = f"{NET}.14"               # benign: works late
BIG_UPLOADER = f"{NET}.16"       # benign: uploads a lot every day (backup)
BULK_KNOWN = f"{NET}.17"         # benign: syncs to DROPBOX every day; today a few times its day there, in working hours
BROWSED = f"{NET}.18"            # benign: uploads to a site it already uses (MICROSOFT), a few times its day, working hours
CALL = f"{NET}.2"                # benign: a video call to a new MICROSOFT address: as much comes back as goes out
ALL_HANDS = [f"{NET}.3", f"{NET}.15", f"{NET}.25"]  # benign: an all-hands meeting, each to a new AMAZON address
MORE_DNS = f"{NET}.21"           # benign: 2x its DNS, ordinary queries
MANY_DNS = f"{NET}.22"           # benign: 5x its DNS, ordinary queries

NEW_DST = "185.220.101.7"
BACKUP = "52.95.110.1"
SYNC = "162.125.19.131"          # DROPBOX
GOOGLE_NEW = "142.250.180.10"
HETZNER = ["88.198.10.1", "88.198.20.2", "88.198.30.3", "88.198.40.4", "88.198.50.5"]
PUBLIC_RESOLVER = "9.9.9.9"
MB = 1_000_000

UPLOAD_IDS = "exfiltration.upload_volume"
DNS_IDS = "exfiltration.dns_tunnel"


def _others():
    """Families other than exfiltration present in the shipped rules: disabled to keep these tests about ours."""
    return sorted({s.family for s in load_rules().values() if s.family != "exfiltration"})


def _spread(n, start_h=9, end_h=18, seed=0):
    rng = np.random.default_rng(seed)
    return np.sort(rng.integers(start_h * HOUR, end_h * HOUR, n))


def _host_rows(day, host):
    return day[day.src_ip == host]


def _baseline() -> pd.DataFrame:
    base = make_office_day(seed=1)
    # a host that backs up to the same provider every day, and the DNS server forwarding upstream
    backup = rows(_spread(40, seed=1), BIG_UPLOADER, BACKUP, up=1_250_000, down=20_000)
    sync = rows(_spread(20, seed=3), BULK_KNOWN, SYNC, up=150_000, down=3000)
    fwd = rows(_spread(1500, 0, 24, seed=2), DNS_SERVER, "8.8.8.8", proto="udp", port=53, up=120, down=300)
    return pd.concat([base, backup, sync, fwd], ignore_index=True).sort_values("timestamp", kind="stable")


def _test_day() -> pd.DataFrame:
    day = make_office_day(seed=2)
    extra = []
    # --- anomalies --------------------------------------------------------------------------
    extra.append(rows(_spread(12, 10, 13, seed=3), UPLOAD_NEW, NEW_DST, up=2 * MB, down=9000))
    extra.append(rows(_spread(15, 2, 4, seed=4), UPLOAD_NIGHT, POPULAR[1], up=2 * MB, down=9000))
    extra.append(rows(_spread(200, 10, 16, seed=12), UPLOAD_HUGE, POPULAR[0], up=2 * MB, down=9000))
    extra.append(rows(_spread(10, 10, 16, seed=14), UPLOAD_NEW_IP, GOOGLE_NEW, up=MB, down=9000))
    for i, ip in enumerate(HETZNER):  # 2 MB to each: below every threshold per address, 10 MB to the organisation
        extra.append(rows(_spread(4, 9, 18, seed=10 + i), UPLOAD_ORG, ip, up=500_000, down=5000))
    newbie = make_office_day(seed=3)
    newbie = newbie[newbie.src_ip == f"{NET}.4"].assign(src_ip=NEW_HOST_UPLOAD)
    extra += [newbie, rows(_spread(20, 11, 15, seed=5), NEW_HOST_UPLOAD, NEW_DST, up=2 * MB, down=9000)]
    rng = np.random.default_rng(6)
    n = 700
    extra.append(rows(_spread(n, 8, 19, seed=7), TUNNEL, DNS_SERVER, proto="udp", port=53,
                      up=rng.integers(300, 480, n), down=rng.integers(100, 300, n)))
    extra.append(rows(_spread(n, 0, 24, seed=8), TUNNEL_EXT, PUBLIC_RESOLVER, proto="udp", port=53,
                      up=rng.integers(300, 480, n), down=rng.integers(100, 300, n)))
    # --- benign changes -----------------------------------------------------------------------
    v = _host_rows(day, VOLUME_UP)
    extra.append(v.sample(frac=0.5, random_state=1).assign(timestamp=lambda x: x.timestamp + 1234))
    laptop = make_office_day(seed=4)
    extra.append(laptop[laptop.src_ip == f"{NET}.8"].assign(src_ip=NEW_LAPTOP))
    s = _host_rows(day, NEW_SITES)
    https = s[s.port == 443].sample(frac=0.1, random_state=2)
    extra.append(https.assign(dst_ip=np.resize(["142.250.200.4", "157.240.1.35", "13.107.21.200"], len(https))))
    late = day.src_ip == LATE
    day.loc[late, "timestamp"] = (day.loc[late, "timestamp"] + 4 * HOUR).clip(upper=24 * HOUR - 1)
    extra.append(rows(_spread(44, seed=9), BIG_UPLOADER, BACKUP, up=1_300_000, down=20_000))
    extra.append(rows(_spread(20, seed=15), BULK_KNOWN, SYNC, up=150_000, down=3000))
    extra.append(rows(_spread(8, 10, 16, seed=13), BULK_KNOWN, SYNC, up=MB, down=9000))
    extra.append(rows(_spread(8, 10, 16, seed=16), BROWSED, POPULAR[3], up=MB, down=9000))
    # a video call (as much comes back as goes out) and an all-hands meeting (three hosts, one provider)
    extra.append(rows(_spread(10, 10, 16, seed=17), CALL, "52.113.194.132", up=MB, down=MB))
    for i, host in enumerate(ALL_HANDS):
        extra.append(rows(_spread(10, 14, 15, seed=18 + i), host, f"3.160.140.{10 + i}", up=MB, down=50_000))
    d = _host_rows(day, MORE_DNS)
    extra.append(d[d.port == 53].assign(timestamp=lambda x: x.timestamp + 777))
    d = _host_rows(day, MANY_DNS)
    dns = d[d.port == 53]
    extra += [dns.assign(timestamp=lambda x, k=k: x.timestamp + 100 * k) for k in range(1, 5)]
    d = _host_rows(day, DNS_FLOOD)
    dns = d[d.port == 53]
    extra += [dns.assign(timestamp=lambda x, k=k: (x.timestamp + 37 * k) % (24 * HOUR)) for k in range(1, 45)]
    extra.append(rows(_spread(7000, 0, 24, seed=11), DNS_SERVER, "8.8.8.8", proto="udp", port=53,
                      up=rng.integers(300, 480, 7000), down=300))
    out = pd.concat([day, *extra], ignore_index=True)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def attack(tmp_path_factory):
    """One profile + detect of the attack day (shared: it is the expensive part)."""
    from flowsiem.detect import DetectOptions, detect
    from flowsiem.profile import ProfileOptions, build_profile

    d = tmp_path_factory.mktemp("exfil")
    _baseline().to_parquet(d / "data.parquet", index=False)
    _test_day().to_parquet(d / "test.parquet", index=False)
    build_profile(d / "data.parquet", d / "profile", options=ProfileOptions())
    res = detect(d / "test.parquet", d / "profile", d / "out", options=DetectOptions(disable=_others()))
    return d, res


def _by(res, rid):
    return {a.source_ip: a for a in res.alerts if a.rule.id == rid}


def _ev(alert, word):
    return next(e for e in alert.evidence if word in e.metric)


def _check_ecs(a, technique):
    doc = a.to_ecs()
    assert doc["rule"]["category"] == "exfiltration"
    assert doc["threat"]["technique"]["id"] == [technique]
    assert 0 <= doc["event"]["risk_score"] <= 100
    assert doc["source"]["ip"] == a.source_ip
    assert doc["flowsiem"]["evidence"] and doc["message"] == a.message
    for e in doc["flowsiem"]["evidence"]:
        assert e["unit"] and "observed" in e


def _actionable(res, rid):
    return {ip for ip, a in _by(res, rid).items() if a.actionable}


def test_upload_volume_flags_exactly_the_exfiltrating_hosts(attack):
    _, res = attack
    assert _actionable(res, UPLOAD_IDS) == {UPLOAD_NEW, UPLOAD_NIGHT, UPLOAD_HUGE, UPLOAD_ORG, UPLOAD_NEW_IP,
                                            NEW_HOST_UPLOAD}
    # benign drift stays quiet in the whole family (at most a notice)
    flagged = {a.source_ip for a in res.alerts if a.rule.family == "exfiltration" and a.actionable}
    assert not flagged & {VOLUME_UP, NEW_LAPTOP, NEW_SITES, LATE, BIG_UPLOADER, BULK_KNOWN, BROWSED, MORE_DNS,
                          MANY_DNS, DNS_SERVER, CALL, *ALL_HANDS}


def test_upload_to_a_new_destination_evidence(attack):
    _, res = attack
    a = _by(res, UPLOAD_IDS)[UPLOAD_NEW]
    _check_ecs(a, "T1048")
    assert a.destination_ip == NEW_DST and a.severity_name == "high"
    up = _ev(a, "upload to the destination today")
    assert up.unit == "bytes" and up.observed == 24 * MB and up.baseline == 0
    assert up.observed >= up.threshold and up.reference < up.threshold
    own = _ev(a, "whole-day external upload")
    assert own.baseline > 0 and own.observed >= own.threshold >= 2 * own.baseline
    assert a.details["new_for_network"] and a.details["new_for_host"]
    assert "24.0 MB" in a.message and NEW_DST in a.message and "new for the network" in a.message
    assert a.risk_score >= 47


def test_bulk_upload_to_a_known_service_is_a_notice_unless_when_or_how_much_says_otherwise(attack):
    """Issue 6, class 2: a few times its day to an address the host already sent data to (its
    sync service, a site it uses), in its working hours, is a backup, a sync or a share: a low
    notice. A new address of an organisation it uses is medium (providers rotate addresses: weaker
    than a new organisation), and so is a known address at hours the host is silent; ten times
    what nearly any host uploads in a day is high anywhere."""
    _, res = attack
    got = _by(res, UPLOAD_IDS)
    bulk = got[BULK_KNOWN]
    assert bulk.severity_name == "low" and not bulk.actionable and bulk.destination_ip == SYNC
    assert not bulk.details["new_for_host"] and "backup or sync" in bulk.message and "DROPBOX" in bulk.message
    assert "already sent data to" in bulk.message
    assert got[BROWSED].severity_name == "low" and "MICROSOFT" in got[BROWSED].message
    new_ip = got[UPLOAD_NEW_IP]
    assert new_ip.severity_name == "medium" and new_ip.details["new_address_for_host"]
    assert not new_ip.details["new_for_host"] and "new address of GOOGLE" in new_ip.message
    night = got[UPLOAD_NIGHT]
    assert night.severity_name == "medium" and night.details["off_hours"] and not night.details["new_for_host"]
    silent = _ev(night, "upload while the host is otherwise idle")
    assert silent.observed == 30 * MB and silent.threshold == pytest.approx(0.5 * _ev(night, "destination today").observed, abs=1)
    huge = got[UPLOAD_HUGE]
    assert huge.severity_name == "high" and huge.details["extreme"] and not huge.details["off_hours"]
    ext = _ev(huge, "what nearly any host uploads in a whole day")
    assert ext.observed >= ext.threshold == 10 * ext.reference


def test_two_way_and_crowded_uploads_are_notices(attack):
    """A call receives as much as it sends; a meeting is many hosts at once: data leaving is
    one-way and individual, so both are notices that say why."""
    _, res = attack
    got = _by(res, UPLOAD_IDS)
    call = got[CALL]
    assert call.severity_name == "low" and "two-way" in call.message and not call.details["one_way"]
    for host in ALL_HANDS:
        a = got[host]
        assert a.severity_name == "low" and "3 hosts uploaded far beyond their day to it" in a.message
        assert _ev(a, "hosts uploading far beyond their day").observed == 3


def test_upload_spread_over_one_organisation(attack):
    _, res = attack
    a = _by(res, UPLOAD_IDS)[UPLOAD_ORG]
    assert a.details["destination_level"] == "organisation" and a.details["destination"] == "Hetzner Online GmbH"
    assert a.destination_ip in HETZNER and a.details["new_for_host"] and a.severity_name == "high"
    org = _ev(a, "upload to the organisation today")
    assert org.observed == 10 * MB and org.baseline == 0


def test_new_host_is_judged_against_its_peers(attack):
    _, res = attack
    a = _by(res, UPLOAD_IDS)[NEW_HOST_UPLOAD]
    assert not a.details["host_in_baseline"]
    own = _ev(a, "whole-day external upload")
    assert own.baseline is None and own.reference > 0 and own.observed >= own.threshold
    assert "absent from the baseline" in a.message


def test_dns_tunnel_flags_tunnels_not_dns_servers_or_busy_hosts(attack):
    _, res = attack
    got = _by(res, DNS_IDS)
    assert set(got) == {TUNNEL, TUNNEL_EXT, DNS_FLOOD}
    assert got[TUNNEL].details["cues"] == got[TUNNEL_EXT].details["cues"] == "long queries, many more of them"
    flood = got[DNS_FLOOD]
    assert flood.details["cues"] == "DNS volume alone" and flood.risk_score < got[TUNNEL].risk_score
    assert _ev(flood, "DNS bytes sent").observed >= 20 * _ev(flood, "DNS bytes sent").baseline
    a = got[TUNNEL]
    _check_ecs(a, "T1048.003")
    vol = _ev(a, "DNS bytes sent")
    assert vol.unit == "bytes" and vol.baseline > 0 and vol.observed >= vol.threshold >= 4 * vol.baseline
    size = _ev(a, "DNS query size")
    assert size.observed >= size.threshold > size.reference
    assert _ev(a, "DNS flows").observed > _ev(a, "DNS flows").baseline
    assert a.destination_ip == DNS_SERVER and "company DNS server" in a.message
    b = got[TUNNEL_EXT]
    assert b.destination_ip == PUBLIC_RESOLVER and "not a resolver of the network" in b.message


def test_allowlist_silences_each_rule(attack, tmp_path):
    from flowsiem.detect import DetectOptions, detect

    d, res = attack
    f = tmp_path / "rules.yaml"
    f.write_text(f"rules:\n"
                 f"  {UPLOAD_IDS}:\n    allowlist: ['{NEW_DST}/32', 'org:GOOGLE', 'org:Hetzner Online GmbH', 'org:DROPBOX', 'org:FACEBOOK', 'org:AMAZON-02', 'org:MICROSOFT-CORP-MSN-AS-BLOCK']\n"
                 f"  {DNS_IDS}:\n    allowlist: ['{TUNNEL}']\n")
    res2 = detect(d / "test.parquet", d / "profile", tmp_path / "out",
                  options=DetectOptions(rules_file=f, disable=_others(), examples=0))
    assert set(_by(res2, UPLOAD_IDS)) == set()  # NEW_DST by address; POPULAR[0] and HETZNER by org
    assert set(_by(res2, DNS_IDS)) == {TUNNEL_EXT, DNS_FLOOD}


def test_ordinary_next_day_is_quiet(detect_day, office):
    """A plain next day (no anomaly, no benign change) raises no exfiltration alert."""
    res = detect_day(office(seed=1), office(seed=2), disable=_others(), examples=0)
    assert [a for a in res.alerts if a.rule.family == "exfiltration"] == []


def test_thresholds_are_configurable(attack, tmp_path):
    """Raising the own-baseline ratio past the observed jump silences the upload alert for it."""
    from flowsiem.detect import DetectOptions, detect

    d, res = attack
    a = _by(res, UPLOAD_IDS)[UPLOAD_NEW]
    jump = _ev(a, "whole-day external upload")
    ratio = jump.observed / jump.baseline
    f = tmp_path / "rules.yaml"
    f.write_text(f"rules:\n  {UPLOAD_IDS}:\n    thresholds: {{own_ratio: {ratio * 1.5:.1f}}}\n")
    res2 = detect(d / "test.parquet", d / "profile", tmp_path / "out",
                  options=DetectOptions(rules_file=f, disable=_others(), examples=0))
    assert UPLOAD_NEW not in _by(res2, UPLOAD_IDS)


def test_flows_without_byte_counts_raise_nothing(detect_day, office):
    """Captures without byte counts (Zeek's '-' orig_bytes) give the rules nothing to judge: no
    alert, and no crash, even for a host whose flow count jumps."""
    base, test = office(seed=1), office(seed=2)
    jump = test[(test.src_ip == TUNNEL) & (test.port == 53)]
    test = pd.concat([test] + [jump.assign(timestamp=jump.timestamp + k) for k in range(1, 30)], ignore_index=True)
    for d in (base, test):
        d["up_bytes"] = 0
    res = detect_day(base, test, disable=_others(), examples=0)
    assert [a for a in res.alerts if a.rule.family == "exfiltration"] == []
