"""The simulator: layout, determinism, realism of the clean day, and that every injected anomaly
(and benign change) is really in the flows the way truth.json says."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowsiem import simulate
from flowsiem.errors import UsageError
from flowsiem.simulate.model import build_world

SCALE = 0.05
FILES = ("data.parquet", "test.parquet", "servers.parquet", "servers_data.parquet")
SCHEMA = pa.schema([
    ("timestamp", pa.int64()), ("src_ip", pa.string()), ("dst_ip", pa.string()), ("proto", pa.string()),
    ("port", pa.int32()), ("up_bytes", pa.int64()), ("down_bytes", pa.int64()),
])


class Day:
    """A generated directory, read once."""

    def __init__(self, path: Path):
        self.path = path
        self.truth = json.loads((path / "truth.json").read_text())
        self.net = ipaddress.ip_network(self.truth["internal_networks"][0])
        self._frames: dict[str, pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._frames:
            self._frames[name] = pq.read_table(self.path / f"{name}.parquet").to_pandas()
        return self._frames[name]

    def internal(self, s: pd.Series) -> pd.Series:
        lo, hi = int(self.net.network_address), int(self.net.broadcast_address)
        ints = s.map(lambda x: int(ipaddress.IPv4Address(x)))
        return (ints >= lo) & (ints <= hi)

    def anomalies(self, kind: str) -> list[dict]:
        return [a for a in self.truth["anomalies"] if a["kind"] == kind]


def _gen(tmp_path_factory, scenario: str, seed: int, scale: float = SCALE, name: str | None = None) -> Day:
    out = tmp_path_factory.mktemp(name or f"{scenario}-{seed}-{scale}")
    simulate.generate(scenario, seed=seed, scale=scale, out_dir=out)
    return Day(out)


@pytest.fixture(scope="module")
def obvious(tmp_path_factory) -> Day:
    return _gen(tmp_path_factory, "obvious", 3)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Day:
    return _gen(tmp_path_factory, "clean", 3)


@pytest.fixture(scope="module")
def obvious_many(tmp_path_factory) -> list[Day]:
    return [_gen(tmp_path_factory, "obvious", s, 0.03) for s in (0, 1, 2, 4, 5, 6)]


@pytest.fixture(scope="module")
def stealthy_many(tmp_path_factory) -> list[Day]:
    return [_gen(tmp_path_factory, "stealthy", s, 0.03) for s in (0, 1, 2, 4)]


@pytest.fixture(scope="module")
def drift_many(tmp_path_factory) -> list[Day]:
    return [_gen(tmp_path_factory, "drift", s, 0.03) for s in (1, 2, 8)]


@pytest.fixture(scope="module")
def family_days(tmp_path_factory) -> list[Day]:
    return [_gen(tmp_path_factory, sc, s, 0.03) for sc, s in (("botnet", 1), ("abuse", 2), ("cnc", 3), ("abuse", 7))]


# --- API -----------------------------------------------------------------------------------------


def test_scenarios_registry():
    for name in ("obvious", "stealthy", "drift", "clean", "botnet", "exfil", "cnc", "abuse"):
        sc = simulate.SCENARIOS[name]
        assert sc.name == name
        assert sc.description and "\n" not in sc.description
    assert simulate.SCENARIOS["clean"].clean and not simulate.SCENARIOS["obvious"].clean


def test_unknown_scenario_raises(tmp_path):
    with pytest.raises(UsageError, match=r"unknown scenario 'nope' \(choose one of: obvious, "):
        simulate.generate("nope", seed=0, scale=0.01, out_dir=tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("scale", [0, -1, math.nan, math.inf, "x"])
def test_bad_scale_raises(tmp_path, scale):
    with pytest.raises(UsageError, match="scale"):
        simulate.generate("clean", seed=0, scale=scale, out_dir=tmp_path)


def test_bad_seed_raises(tmp_path):
    with pytest.raises(UsageError, match="seed"):
        simulate.generate("clean", seed=-1, scale=0.01, out_dir=tmp_path)


def test_summary_and_files(obvious):
    t = obvious.truth
    for f in FILES:
        assert (obvious.path / f).exists()
        assert t["rows"][f] == pq.ParquetFile(obvious.path / f).metadata.num_rows
    assert not list(obvious.path.glob(".*partial"))


def test_progress_is_used(tmp_path):
    calls = []

    class P:
        def task(self, description, total=None):
            calls.append(("task", description, total))
            return len(calls)

        def advance(self, task, amount=1.0):
            calls.append(("advance", task, amount))

    summary = simulate.generate("clean", seed=1, scale=0.01, out_dir=tmp_path, progress=P())
    tasks = [c for c in calls if c[0] == "task"]
    assert len(tasks) == 4 and all(c[2] == 144 for c in tasks)
    assert sum(c[2] for c in calls if c[0] == "advance") == 4 * 144
    assert summary["anomalies"] == 0 and summary["benign"] > 0
    assert set(summary["rows"]) == set(FILES)


def test_cli_generate(tmp_path):
    from typer.testing import CliRunner

    from flowsiem.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--out", str(tmp_path), "--list"])
    assert res.exit_code == 0 and "obvious" in res.output and "stealthy" in res.output
    res = runner.invoke(app, ["generate", "--out", str(tmp_path / "d"), "--scenario", "cnc", "--seed", "2",
                              "--scale", "0.01", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "d" / "truth.json").read_text())["scenario"] == "cnc"


# --- layout --------------------------------------------------------------------------------------


def test_schema_types_and_order(obvious):
    for f in FILES:
        table = pq.read_table(obvious.path / f)
        assert table.schema.equals(SCHEMA), (f, table.schema)
        assert table.num_rows > 0
        assert all(table.column(c).null_count == 0 for c in table.column_names)
        ts = table.column("timestamp").to_numpy()
        assert ts.min() >= 0 and ts.max() <= 8_639_999
        assert np.all(np.diff(ts) >= 0), f"{f} not sorted by timestamp"
        assert set(table.column("proto").to_pylist()) <= {"tcp", "udp"}
        assert (table.column("up_bytes").to_numpy() > 0).all()
        assert (table.column("down_bytes").to_numpy() > 0).all()


def test_determinism(tmp_path, obvious):
    again = tmp_path / "again"
    simulate.generate("obvious", seed=3, scale=SCALE, out_dir=again)
    for f in FILES:
        assert pq.read_table(again / f).equals(pq.read_table(obvious.path / f)), f
        assert (again / f).read_bytes() == (obvious.path / f).read_bytes(), f
    t1 = json.loads((again / "truth.json").read_text())
    t2 = dict(obvious.truth)
    t1.pop("generator"), t2.pop("generator")
    assert t1 == t2


def _without_timing(truth_json: bytes) -> bytes:
    """truth.json's bytes with generator.seconds (a wall-clock timing, different on every run) zeroed."""
    out, n = re.subn(rb'("generator": \{\s*"version": \d+,\s*"seconds": )[-+0-9.eE]+', rb"\g<1>0", truth_json)
    assert n == 1
    return out


@pytest.mark.parametrize("scenario,seed,scale", [("obvious", 3, SCALE), ("drift", 8, 0.02)])
def test_test_day_only_is_byte_identical(tmp_path, obvious, scenario, seed, scale):
    """generate(test_day_only=True) writes the full run's test-day files, byte for byte, and no clean day."""
    if (scenario, seed, scale) == ("obvious", 3, SCALE):
        full = obvious.path
    else:
        full = tmp_path / "full"
        simulate.generate(scenario, seed=seed, scale=scale, out_dir=full)
    only = tmp_path / "test-day-only"
    summary = simulate.generate(scenario, seed=seed, scale=scale, out_dir=only, test_day_only=True)
    assert sorted(f.name for f in only.iterdir()) == ["servers.parquet", "test.parquet", "truth.json"]
    for f in ("test.parquet", "servers.parquet"):
        assert (only / f).read_bytes() == (full / f).read_bytes(), f
    assert _without_timing((only / "truth.json").read_bytes()) == _without_timing((full / "truth.json").read_bytes())
    # the clean day is drawn (truth.json counts its rows), not written
    assert summary["rows"] == json.loads((full / "truth.json").read_text())["rows"]


def test_clean_day_does_not_depend_on_scenario(obvious, clean):
    for f in ("data.parquet", "servers_data.parquet"):
        assert (obvious.path / f).read_bytes() == (clean.path / f).read_bytes(), f
    assert obvious.truth["internal_servers"] == clean.truth["internal_servers"]


def test_other_seed_other_company(tmp_path_factory, obvious):
    other = _gen(tmp_path_factory, "obvious", 4)
    assert other.truth["internal_networks"] != obvious.truth["internal_networks"]
    assert other.truth["internal_hosts"] != obvious.truth["internal_hosts"]


def test_scale_multiplies_rows(tmp_path_factory, obvious):
    double = _gen(tmp_path_factory, "obvious", 3, 2 * SCALE)
    for f in ("data.parquet", "servers_data.parquet"):
        ratio = double.truth["rows"][f] / obvious.truth["rows"][f]
        assert 1.85 < ratio < 2.15, (f, ratio)
    # about 1 M flows per day file at scale 1
    assert 0.6e6 * SCALE < obvious.truth["rows"]["data.parquet"] < 1.5e6 * SCALE
    assert 0.4e6 * SCALE < obvious.truth["rows"]["servers_data.parquet"] < 1.1e6 * SCALE


def test_worlds_vary_by_seed():
    kinds, nets, sizes = set(), set(), []
    for seed in range(40):
        w = build_world(seed)
        assert 100 <= w.n_hosts <= 250
        assert 2 <= len(w.servers) <= 4
        assert len(set(w.host_ints.tolist())) == w.n_hosts
        net = ipaddress.ip_network(w.cidr)
        assert net.prefixlen == 24
        assert all(ipaddress.ip_address(w.host_ip(i)) in net for i in range(w.n_hosts))
        kinds.add(w.net_kind.split()[0] + w.net_kind.split()[1])
        nets.add(w.cidr)
        sizes.append(w.n_hosts)
    assert len(kinds) >= 3 and len(nets) == 40
    assert max(sizes) - min(sizes) > 60


# --- the clean day looks like the seed ------------------------------------------------------------------


# --- the clean day looks like the seed ------------------------------------------------------------------


def _world_entry(day: Day, kind: str) -> list[dict]:
    return [b for b in day.truth["benign"] if b["kind"] == kind and b["details"]["days"] == "both"]


def _hour(df: pd.DataFrame) -> pd.Series:
    return df.timestamp / 360_000


def _in_window(hour: pd.Series, window, tol: float = 0.1) -> pd.Series:
    """Within [lo, hi) hours, give or take the 10-minute bins the rates are drawn on."""
    lo, hi = window
    return (hour >= lo - tol) & (hour < hi + tol)


def _gaps_s(ts: pd.Series) -> np.ndarray:
    return np.diff(np.sort(ts.to_numpy())) / 100.0


def test_sources_internal_and_servers_match_truth(obvious):
    t = obvious.truth
    servers = {s["ip"]: {(v["proto"], v["port"]) for v in s["services"]} for s in t["internal_servers"]}
    assert 2 <= len(servers) <= 5
    assert any(("udp", 53) in v for v in servers.values()) and any(("tcp", 443) in v for v in servers.values())
    hosts = set(t["internal_hosts"])
    assert 100 <= len(hosts) <= 250
    for name in ("data", "test"):
        df = obvious[name]
        assert obvious.internal(df.src_ip).all(), f"{name}: external source"
    data = obvious["data"]
    assert set(data.src_ip) <= hosts
    assert len(set(data.src_ip)) >= 0.95 * len(hosts)
    internal_dst = data[obvious.internal(data.dst_ip)]
    # in the clean day the servers are used by many clients on their services; the only other
    # internal destinations are the monitoring box's targets
    monitor = _world_entry(obvious, "monitoring_poller")
    polled = internal_dst[~internal_dst.dst_ip.isin(servers)]
    if monitor:
        (m,) = monitor[0]["hosts"]
        svc = monitor[0]["details"]["service"]
        assert set(polled.src_ip) <= {m} and set(zip(polled.proto, polled.port)) <= {(svc["proto"], svc["port"])}
        assert set(polled.dst_ip) <= set(monitor[0]["details"]["targets"])
    else:
        assert polled.empty
    to_servers = internal_dst[internal_dst.dst_ip.isin(servers)]
    clients = to_servers.groupby(["dst_ip", "proto", "port"]).src_ip.nunique()
    for ip, svcs in servers.items():
        assert {(p, q) for (d, p, q), n in clients.items() if d == ip and n >= 3} == svcs
    for ip in t["world"]["absent_on_test_day"]:  # day-to-day noise: a few hosts stay home
        assert ip in hosts and not (obvious["test"].src_ip == ip).any()
    # every host uses DNS
    dns_users = set(data[(data.proto == "udp") & (data.port == 53)].src_ip)
    assert len(dns_users) >= 0.95 * len(set(data.src_ip))


def test_proto_port_mix_resembles_seed(obvious):
    data = obvious["data"]
    internal = obvious.internal(data.dst_ip)
    ext = data[~internal]
    ext_svc = set(zip(ext.proto, ext.port))
    assert ("tcp", 443) in ext_svc and ext_svc <= {("tcp", 443), ("udp", 123), ("udp", 53)}
    assert ((ext.proto == "tcp") & (ext.port == 443)).mean() > 0.85
    # external DNS only from the hosts that use a public resolver, NTP only to the NTP servers
    pub_dns = _world_entry(obvious, "public_resolver")
    dns_ext = ext[ext.port == 53]
    assert set(dns_ext.src_ip) <= set(pub_dns[0]["hosts"] if pub_dns else [])
    ntp = ext[ext.port == 123]
    (ntp_entry,) = _world_entry(obvious, "ntp_sync")
    assert len(ntp) > 0 and set(ntp.dst_ip) <= set(ntp_entry["details"]["servers"])
    assert (ntp.up_bytes == 76).all() and (ntp.down_bytes == 76).all()
    ext = ext[ext.port == 443]
    ii = data[internal & data.port.isin([53, 443])]
    dns_share = ((ii.proto == "udp") & (ii.port == 53)).mean()
    assert 0.25 < dns_share < 0.55  # seed: 40 %
    assert 0.15 < internal.mean() < 0.45  # seed: 30 % internal-internal
    # byte sizes in the seed's ranges
    assert 6000 < ext.up_bytes.median() < 13000 and 45000 < ext.down_bytes.median() < 120000
    dns = ii[ii.port == 53]
    assert 60 <= dns.up_bytes.min() and dns.up_bytes.max() <= 512 and 80 < dns.up_bytes.median() < 320
    # external destinations are real public addresses with a popular head
    ips = ext.dst_ip.drop_duplicates().map(ipaddress.ip_address)
    assert all(ip.is_global for ip in ips)
    top = ext.dst_ip.value_counts(normalize=True)
    assert 0.03 < top.iloc[0] < 0.25 and top.head(25).sum() > 0.6
    # working-hours rhythm with a quiet night (machines left on keep their agents polling)
    hour = data.timestamp // 360_000
    by_hour = hour.value_counts().reindex(range(24), fill_value=0)
    assert by_hour[9:18].sum() > 0.65 * len(data)
    assert 0 < by_hour[0:5].sum() < 0.05 * len(data)
    # heavy-tailed activity per host
    per_host = data.groupby("src_ip").size()
    assert per_host.max() > 5 * per_host.median()


def test_public_servers_files(obvious):
    t = obvious.truth
    pub = {s["ip"]: {(v["proto"], v["port"]) for v in s["services"]} for s in t["public_servers"]}
    assert 1 <= len(pub) <= 3
    for name in ("servers", "servers_data"):
        df = obvious[name]
        assert set(df.dst_ip) <= set(pub)
        for ip, g in df.groupby("dst_ip"):
            assert set(zip(g.proto, g.port)) <= pub[ip]
        assert not obvious.internal(df.src_ip).any()
        assert df.src_ip.nunique() > 100
        web = df[df.port == 443]
        assert 5000 < web.up_bytes.median() < 16000 and 50000 < web.down_bytes.median() < 120000
    sd = obvious["servers_data"]
    hour = sd.timestamp // 360_000
    assert ((hour >= 8) & (hour < 20)).mean() > 0.6


# --- truth ----------------------------------------------------------------------------------------


def test_truth_schema(obvious, clean):
    for day in (obvious, clean):
        t = day.truth
        for key in ("scenario", "seed", "scale", "internal_networks", "internal_servers", "public_servers",
                    "anomalies", "benign", "rows", "files"):
            assert key in t
        for a in t["anomalies"]:
            assert a["family"] in simulate.FAMILY_KINDS and a["kind"] in simulate.FAMILY_KINDS[a["family"]]
            assert a["hosts"] and isinstance(a["details"], dict) and a["details"]["flows"] > 0
        for b in t["benign"]:
            assert b["kind"] in simulate.BENIGN_KINDS and isinstance(b["hosts"], list)
            assert b["details"]["days"] in ("both", "test")
            assert len(b["hosts"]) == len(set(b["hosts"]))
        kinds = {b["kind"] for b in t["benign"] if b["details"]["days"] == "both"}
        # every company has its routines, on both days
        assert {"periodic_updater", "ntp_sync", "cloud_sync", "evening_client", "search_crawler"} <= kinds
    assert {a["family"] for a in obvious.truth["anomalies"]} == set(simulate.FAMILY_KINDS)
    assert clean.truth["anomalies"] == []
    assert len([b for b in clean.truth["benign"] if b["details"]["days"] == "test"]) >= 5


def test_strength_follows_scenario(obvious, stealthy_many):
    assert all(a["details"]["strength"] >= 0.7 for a in obvious.truth["anomalies"])
    for day in stealthy_many:
        assert {a["family"] for a in day.truth["anomalies"]} == set(simulate.FAMILY_KINDS)
        assert all(a["details"]["strength"] <= 0.3 for a in day.truth["anomalies"])


def test_anomaly_and_benign_hosts_are_disjoint(drift_many):
    for day in drift_many:
        anomalous = {h for a in day.truth["anomalies"] for h in a["hosts"]}
        benign = {h for b in day.truth["benign"] for h in b["hosts"]}
        assert not anomalous & benign
        # one-device changes of the test day are each a different device
        single = [b["hosts"][0] for b in day.truth["benign"]
                  if b["details"]["days"] == "test" and len(b["hosts"]) == 1 and b["kind"] != "periodic_updater"]
        assert len(single) == len(set(single))
        assert len([b for b in day.truth["benign"] if b["details"]["days"] == "test"]) >= 15
        fams = {a["family"] for a in day.truth["anomalies"]}
        assert 2 <= len(fams) <= 3


def test_weak_attacks_keep_independent_style():
    """No cue is tied to strength: weak floods are not forced around the clock, weak beacons are not
    forced into working hours (knobs drawn independently; plans only, no files)."""
    from flowsiem.simulate import routines
    from flowsiem.simulate.inject import make_plan
    from flowsiem.simulate.model import build_clients

    w = build_world(11)
    build_clients(w, 11, 0.05)
    routines.build_routines(w, 11)
    timings, user_only = [], []
    for key in range(40):
        plan = make_plan(w, simulate.SCENARIOS["stealthy"], 11, 0.05, key)
        for a in plan.anomalies:
            if a["kind"] == "flood":
                timings.append(a["details"]["timing"])
            if a["kind"] in ("coordinated_beacon", "star", "dns_new_resolver"):
                user_only.append(a["details"]["only_while_user_active"])
    assert len(set(timings)) >= 2, timings
    assert len(set(user_only)) == 2


# --- anomalies are really in the flows --------------------------------------------------------------------


def _check_timer(ts: pd.Series, period_s: float, min_events: int = 4) -> None:
    assert len(ts) >= min_events
    gaps = _gaps_s(ts)
    assert 0.45 * period_s <= np.median(gaps) <= 1.8 * period_s, (np.median(gaps), period_s)


def _check_day(day: Day, strong: bool) -> None:
    data, test = day["data"], day["test"]
    sd, sv = day["servers_data"], day["servers"]
    hosts_in_test = set(test.src_ip)
    servers = {s["ip"] for s in day.truth["internal_servers"]}
    for a in day.truth["anomalies"]:
        kind, H, D = a["kind"], a["hosts"], a["details"]
        if a["family"] != "external_abuse":
            assert set(H) <= hosts_in_test and set(H) <= set(day.truth["internal_hosts"]), a
            assert not set(H) & servers
        if kind == "p2p_mesh":
            between = lambda df: df[df.src_ip.isin(H) & df.dst_ip.isin(H)]  # noqa: E731
            assert len(between(data)) == 0
            t = between(test)
            assert len(t) == D["flows"] > 0
            assert set(zip(t.proto, t.port)) == {(D["proto"], D["port"])}
            assert (D["proto"], D["port"]) not in {("udp", 53), ("tcp", 443)}
            assert t.src_ip.nunique() >= 2
        elif kind in ("star", "slow_star"):
            hub, pollers = D["hub"], D["pollers"]
            assert set(H) == set(pollers) | {hub} and 2 <= len(pollers) <= 6
            polls = lambda df: df[df.src_ip.isin(pollers) & (df.dst_ip == hub)]  # noqa: E731
            assert len(polls(data)) == 0
            t = polls(test)
            assert set(zip(t.proto, t.port)) == {(D["proto"], D["port"])}
            if kind == "slow_star":
                assert (D["proto"], D["port"]) in {("tcp", 445), ("tcp", 139)}
            for p in pollers:  # each poller polls the hub on a timer
                _check_timer(t[t.src_ip == p].timestamp, D["period_s"][p])
            relay = test[(test.src_ip == hub) & ~test.dst_ip.isin(servers) & ~day.internal(test.dst_ip)]
            if D["relay"]:
                assert (data.dst_ip == D["relay"]["dst_ip"]).sum() == 0
                _check_timer(relay[relay.dst_ip == D["relay"]["dst_ip"]].timestamp, D["relay"]["period_s"])
            out = t.up_bytes.std() / t.up_bytes.mean()
            assert out < 0.6
        elif kind == "coordinated_beacon":
            assert (data.dst_ip == D["dst_ip"]).sum() == 0
            t = test[test.dst_ip == D["dst_ip"]]
            assert len(t) == D["flows"] - D["dns_lookups"]  # an implant resolving its C2's name
            assert set(t.src_ip) == set(H) and 2 <= len(H) <= 6
            assert t.groupby("src_ip").size().min() >= 4
            assert t.up_bytes.std() / t.up_bytes.mean() < 0.5  # similar sizes
            for h in H:
                _check_timer(t[t.src_ip == h].timestamp, D["period_s"][h])
        elif kind == "https_upload":
            (h,) = H
            ext_up = lambda df: df.loc[(df.src_ip == h) & ~day.internal(df.dst_ip), "up_bytes"].sum()  # noqa: E731
            up_d, up_t = ext_up(data), ext_up(test)
            assert up_t > (4 if strong else 1.8) * up_d, (up_t, up_d)
            to_dst = test[(test.src_ip == h) & (test.dst_ip == D["dst_ip"])]
            assert to_dst.up_bytes.sum() >= D["up_bytes"]
            assert abs(D["up_bytes"] - D["target_up_bytes"]) <= 1000 * D["flows"]
            assert D["flows"] == D["expected_flows"]
            assert D["target_up_bytes"] >= 150e6 * day.truth["scale"]
            if D["dst_kind"] != "popular_known":
                assert (data.dst_ip == D["dst_ip"]).sum() == 0
            if D["timing"] != "spread":
                assert _in_window(_hour(to_dst.nlargest(D["flows"], "up_bytes")), D["window_hours"]).all()
            if D["timing"] == "night":
                assert D["window_hours"][1] <= 6 or D["window_hours"][0] >= 20
        elif kind == "dns_tunnel":
            (h,) = H
            q = lambda df: df[(df.src_ip == h) & (df.proto == "udp") & (df.port == 53)]  # noqa: E731
            dd, dt = q(data), q(test)
            assert len(dt) > 2 * len(dd)
            network_dns = data[(data.proto == "udp") & (data.port == 53)]
            assert dt.up_bytes.median() > 1.3 * network_dns.up_bytes.median()
            assert (dt.dst_ip == D["resolver_ip"]).sum() >= D["flows"]
        elif kind == "dns_new_resolver":
            assert (data.dst_ip == D["resolver_ip"]).sum() == 0
            t = test[test.dst_ip == D["resolver_ip"]]
            assert len(t) == D["flows"] >= 6 * len(H)
            assert set(t.src_ip) == set(H) and set(zip(t.proto, t.port)) == {("udp", 53)}
            for h in H:
                _check_timer(t[t.src_ip == h].timestamp, D["period_s"][h], 6)
        elif kind == "dns_off_hours":
            (h,) = H
            lo, hi = (x * 360_000 for x in D["window_hours"])
            win = lambda df: df[(df.src_ip == h) & (df.timestamp >= lo) & (df.timestamp < hi)]  # noqa: E731
            dns = lambda df: df[(df.port == 53) & (df.dst_ip == D["resolver_ip"])]  # noqa: E731
            assert len(dns(win(test))) >= D["flows"] >= 6
            if D["machine_left_on"]:  # its agents run at night on both days; the beacon comes on top
                assert len(dns(win(test))) >= len(dns(win(data))) + D["flows"] * 0.5
            else:
                assert len(win(data)) == 0
                assert set(zip(win(test).proto, win(test).port)) == {("udp", 53)}
        else:  # external abuse
            (c,) = H
            assert not day.internal(pd.Series([c])).any()
            counts = sv.groupby("src_ip").size()
            mine = sv[sv.src_ip == c]
            hour = _hour(mine)
            assert len(mine) == D["flows"] > 0
            assert D["in_clean_day"] == bool((sd.src_ip == c).any())
            others = counts.drop([x for a2 in day.truth["anomalies"] for x in a2["hosts"] if x in counts.index])
            if kind == "flood":
                assert len(mine) > others.quantile(0.99 if D["strength"] >= 0.5 else 0.9)
                if D["timing"] == "burst":
                    assert _in_window(hour, D["window_hours"]).all()
            elif kind == "bulk_download":
                assert mine.down_bytes.median() > 4 * sv.down_bytes.median()
            elif kind == "off_hours":
                assert ((hour < 7) | (hour >= 20.5)).mean() >= 0.6
            elif kind == "unusual_origin":
                assert not D["in_clean_day"]
                assert len(mine) > others.quantile(0.85)
            elif kind == "low_and_slow":  # ordinary volume, spread evenly around the clock
                assert not D["in_clean_day"] and D["origin_block"]
                assert len(mine) <= max(others.quantile(0.99), 30)
                quarters = np.bincount((hour // 6).astype(int), minlength=4) / len(mine)
                assert quarters.min() > 0.1, quarters
                _check_timer(mine.timestamp, D["period_s"], 20)
            elif kind == "deep_night":
                lo, hi = D["window_hours"]
                assert 1.0 <= lo and hi <= 5.0
                assert _in_window(hour, D["window_hours"]).all()
                assert len(mine) <= max(others.quantile(0.99), 30)
            elif kind == "brute_force":
                assert D["origin"] == "hosting provider" and not D["in_clean_day"]
                assert set(mine.dst_ip) == {D["target"]} and set(zip(mine.proto, mine.port)) == {("tcp", D["port"])}
                assert len(mine) > others.quantile(0.95)
                assert mine.up_bytes.std() / mine.up_bytes.mean() < 0.35  # the same attempt again and again
                assert mine.down_bytes.median() < 5000  # short connections


def test_obvious_anomalies_are_in_the_flows(obvious):
    _check_day(obvious, strong=True)


def test_obvious_many_seeds(obvious_many):
    nets = set()
    for day in obvious_many:
        assert {a["family"] for a in day.truth["anomalies"]} == set(simulate.FAMILY_KINDS)
        _check_day(day, strong=True)
        nets.add(day.truth["internal_networks"][0])
    assert len(nets) == len(obvious_many)


def test_stealthy_anomalies_are_in_the_flows(stealthy_many):
    for day in stealthy_many:
        _check_day(day, strong=False)


def test_drift_and_single_family_days(drift_many, family_days):
    for day in drift_many + family_days:
        _check_day(day, strong=False)


def test_every_kind_is_exercised(obvious, obvious_many, stealthy_many, drift_many, family_days):
    days = [obvious, *obvious_many, *stealthy_many, *drift_many, *family_days]
    seen = {a["kind"] for d in days for a in d.truth["anomalies"]}
    assert seen == {k for kinds in simulate.FAMILY_KINDS.values() for k in kinds}
    benign = {b["kind"] for d in days for b in d.truth["benign"]}
    assert benign == set(simulate.BENIGN_KINDS)
    # 2-3 hosts beaconing to the same outside resolver happen
    assert any(len(a["hosts"]) > 1 for d in days for a in d.anomalies("dns_new_resolver"))


def test_stealthy_is_weaker_than_obvious(obvious_many, stealthy_many):
    def upload_ratio(days):
        return [a["details"]["ratio_to_baseline"] for d in days for a in d.anomalies("https_upload")]

    def mesh_rate(days):
        return [a["details"]["expected_flows_per_link"] for d in days for a in d.anomalies("p2p_mesh")]

    ob, st = upload_ratio(obvious_many), upload_ratio(stealthy_many)
    if ob and st:
        assert np.median(st) < np.median(ob)
    ob, st = mesh_rate(obvious_many), mesh_rate(stealthy_many)
    if ob and st:
        assert np.median(st) < np.median(ob)


# --- benign look-alikes ------------------------------------------------------------------------------------


def _check_benign(day: Day) -> None:
    data, test = day["data"], day["test"]
    sd, sv = day["servers_data"], day["servers"]
    servers = {s["ip"] for s in day.truth["internal_servers"]}
    absent = set(day.truth["world"]["absent_on_test_day"])
    flagged = {h for a in day.truth["anomalies"] for h in a["hosts"]}  # not listed as benign
    for b in day.truth["benign"]:
        kind, H, D = b["kind"], b["hosts"], b["details"]
        both = D["days"] == "both"
        if kind == "new_device":
            (h,) = H
            assert (data.src_ip == h).sum() == 0
            t = test[test.src_ip == h]
            assert len(t) > 0
            assert set(t.dst_ip) - servers <= set(D["destinations"])
            assert set(zip(t.proto, t.port)) <= {("udp", 53), ("tcp", 443)}
            if D["rhythm"] == "evening":
                assert (_hour(t) >= 15).mean() > 0.8
            elif D["rhythm"] == "overnight" and len(t) >= 10:
                assert ((_hour(t) < 7) | (_hour(t) >= 19)).mean() > 0.5
        elif kind == "new_popular_destinations":
            (h,) = H
            assert ((data.src_ip == h) & data.dst_ip.isin(D["dst_ips"])).sum() == 0
            if D["expected_flows"] >= 5:
                assert ((test.src_ip == h) & test.dst_ip.isin(D["dst_ips"])).sum() > 0
        elif kind == "busy_external_client":
            (c,) = H
            mine = sv[sv.src_ip == c]
            if D["variant"] == "busier":
                assert (sd.src_ip == c).sum() > 0
                if D["factor"] >= 3 and D["expected_flows"] >= 30:
                    assert len(mine) > (sd.src_ip == c).sum()
            else:  # above the busiest ordinary client of the clean day, business hours, ordinary sizes
                machines = {x for b2 in day.truth["benign"] if b2["kind"] in ("search_crawler", "uptime_monitor",
                                                                             "ssh_admin") for x in b2["hosts"]}
                clean = sd[~sd.src_ip.isin(machines)].groupby("src_ip").size()
                assert len(mine) > 0.6 * clean.max()
                assert ((_hour(mine) >= 7.5) & (_hour(mine) < 20)).all()
                assert 0.5 < mine.down_bytes.median() / day.truth["world"]["medians"]["srv_dn"] < 2
        elif kind == "new_cdn_addresses":
            assert data.dst_ip.isin(D["dst_ips"]).sum() == 0
            assert test[test.dst_ip.isin(D["dst_ips"])].src_ip.nunique() > 1
        elif kind == "periodic_updater":
            dst = set(D["dst_ips"])
            for name, df in (("data", data), ("test", test)):
                polls = df[df.src_ip.isin(H) & df.dst_ip.isin(dst)]
                if name == "data" and not both:  # rolled out today: a vendor address new to everyone
                    assert df.dst_ip.isin(dst).sum() == 0
                    continue
                assert polls.src_ip.nunique() >= 0.9 * len(H), (name, polls.src_ip.nunique(), len(H))
            polls = test[test.src_ip.isin(H) & test.dst_ip.isin(dst)]
            if not both:
                assert _hour(polls).min() >= D["rollout_hour"] - 0.01
            polls = polls[~polls.dst_ip.isin(D["also_browsed"])]  # an endpoint only the agent uses: a timer
            if len(polls):
                busiest = polls.src_ip.value_counts().index[0]
                period = D["period_s"] / np.sqrt(min(day.truth["scale"], 1.0))
                gaps = _gaps_s(polls[polls.src_ip == busiest].timestamp)
                if len(gaps) >= 3:
                    assert 0.5 * period < np.median(gaps) < 1.6 * period
        elif kind == "ntp_sync":
            for df in (data, test):
                ntp = df[(df.port == 123) & (df.proto == "udp")]
                assert set(ntp.dst_ip) <= set(D["servers"])
                assert ntp.src_ip.nunique() >= 0.9 * len(H)
        elif kind == "monitoring_poller":
            (m,) = H
            svc = (D["service"]["proto"], D["service"]["port"])
            for name, df in (("data", data), ("test", test)):
                polls = df[(df.src_ip == m) & (df.proto == svc[0]) & (df.port == svc[1])]
                if name == "data" and not both:
                    assert polls.empty and not ((df.proto == svc[0]) & (df.port == svc[1])).any()
                    continue
                assert set(polls.dst_ip) <= set(D["targets"]) | servers
                assert polls.dst_ip.nunique() >= 0.5 * (len(D["targets"]) + (len(servers) if both else 0))
        elif kind == "nas_backup":
            nas = D["nas_ip"]
            assert nas in servers
            for df in (data, test):
                up = df[(df.dst_ip == nas) & (df.port == D["port"])]
                assert set(up.src_ip) <= set(H) | absent | flagged
                assert up.up_bytes.sum() > 20 * up.down_bytes.sum() / 2
            assert test[test.dst_ip == nas].src_ip.nunique() >= 0.9 * len(H)
            assert data[data.dst_ip == nas].src_ip.nunique() >= 3
        elif kind == "cloud_sync":
            for df in (data, test):
                assert df[df.src_ip.isin(H) & (df.dst_ip == D["dst_ip"])].src_ip.nunique() >= 0.9 * len(H)
        elif kind == "cloud_backup":
            (h,) = H
            assert ((data.src_ip == h) & (data.dst_ip == D["dst_ip"])).sum() > 0  # a service it already used
            t = test[(test.src_ip == h) & (test.dst_ip == D["dst_ip"])]
            assert t.up_bytes.sum() >= D["target_up_bytes"] >= 150e6 * day.truth["scale"]
            assert D["target_up_bytes"] <= 2.1e9 * day.truth["scale"]
            assert t[_in_window(_hour(t), D["window_hours"])].up_bytes.sum() >= D["target_up_bytes"]
        elif kind == "public_resolver":
            n_test, n_data = 0, 0
            for h in H:
                ip = D["resolvers"][h]
                q = lambda df: df[(df.src_ip == h) & (df.dst_ip == ip) & (df.port == 53)]  # noqa: E731
                n_test, n_data = n_test + len(q(test)), n_data + len(q(data))
                if not both:
                    assert len(q(data)) == 0
                # user-driven, not a timer: irregular gaps
                gaps = _gaps_s(q(test).timestamp)
                if len(gaps) >= 20:
                    assert np.std(gaps) / np.mean(gaps) > 0.6
            if both:  # user-driven, so a quiet host may skip it one day
                assert n_test + n_data > 0
            else:
                assert n_test > 0 and n_data == 0
        elif kind == "shared_service":
            hub, users = D["hub"], D["users"]
            assert hub not in servers and 3 <= len(users) <= 8
            use = lambda df: df[(df.dst_ip == hub) & (df.port == D["port"])]  # noqa: E731
            assert use(data).empty
            t = use(test)
            assert set(t.src_ip) == set(users)
            hour = _hour(t)
            assert ((hour >= 6) & (hour < 22)).mean() > 0.9  # working hours
            gaps = np.concatenate([_gaps_s(g.timestamp) for _, g in t.groupby("src_ip") if len(g) > 3] or [np.ones(1)])
            if len(gaps) >= 20:  # human sessions: bursts and pauses, not a timer
                assert np.std(gaps) / np.mean(gaps) > 0.8
        elif kind == "night_worker":
            # the user's own traffic (not the machine's agents, which poll whenever it is on)
            agents = {x for b2 in day.truth["benign"] if b2["details"]["days"] == "both"
                      for x in b2["details"].get("dst_ips", []) + [b2["details"].get("dst_ip")]}
            human = lambda df: df[~df.dst_ip.isin(agents) & (df.port != 123)]  # noqa: E731
            for h in H:
                t = human(test[test.src_ip == h])
                late = ((_hour(t) >= (14 if both else 17)) | (_hour(t) < 5)).mean()
                assert late > 0.6, (h, late)
                if not both:  # a change: much later than on the clean day
                    d = human(data[data.src_ip == h])
                    assert late > ((_hour(d) >= 17) | (_hour(d) < 5)).mean() + 0.3
        elif kind == "late_worker":
            (h,) = H
            assert _hour(test[test.src_ip == h]).max() > D["baseline_end_hour"]
        elif kind == "search_crawler":
            for c in H:
                for df in (sd, sv):
                    mine = df[df.src_ip == c]
                    assert len(mine) > 0 and ((_hour(mine) < 7) | (_hour(mine) >= 20)).mean() > 0.25
        elif kind == "uptime_monitor":
            for c in H:
                for df in (sd, sv):
                    mine = df[df.src_ip == c]
                    assert (_hour(mine) < 6).mean() > 0.2  # around the clock
                    gaps = _gaps_s(mine[mine.dst_ip == mine.dst_ip.iloc[0]].timestamp)
                    period = D["period_s"] / np.sqrt(min(day.truth["scale"], 1.0))
                    assert 0.9 * period < np.median(gaps) < 1.1 * period
        elif kind == "evening_client":
            mine = sv[sv.src_ip.isin(H)]
            assert len(mine) > 0 and (_hour(mine) >= 15).mean() > 0.85
        elif kind == "late_night_client":
            (c,) = H
            mine = sv[sv.src_ip == c]
            share = (_hour(mine) < 3.1).mean()
            assert 0.15 < share < 0.5 and (_hour(mine) >= 18).mean() > 0.45
        elif kind == "ssh_admin":
            for df in (sd, sv):
                assert set(df[df.port == 22].dst_ip) <= {D["server"]}
                assert set(df[df.src_ip.isin(H)].port) <= {22}


def test_benign_changes_are_in_the_flows(clean, obvious, drift_many, family_days):
    for day in (clean, obvious, *drift_many, *family_days):
        _check_benign(day)
    # the clean scenario's test day adds no attacker: external traffic is HTTPS, NTP and DNS to public
    # resolvers; internal destinations are the servers, monitoring targets and shared workstations
    test = clean["test"]
    internal = clean.internal(test.dst_ip)
    assert set(zip(test[~internal].proto, test[~internal].port)) <= {("tcp", 443), ("udp", 123), ("udp", 53)}
    hubs = {b["details"]["hub"] for b in clean.truth["benign"] if b["kind"] == "shared_service"}
    monitors = {h for b in clean.truth["benign"] if b["kind"] == "monitoring_poller" for h in b["hosts"]}
    other = test[internal & ~test.dst_ip.isin({s["ip"] for s in clean.truth["internal_servers"]})]
    users = {u for b in clean.truth["benign"] if b["kind"] == "shared_service" for u in b["details"]["users"]}
    assert set(other.src_ip) <= monitors | users
    assert set(other[~other.src_ip.isin(monitors)].dst_ip) <= hubs


def test_low_and_slow_and_backups_scale_one_volumes(tmp_path_factory):
    """At scale 1 a backup is a few hundred MB to ~2 GB, a weak exfiltration at least ~200 MB."""
    from flowsiem.simulate import routines
    from flowsiem.simulate.inject import make_plan
    from flowsiem.simulate.model import build_clients

    w = build_world(5)
    build_clients(w, 5, 1.0)
    routines.build_routines(w, 5)
    sizes, ups = [], []
    for key in range(12):
        plan = make_plan(w, simulate.SCENARIOS["drift"], 5, 1.0, key)
        sizes += [b["details"]["target_up_bytes"] for b in plan.benign if b["kind"] == "cloud_backup"]
        ups += [a["details"]["target_up_bytes"] for a in plan.anomalies if a["kind"] == "https_upload"]
    assert sizes and all(150e6 <= x <= 2.1e9 for x in sizes)
    assert ups and min(ups) >= 150e6
