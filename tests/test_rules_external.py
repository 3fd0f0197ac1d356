"""external_abuse rules: external clients of the public servers judged against the client population.

One hand-made day holds every case at once (150 ordinary daytime clients of one public HTTPS
server, plus the clients below); it is run with a clean servers day (baseline mode) and without
(each client judged against today's population). Extra runs check the allowlist and that the quiet
hours are learned from the population, not a fixed office window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import HOUR, PUBLIC_SERVER, make_clients_day, make_office_day, rows

FLOOD = "85.240.7.7"        # PT residential address: 3,000 requests in the afternoon
AROUND = "89.152.9.9"       # PT: ~3x the clients' p99, spread evenly over 24 h
BURST = "89.181.6.6"        # PT: 300 requests, all within one hour (an ordinary-looking daily total)
NIGHT = "94.60.3.3"         # PT: a typical number of requests, almost all between 01h and 05h
BULK = "2.80.4.4"           # PT: 40 requests of 2 MB each (clients fetch ~80 kB)
RARE_HEAVY = "5.16.183.107"   # RU ER-Telecom: between the p95 and p99 of flows, around the clock
RARE_QUIET = "175.45.177.10"  # KP: an ordinary daytime client from a rare country (benign)
CRAWLER = "66.249.66.1"     # GOOGLE (US): busy, flat, light responses, there every day (benign)
BUSY = "82.155.100.11"      # a regular client of the clients day, 6x busier than usual, daytime (benign)

FAMILY = "external_abuse"


def _spread(rng, n, lo_h, hi_h):
    return np.sort(rng.integers(int(lo_h * HOUR), int(hi_h * HOUR), n))


def _daytime(rng, n):
    return np.sort(rng.normal(14 * HOUR, 2.5 * HOUR, n).clip(0, 24 * HOUR - 1).astype(np.int64))


def _client(rng, ts, ip, down=(7000, 150000)):
    n = len(ts)
    d = rows(ts, ip, PUBLIC_SERVER, up=rng.integers(800, 20000, n),
             down=rng.integers(*down, n) if isinstance(down, tuple) else down)
    return d


def _crawler(rng):
    return _client(rng, _spread(rng, 300, 0, 24), CRAWLER, down=(8000, 30000))


@pytest.fixture(scope="module")
def days():
    rng = np.random.default_rng(7)
    base_srv = pd.concat([make_clients_day(seed=1), _crawler(rng)], ignore_index=True)
    srv = make_clients_day(seed=2)
    busy_n = int((srv.src_ip == BUSY).sum())
    extra = [
        _client(rng, _daytime(rng, 3000), FLOOD),
        _client(rng, _spread(rng, 500, 0, 24), AROUND),
        _client(rng, _spread(rng, 300, 15, 16), BURST),
        _client(rng, _spread(rng, 60, 1, 5), NIGHT),
        _client(rng, _daytime(rng, 40), BULK, down=2_000_000),
        _client(rng, _spread(rng, 140, 0, 24), RARE_HEAVY),
        _client(rng, _daytime(rng, 40), RARE_QUIET),
        _client(rng, _daytime(rng, 5 * busy_n), BUSY),
        _crawler(rng),
        # the public server's own outgoing flows (updates, at night) in the same file: not a client
        rows(_spread(rng, 2000, 1, 4), PUBLIC_SERVER, "91.189.91.39", up=500, down=200_000),
    ]
    srv = pd.concat([srv, *extra], ignore_index=True).sort_values("timestamp", kind="stable")
    return {"base": make_office_day(seed=1), "test": make_office_day(seed=2), "servers": srv,
            "servers_base": base_srv}


def _run(detect_day, d, baseline=True, **kw):
    return detect_day(d["base"], d["test"], servers=d["servers"],
                      servers_base=d["servers_base"] if baseline else None, examples=1, **kw)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("external")


@pytest.fixture(scope="module")
def results(days, module_tmp):
    """(with a clean servers day, without one): run once for the module."""
    from flowsiem.detect import DetectOptions, detect
    from flowsiem.profile import ProfileOptions, build_profile

    out = {}
    for mode in ("baseline", "today"):
        d = module_tmp / mode
        d.mkdir()
        days["base"].to_parquet(d / "data.parquet", index=False)
        days["test"].to_parquet(d / "test.parquet", index=False)
        days["servers"].to_parquet(d / "servers.parquet", index=False)
        sb = None
        if mode == "baseline":
            days["servers_base"].to_parquet(d / "servers_data.parquet", index=False)
            sb = d / "servers_data.parquet"
        build_profile(d / "data.parquet", d / "profile", servers=sb, options=ProfileOptions())
        out[mode] = detect(d / "test.parquet", d / "profile", d / "out", servers=d / "servers.parquet",
                           options=DetectOptions(examples=1))
    return out


def _by_rule(res):
    got: dict[str, set] = {}
    for a in res.alerts:
        if a.rule.family == FAMILY:
            got.setdefault(a.rule.id, set()).add(a.source_ip)
    return got


def _alert(res, rule_id, ip):
    hits = [a for a in res.alerts if a.rule.id == rule_id and a.source_ip == ip]
    assert len(hits) == 1, f"{rule_id} on {ip}: {[a.message for a in res.alerts if a.source_ip == ip]}"
    return hits[0]


def _ev(alert, metric):
    hits = [e for e in alert.evidence if e.metric == metric]
    assert hits, f"no evidence '{metric}' in {[e.metric for e in alert.evidence]}"
    return hits[0]


@pytest.mark.parametrize("mode", ["baseline", "today"])
def test_each_abuse_is_found_by_its_rule_and_benign_clients_stay_quiet(results, mode):
    got = _by_rule(results[mode])
    assert got.get("external_abuse.request_flood", set()) == {FLOOD, AROUND, BURST}
    assert got.get("external_abuse.off_hours", set()) == {NIGHT}
    assert got.get("external_abuse.bulk_download", set()) == {BULK}
    assert got.get("external_abuse.unusual_origin", set()) == {RARE_HEAVY}
    flagged = {a.source_ip for a in results[mode].alerts if a.rule.family == FAMILY}
    assert not flagged & {RARE_QUIET, CRAWLER, BUSY, PUBLIC_SERVER}, \
        "rarity alone, a daily crawler, a busy regular, the public server itself"
    assert len(flagged) == 6, "no ordinary client of the clients day is flagged"


def test_reference_is_the_baseline_day_or_today(results):
    """The client-population rules say which reference they used; the capture rules (probes,
    password guessing) always judge the day itself."""
    for mode in ("baseline", "today"):
        for a in results[mode].alerts:
            if a.rule.family == FAMILY:
                assert a.details["reference"] == (mode if a.rule.reference == "baseline" else "capture")


def test_flood_evidence_population_and_units(results, days):
    res = results["baseline"]
    a = _alert(res, "external_abuse.request_flood", FLOOD)
    assert a.details["path"] == "extreme"
    flows = _ev(a, "connections (flows) to the public servers")
    assert flows.unit == "flows" and flows.observed == 3000
    assert flows.baseline is None  # a new client: no own baseline
    ref = days["servers_base"]
    per_client = ref[ref.src_ip != CRAWLER].groupby("src_ip").size()
    assert per_client.median() * 0.8 <= flows.reference["median"] <= per_client.median() * 1.2
    assert flows.reference["p99"] < flows.threshold < flows.observed
    served = _ev(a, "bytes served to the client")
    assert served.unit == "bytes" and served.observed == int(days["servers"].loc[
        days["servers"].src_ip == FLOOD, "down_bytes"].sum())
    assert "3,000 connections" in a.message and "99th percentile" in a.message and "not seen on the baseline day" in a.message
    around = _alert(res, "external_abuse.request_flood", AROUND)
    assert around.details["path"] == "around"
    q = _ev(around, "share of its flows in the clients' quiet hours")
    assert q.unit == "share" and q.observed > q.threshold > q.reference["median"]
    assert q.reference["quiet_hours"], "the quiet hours the share is measured in"
    burst = _alert(res, "external_abuse.request_flood", BURST)
    assert burst.details["path"] == "burst"
    peak = _ev(burst, "flows in its busiest hour")
    assert peak.observed == 300 and peak.reference["median"] < 30 < peak.threshold < 300
    assert "300 of them in a single hour" in burst.message


def test_off_hours_bulk_and_origin_evidence(results):
    res = results["baseline"]
    night = _alert(res, "external_abuse.off_hours", NIGHT)
    rarity = next(e for e in night.evidence if e.metric.startswith("hour rarity"))
    assert rarity.unit == "ratio" and rarity.observed >= rarity.threshold >= 5.0
    assert rarity.reference["median_client"] < rarity.threshold and rarity.reference["clients"] > 100
    share = _ev(night, "share of its flows in the clients' quiet hours")
    assert share.observed == 1.0 and share.threshold < 1.0
    assert set(range(1, 5)) <= set(share.reference["quiet_hours"])
    assert set(_ev(night, "its hours").observed) <= {1, 2, 3, 4}
    assert "less frequented than their busiest hour" in night.message and "PT clients" in night.message

    bulk = _alert(res, "external_abuse.bulk_download", BULK)
    per = _ev(bulk, "bytes served per connection (mean)")
    assert per.unit == "bytes" and per.observed == 2_000_000
    assert per.reference["median"] < 100_000 and per.threshold == pytest.approx(3 * per.reference["median"], rel=0.01)
    assert "80.0 MB" in bulk.message and "per connection" in bulk.message

    rare = _alert(res, "external_abuse.unusual_origin", RARE_HEAVY)
    country = _ev(rare, "share of the clients from its country (RU)")
    assert country.observed == 0.0 and country.reference["internal_hosts_using_it"] == 0.0
    assert country.threshold == {"clients": 0.01, "internal_hosts": 0.5}
    assert "0 of 151 from RU" in rare.message and "quiet hours" in rare.message  # 150 clients + the crawler


def test_ecs_fields(results):
    techniques = {"external_abuse.request_flood": "T1498", "external_abuse.off_hours": "T1190",
                  "external_abuse.bulk_download": "T1530", "external_abuse.unusual_origin": "T1595"}
    ours = [a for a in results["baseline"].alerts if a.rule.family == FAMILY]
    assert {a.rule.id for a in ours} == set(techniques)
    for a in ours:
        doc = a.to_ecs()
        assert doc["rule"]["category"] == "external_abuse"
        assert doc["threat"]["technique"]["id"] == [techniques[a.rule.id]]
        assert 0 < doc["event"]["risk_score"] <= 100
        assert doc["source"]["ip"] == a.source_ip and doc["message"].startswith(a.source_ip)
        assert doc["@timestamp"] is not None
        assert all("metric" in e and "unit" in e and "observed" in e for e in doc["flowsiem"]["evidence"])
        assert doc["flowsiem"]["examples"], "example flows come from the servers file"


def test_allowlist_by_address_and_by_org_silences_a_rule(detect_day, days, tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text("rules:\n"
                 "  external_abuse.request_flood:\n"
                 f"    allowlist: ['{FLOOD}/32']\n"
                 "  external_abuse.unusual_origin:\n"
                 "    allowlist: ['org:JSC ER-Telecom Holding']\n")
    res = _run(detect_day, days, rules=f)
    got = _by_rule(res)
    assert got.get("external_abuse.request_flood", set()) == {AROUND, BURST}
    assert "external_abuse.unusual_origin" not in got
    assert got.get("external_abuse.off_hours") == {NIGHT}  # other rules untouched


def test_quiet_hours_are_learned_from_the_population_not_an_office_window(detect_day, days):
    """A night-time population (everyone shifted by 12 h): an afternoon client is the odd one out,
    and the night-time regulars are not."""
    rng = np.random.default_rng(3)
    shift = lambda df: df.assign(timestamp=(df.timestamp + 12 * HOUR) % (24 * HOUR))  # noqa: E731
    day_client = "94.60.5.5"
    srv = pd.concat([shift(make_clients_day(seed=2)), _client(rng, _spread(rng, 60, 13, 17), day_client)],
                    ignore_index=True)
    res = detect_day(days["base"], days["test"], servers=srv, servers_base=shift(make_clients_day(seed=1)))
    assert {a.source_ip for a in res.alerts if a.rule.family == FAMILY} == {day_client}
    (a,) = [a for a in res.alerts if a.rule.family == FAMILY]
    assert a.rule.id == "external_abuse.off_hours"
    assert 14 in _ev(a, "share of its flows in the clients' quiet hours").reference["quiet_hours"]
    assert _ev(a, "its hours").reference["busiest_hour"] in (1, 2, 3)  # the shifted population's afternoon


def test_too_few_clients_to_judge(detect_day, days):
    small = make_clients_day(seed=2, n_clients=12)
    srv = pd.concat([small, rows(range(0, 24 * HOUR, 24 * HOUR // 500), FLOOD, PUBLIC_SERVER)], ignore_index=True)
    res = detect_day(days["base"], days["test"], servers=srv)
    assert not [a for a in res.alerts if a.rule.family == FAMILY]


def test_clients_abroad_keep_their_own_country_hours(detect_day, days):
    """A population with many clients in a far time zone (their afternoon is our night): a new
    client from that country at night is ordinary; a home-country client at the same hours is not."""
    rng = np.random.default_rng(9)
    abroad = lambda seed: make_clients_day(seed=seed, n_clients=60).assign(  # noqa: E731
        src_ip=lambda d: "73.94." + d.src_ip.str.split(".").str[2:].str.join("."),
        timestamp=lambda d: (d.timestamp + 10 * HOUR) % (24 * HOUR))
    base = pd.concat([make_clients_day(seed=1), abroad(11)], ignore_index=True)
    srv = pd.concat([make_clients_day(seed=2), abroad(12), _client(rng, _spread(rng, 60, 1, 5), "73.94.9.9"),
                     _client(rng, _spread(rng, 60, 1, 5), NIGHT)], ignore_index=True)
    res = detect_day(days["base"], days["test"], servers=srv, servers_base=base)
    off = {a.source_ip for a in res.alerts if a.rule.id == "external_abuse.off_hours" and a.actionable}
    assert NIGHT in off and "73.94.9.9" not in off
