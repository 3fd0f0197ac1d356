"""cnc rules (C&C over DNS) on small hand-made days.

One ordinary office day is the baseline (its DNS server also forwards to many outside resolvers,
and three hosts use a public resolver besides the company's); the next ordinary day gets the
anomalies and the benign changes the issue lists. Each rule must flag exactly the anomalous hosts,
with baseline-vs-today evidence and ECS fields, and an allowlist must silence it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import DNS_SERVER, HOUR, NET, POPULAR, hosts, make_office_day, rows

from flowsiem.rules import load_rules
from flowsiem.rules.beacon import poisson_dispersion_p
from flowsiem.rules.common import binomial_tail

BEACON = f"{NET}.5"          # polls a resolver nobody used, every 5 min around the clock
NIGHT = f"{NET}.6"           # polls the company resolver every 10 min at 02-04h, nothing else then
NEW_NIGHT = f"{NET}.88"      # new today (no baseline): office hours, and polls the company resolver at night
RELAY = f"{NET}.16"          # polls a workstation on port 53 every 10 min during the day (internal relay)
TUNNEL_EXT = f"{NET}.8"      # DNS tunnel to an outside resolver: many long queries (exfiltration's)
TUNNEL_NIGHT = f"{NET}.11"   # DNS tunnel through the company resolver, day and night
LATE = f"{NET}.7"            # benign: works until 23h, web and DNS alike
PUBLIC_USER = f"{NET}.9"     # benign: starts using the public resolver three colleagues already use
VOLUME_UP = f"{NET}.10"      # benign: twice its usual traffic, DNS included
NEW_LAPTOP = f"{NET}.77"     # benign: new device, company resolver, office hours
ONE_LOOKUP = f"{NET}.12"     # benign: a few test lookups against a public resolver in one hour
FORWARDER = f"{NET}.30"      # benign: a workstation running its own recursive resolver (not a server)
WAKE = f"{NET}.13"           # benign: wakes at 03:10 for a minute of lookups (one burst, no rhythm)
RARE_USER = f"{NET}.14"      # benign: irregular DNS to a resolver one colleague used yesterday
ODD_INTERNAL = f"{NET}.18"   # benign: irregular lookups against a colleague's machine (a dev DNS)
SHARED_PUBLIC = "1.1.1.1"
C2_RESOLVER = "45.33.32.156"
TUNNEL_RESOLVER = "185.199.1.1"
ONE_OFF_RESOLVER = "9.9.9.9"
RARE_RESOLVER = "64.6.64.6"
UPSTREAMS = [f"198.41.0.{i}" for i in range(1, 31)]  # the DNS server's upstream/root servers

RULES = ("cnc.new_resolver", "cnc.periodic_dns", "cnc.dns_silent_hours")


def _others():
    """Families other than cnc present in the shipped rules: disabled to keep these tests about ours."""
    return sorted({s.family for s in load_rules().values() if s.family != "cnc"})


def _spread(n, start_h=9, end_h=18, seed=0):
    rng = np.random.default_rng(seed)
    return np.sort(rng.integers(int(start_h * HOUR), int(end_h * HOUR), n))


def _periodic(period_s, start_h, end_h, jitter=0.05, seed=0):
    rng = np.random.default_rng(seed)
    n = int((end_h - start_h) * 3600 / period_s)
    gaps = period_s * 100 * np.maximum(1 + jitter * rng.standard_normal(n), 0.3)
    ts = start_h * HOUR + np.cumsum(gaps)
    return ts[ts < end_h * HOUR].astype(np.int64)


def _dns(ts, src, dst, up=70, down=150):
    return rows(ts, src, dst, proto="udp", port=53, up=up, down=down)


def _forwarding(seed, src=DNS_SERVER, upstreams=UPSTREAMS, n=600):
    """A resolver resolving upstream: many outside addresses on port 53, all day."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 24 * HOUR, n))
    dst = np.array(upstreams)[rng.integers(0, len(upstreams), n)]
    return pd.DataFrame({"timestamp": ts, "src_ip": src, "dst_ip": dst, "proto": "udp", "port": 53,
                         "up_bytes": rng.integers(60, 120, n), "down_bytes": rng.integers(100, 500, n)})


def baseline() -> pd.DataFrame:
    base = make_office_day(seed=1)
    extra = [_forwarding(11), _forwarding(13, FORWARDER, [f"192.5.{i}.30" for i in range(20)], 300)]
    for i, h in enumerate((f"{NET}.2", f"{NET}.3", f"{NET}.4")):  # a public resolver some people use
        extra.append(_dns(_spread(6, seed=20 + i), h, SHARED_PUBLIC))
    extra.append(_dns(_spread(5, seed=24), f"{NET}.15", RARE_RESOLVER))  # and one only a single host uses
    return pd.concat([base, *extra], ignore_index=True).sort_values("timestamp", kind="stable")


def make_test_day() -> pd.DataFrame:
    day = make_office_day(seed=2)
    # the forwarder reaches other authoritative servers today (none of them seen yesterday)
    extra = [_forwarding(12), _forwarding(14, FORWARDER, [f"199.7.{i}.53" for i in range(20)], 300)]
    # --- anomalies --------------------------------------------------------------------------
    extra.append(_dns(_periodic(300, 0, 24, seed=1), BEACON, C2_RESOLVER, up=72, down=160))
    extra.append(_dns(_periodic(600, 2, 4, jitter=0.1, seed=2), NIGHT, DNS_SERVER, up=130, down=300))
    newcomer = make_office_day(seed=7)
    extra.append(newcomer[newcomer.src_ip == f"{NET}.20"].assign(src_ip=NEW_NIGHT))
    extra.append(_dns(_periodic(900, 1, 4, jitter=0.1, seed=10), NEW_NIGHT, DNS_SERVER, up=130, down=300))
    extra.append(_dns(_periodic(600, 9, 18, seed=11), RELAY, f"{NET}.17"))
    rng = np.random.default_rng(3)
    n = 2500
    extra.append(_dns(_spread(n, 0, 24, seed=4), TUNNEL_EXT, TUNNEL_RESOLVER,
                      up=rng.integers(500, 900, n), down=rng.integers(100, 300, n)))
    extra.append(_dns(_spread(n, 0, 24, seed=5), TUNNEL_NIGHT, DNS_SERVER,
                      up=rng.integers(500, 900, n), down=rng.integers(100, 300, n)))
    # --- benign changes ---------------------------------------------------------------------
    late = make_office_day(seed=4)
    late = late[late.src_ip == LATE].assign(timestamp=lambda d: d.timestamp + 4 * HOUR)  # 12-23h
    day = day[day.src_ip != LATE]
    extra.append(late)
    extra.append(_dns(_spread(40, 9, 18, seed=6), PUBLIC_USER, SHARED_PUBLIC))
    more = make_office_day(seed=5)
    extra.append(more[more.src_ip == VOLUME_UP])
    laptop = make_office_day(seed=6)
    extra.append(laptop[laptop.src_ip == f"{NET}.3"].assign(src_ip=NEW_LAPTOP))
    extra.append(_dns(_spread(6, 14, 15, seed=7), ONE_LOOKUP, ONE_OFF_RESOLVER))
    extra.append(_dns(_spread(10, 3 + 10 / 60, 3 + 12 / 60, seed=8), WAKE, DNS_SERVER))
    extra.append(_dns(_spread(30, 9, 18, seed=9), RARE_USER, RARE_RESOLVER))
    extra.append(_dns(_spread(25, 9, 18, seed=10), ODD_INTERNAL, f"{NET}.19"))
    return pd.concat([day, *extra], ignore_index=True).sort_values("timestamp", kind="stable")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    from flowsiem.detect import DetectOptions, detect
    from flowsiem.profile import ProfileOptions, build_profile

    d = tmp_path_factory.mktemp("cnc")
    baseline().to_parquet(d / "data.parquet", index=False)
    make_test_day().to_parquet(d / "test.parquet", index=False)
    build_profile(d / "data.parquet", d / "profile", options=ProfileOptions())
    res = detect(d / "test.parquet", d / "profile", d / "out", options=DetectOptions(disable=_others()))
    res.dir = d
    return res


def _by_rule(res, rid):
    return {a.source_ip: a for a in res.alerts if a.rule.id == rid}


def _ev(alert, prefix):
    hits = [e for e in alert.evidence if e.metric.startswith(prefix)]
    assert hits, f"no evidence '{prefix}' in {[e.metric for e in alert.evidence]}"
    return hits[0]


# --- who is flagged -----------------------------------------------------------------------------

def test_new_resolver_flags_only_the_beaconing_hosts(result):
    # the outside resolver nobody used; the workstation answering on 53 only because of its rhythm
    assert set(_by_rule(result, "cnc.new_resolver")) == {BEACON, RELAY}
    assert _by_rule(result, "cnc.new_resolver")[RELAY].details["external"] is False


def test_periodic_dns_flags_only_the_beacons(result):
    assert set(_by_rule(result, "cnc.periodic_dns")) == {BEACON, RELAY}


def test_silent_hours_flags_night_polling(result):
    # the 5-min beacon runs through the night too: DNS alone at silent hours for both; the new
    # host is judged against the network's quiet hours
    assert set(_by_rule(result, "cnc.dns_silent_hours")) == {NIGHT, BEACON, NEW_NIGHT}
    a = _by_rule(result, "cnc.dns_silent_hours")[NEW_NIGHT]
    assert "new today" in a.message and _ev(a, "hours with DNS outside").reference


def test_benign_changes_tunnels_and_resolvers_stay_quiet(result):
    flagged = {a.source_ip for a in result.alerts if a.rule.family == "cnc"}
    for quiet in (LATE, PUBLIC_USER, VOLUME_UP, NEW_LAPTOP, ONE_LOOKUP, DNS_SERVER, FORWARDER, TUNNEL_EXT,
                  TUNNEL_NIGHT, WAKE, RARE_USER, ODD_INTERNAL):
        assert quiet not in flagged, quiet
    # the company DNS server receiving (many) queries is never the flagged device
    assert DNS_SERVER not in {a.destination_ip for a in result.alerts if a.rule.id == "cnc.new_resolver"}
    assert flagged == {BEACON, NIGHT, NEW_NIGHT, RELAY}


# --- evidence and ECS ---------------------------------------------------------------------------

def test_new_resolver_evidence(result):
    a = _by_rule(result, "cnc.new_resolver")[BEACON]
    assert a.destination_ip == C2_RESOLVER
    res = _ev(a, "DNS resolvers used")
    assert res.observed == [C2_RESOLVER] and res.baseline == [DNS_SERVER]
    assert SHARED_PUBLIC in res.reference and DNS_SERVER in res.reference  # the network's resolvers
    flows = _ev(a, "DNS flows to")
    assert flows.unit == "flows" and flows.baseline == 0 and flows.observed >= 250
    assert _ev(a, "hours with DNS").observed == 24
    beacon = _ev(a, "beacon score")
    assert beacon.observed >= beacon.threshold
    q = _ev(a, "bytes sent per DNS query")
    assert q.unit == "bytes" and q.observed == pytest.approx(72) and q.observed < q.threshold
    assert C2_RESOLVER in a.message and "no host used" in a.message and DNS_SERVER in a.message


def test_periodic_dns_evidence(result):
    a = _by_rule(result, "cnc.periodic_dns")[BEACON]
    gap = _ev(a, "median gap")
    assert gap.unit == "seconds" and 270 <= gap.observed <= 330
    disp = _ev(a, "gap dispersion")
    assert disp.observed < disp.threshold < disp.reference  # a timer vs the network's lookups (~0.69)
    p = _ev(a, "chance of so regular gaps")
    assert p.unit == "probability" and p.observed <= p.threshold
    flows = _ev(a, "DNS flows to")
    assert flows.baseline == 0 and flows.observed >= 250
    assert "every ~5 min" in a.message


def test_silent_hours_evidence(result):
    a = _by_rule(result, "cnc.dns_silent_hours")[NIGHT]
    assert a.destination_ip == DNS_SERVER
    d = _ev(a, "DNS queries in the host's away hours")
    assert d.unit == "events" and d.observed == d.reference == len(_periodic(600, 2, 4, jitter=0.1, seed=2))
    share = _ev(a, "share of those among its flows")
    assert share.observed == 1.0 and 0.2 < share.baseline < 0.5  # office hosts: ~35 % DNS
    assert "followed by no connection" in a.message
    hours = _ev(a, "hours with DNS outside")
    assert set(hours.observed) <= {2, 3, 4} and set(hours.baseline) >= set(range(8, 19))
    p = _ev(a, "chance of that many DNS flows")
    rhythm = _ev(a, "chance of so regular gaps")
    both = _ev(a, "both chances combined")
    assert p.unit == rhythm.unit == both.unit == "probability"
    assert both.observed <= both.threshold and p.observed < 1e-4 and rhythm.observed <= rhythm.threshold
    assert "regular every ~10 min" in a.message
    assert "02-03h" in a.message or "02-04h" in a.message


def test_ecs_fields(result):
    cnc = [a for a in result.alerts if a.rule.family == "cnc"]
    assert {a.rule.id for a in cnc} == set(RULES)
    for a in cnc:
        doc = a.to_ecs()
        assert doc["rule"]["category"] == "cnc"
        assert doc["threat"]["technique"]["id"] == ["T1071.004"]
        assert 0 <= doc["event"]["risk_score"] <= 100
        assert doc["source"]["ip"] == a.source_ip and doc["destination"]["ip"] == a.destination_ip
        assert doc["flowsiem"]["evidence"] and all("unit" in e and "observed" in e for e in doc["flowsiem"]["evidence"])
        assert a.examples and all(x["port"] == 53 for x in a.examples)  # example flows are the DNS ones


# --- allowlists and overrides -------------------------------------------------------------------

def test_allowlist_and_thresholds_override(result, tmp_path):
    from flowsiem.detect import DetectOptions, detect

    d = result.dir
    f = tmp_path / "rules.yaml"
    f.write_text(
        "rules:\n"
        "  cnc.new_resolver:\n"
        f"    allowlist: ['{C2_RESOLVER.rsplit('.', 1)[0]}.0/24', '{RELAY}']\n"
        "  cnc.periodic_dns:\n"
        f"    allowlist: ['{BEACON}', '{RELAY}']\n"
        "  cnc.dns_silent_hours:\n"
        "    thresholds: {min_flows: 1000}\n")
    res = detect(d / "test.parquet", d / "profile", tmp_path / "out",
                 options=DetectOptions(rules_file=f, disable=_others(), examples=0))
    assert not [a for a in res.alerts if a.rule.family == "cnc"]


# --- whole-network changes and clean days ---------------------------------------------------------

@pytest.fixture(scope="module")
def office_profile(tmp_path_factory):
    from flowsiem.profile import ProfileOptions, build_profile

    d = tmp_path_factory.mktemp("cnc-office")
    make_office_day(seed=1).to_parquet(d / "data.parquet", index=False)
    build_profile(d / "data.parquet", d / "profile", options=ProfileOptions())
    return d


def _detect_on_office(office_profile, test: pd.DataFrame, name: str):
    from flowsiem.detect import DetectOptions, detect

    test.to_parquet(office_profile / f"{name}.parquet", index=False)
    return detect(office_profile / f"{name}.parquet", office_profile / "profile", office_profile / f"out-{name}",
                  options=DetectOptions(disable=_others(), examples=0))


def test_network_wide_resolver_change_is_not_cnc(office_profile):
    """IT points every host at a new resolver: a reconfiguration, not 30 C&C alerts."""
    test = make_office_day(seed=2)
    test.loc[test.port == 53, "dst_ip"] = "10.9.9.53"   # new internal resolver for everyone
    new_ext = test[test.port == 53].sample(frac=0.5, random_state=1).index
    test.loc[new_ext, "dst_ip"] = "8.8.8.8"                # and half the queries go to a public one
    res = _detect_on_office(office_profile, test, "netchange")
    assert not [a for a in res.alerts if a.rule.family == "cnc"]


def test_clean_next_day_is_quiet(office_profile):
    res = _detect_on_office(office_profile, make_office_day(seed=2), "clean")
    assert not [a for a in res.alerts if a.rule.family == "cnc"]


# --- the statistics -----------------------------------------------------------------------------------

def test_binomial_tail():
    assert binomial_tail(0, 10, 0.3) == 1.0
    assert binomial_tail(11, 10, 0.3) == 0.0
    assert binomial_tail(10, 10, 0.3) == pytest.approx(0.3 ** 10)
    assert binomial_tail(1, 2, 0.5) == pytest.approx(0.75)
    # 12 DNS flows and nothing else, for a host whose traffic is 35 % DNS: very unlikely
    assert binomial_tail(12, 12, 0.35) < 1e-5
    # a late worker's ordinary mix (40 DNS of 110 flows) is not
    assert binomial_tail(40, 110, 0.35) > 0.1


def test_poisson_dispersion_p():
    rng = np.random.default_rng(0)
    random_gaps = rng.exponential(300, 200)
    m = np.median(random_gaps)
    p_random = poisson_dispersion_p(float(np.median(np.abs(random_gaps - m)) / m), len(random_gaps))
    assert p_random > 0.05
    timer = 300 * (1 + 0.1 * rng.standard_normal(200))
    m = np.median(timer)
    assert poisson_dispersion_p(float(np.median(np.abs(timer - m)) / m), len(timer)) < 1e-4
    # few gaps prove little, however regular they look
    assert poisson_dispersion_p(0.2, 4) > 0.01
    # random lookups every ~2 s, counted in whole seconds: rounding makes them look regular
    # (MAD/median 0.5), which says nothing about a timer
    secs = np.unique(np.floor(np.cumsum(rng.exponential(2.0, 5000))))
    gaps = np.diff(secs)
    m = float(np.median(gaps))
    d = float(np.median(np.abs(gaps - m))) / m
    assert d <= 0.5 and poisson_dispersion_p(d, len(gaps)) < 1e-4  # the continuous null is fooled ...
    assert poisson_dispersion_p(d, len(gaps), median_gap_s=m) == 1.0  # ... so gaps of seconds prove nothing
    assert poisson_dispersion_p(None, 10) == 1.0 and poisson_dispersion_p(math.nan, 10) == 1.0


def test_a_busy_hosts_lookups_seconds_apart_are_not_a_rhythm(detect_day):
    """A host four times busier than yesterday resolves names every ~1.5 s all day. Counted one per
    second, random lookups that close look regular (MAD/median 0.45, not 0.69): that is rounding,
    not a timer, and no C&C alert (a holdout day at scale 3 had one)."""
    busy = hosts()[12]
    rng = np.random.default_rng(5)
    def lookups(mean_gap_s, lo_h=8, hi_h=21):  # random lookups, a mean_gap_s apart on average
        n = int((hi_h - lo_h) * 3600 / mean_gap_s)
        ts = np.unique((lo_h * HOUR + np.cumsum(rng.exponential(mean_gap_s, n)) * 100).astype(np.int64))
        return _dns(ts[ts < hi_h * HOUR], busy, DNS_SERVER)
    base = pd.concat([make_office_day(seed=1), lookups(6.0)], ignore_index=True)
    test = pd.concat([make_office_day(seed=2), lookups(1.5)], ignore_index=True)
    res = detect_day(base, test, disable=_others(), examples=0)
    # (lookups that lead nowhere at that rate are cnc.dns_burst's business, not a rhythm's)
    assert not [a for a in res.alerts if a.rule.id == "cnc.periodic_dns" and a.source_ip == busy]


def test_lookups_followed_by_connections_are_not_dns_alone(detect_day):
    """An agent installed today keeps polling its web service after hours: each poll looks the
    name up and connects. DNS is half of the host's traffic then, on a timer, at hours it used to
    be silent -- but not alone, so no cnc.dns_silent_hours (C&C over DNS needs no connection)."""
    host = f"{NET}.25"
    polls = _periodic(1200, 19, 24, seed=31)
    agent = pd.concat([_dns(polls, host, DNS_SERVER, up=80, down=200),
                       rows(polls + 30, host, "20.190.151.7", up=900, down=3000)])
    test = pd.concat([make_office_day(seed=2), agent], ignore_index=True).sort_values("timestamp", kind="stable")
    res = detect_day(baseline(), test, disable=_others())
    assert host not in {a.source_ip for a in res.alerts if a.rule.id == "cnc.dns_silent_hours"}
    # the same polls without the connections are DNS alone: flagged
    alone = pd.concat([make_office_day(seed=2), _dns(polls, host, DNS_SERVER, up=80, down=200)],
                      ignore_index=True).sort_values("timestamp", kind="stable")
    res = detect_day(baseline(), alone, disable=_others())
    assert host in {a.source_ip for a in res.alerts if a.rule.id == "cnc.dns_silent_hours"}


def test_a_timer_whose_lookups_are_followed_by_connections_is_not_dns_beaconing(detect_day):
    """An agent that looks its server up before each check-in makes the host's DNS as regular as a
    C&C client's; the connection two seconds after each lookup says it is name resolution."""
    host = f"{NET}.26"
    polls = _periodic(300, 0, 24, seed=33)
    lookups = _dns(polls, host, C2_RESOLVER, up=75, down=160)
    checkins = rows(polls + 200, host, "20.190.151.7", up=900, down=3000)
    day = make_office_day(seed=2)
    res = detect_day(baseline(), pd.concat([day, lookups, checkins], ignore_index=True).sort_values("timestamp"),
                     disable=_others())
    mine = [a for a in res.alerts if a.source_ip == host]
    assert not [a for a in mine if a.actionable]
    note = next(a for a in mine if a.rule.id == "cnc.new_resolver")
    assert note.severity_name == "low" and "followed by a connection" in note.message
    res = detect_day(baseline(), pd.concat([day, lookups], ignore_index=True).sort_values("timestamp"),
                     disable=_others())
    assert {"cnc.periodic_dns", "cnc.new_resolver"} <= {a.rule.id for a in res.alerts if a.source_ip == host
                                                        and a.actionable}


def test_random_lone_lookups_with_nothing_else_at_night_are_cnc(detect_day):
    """Twelve lookups at random times over 02-05 h (an implant sleeping a random while between
    polls) on a host silent at night, not one connection then: no rhythm to test, but nothing a
    person or an agent does (both connect to what they resolve). The same lookups on a host whose agents connect all night need
    the rhythm, which they do not have."""
    host, left_on = f"{NET}.27", f"{NET}.28"
    polls = np.sort(np.random.default_rng(35).integers(2 * HOUR, 5 * HOUR, 12))
    night_agent = _periodic(900, 0, 7, seed=36)
    base = pd.concat([baseline(), rows(night_agent, left_on, "20.190.151.7", up=900, down=3000)])
    test = pd.concat([make_office_day(seed=2), _dns(polls, host, DNS_SERVER), _dns(polls + 700, left_on, DNS_SERVER),
                      rows(night_agent, left_on, "20.190.151.7", up=900, down=3000)], ignore_index=True)
    res = detect_day(base.sort_values("timestamp", kind="stable"), test.sort_values("timestamp", kind="stable"),
                     disable=_others())
    silent = {a.source_ip: a for a in res.alerts if a.rule.id == "cnc.dns_silent_hours"}
    assert host in silent and silent[host].actionable and "not one connection" in silent[host].message
    rhythm = next(e for e in silent[host].evidence if e.metric.startswith("chance of so regular gaps"))
    assert rhythm.observed > rhythm.threshold  # flagged on the silence, not on a rhythm
    assert left_on not in silent
