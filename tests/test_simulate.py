"""The simulator: layout, determinism, realism of the clean day, and that every injected anomaly
(and benign change) is really in the flows the way truth.json says."""

from __future__ import annotations

import ipaddress
import json
import math
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


def test_sources_internal_and_servers_match_truth(obvious):
    t = obvious.truth
    servers = {s["ip"]: {(v["proto"], v["port"]) for v in s["services"]} for s in t["internal_servers"]}
    assert 2 <= len(servers) <= 4
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
    assert set(internal_dst.dst_ip) == set(servers)  # in the clean day only the servers are contacted
    seen = internal_dst.groupby("dst_ip").apply(lambda g: set(zip(g.proto, g.port)), include_groups=False)
    for ip, svcs in seen.items():
        assert svcs == servers[ip]
    for ip in t["world"]["absent_on_test_day"]:  # day-to-day noise: a few hosts stay home
        assert ip in hosts and not (obvious["test"].src_ip == ip).any()
    # every host uses DNS
    dns_users = set(data[(data.proto == "udp") & (data.port == 53)].src_ip)
    assert len(dns_users) >= 0.95 * len(set(data.src_ip))


def test_proto_port_mix_resembles_seed(obvious):
    data = obvious["data"]
    internal = obvious.internal(data.dst_ip)
    ext = data[~internal]
    assert set(zip(ext.proto, ext.port)) == {("tcp", 443)}
    ii = data[internal]
    assert set(zip(ii.proto, ii.port)) == {("tcp", 443), ("udp", 53)}
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
    # working-hours rhythm with a quiet night
    hour = data.timestamp // 360_000
    by_hour = hour.value_counts().reindex(range(24), fill_value=0)
    assert by_hour[9:18].sum() > 0.7 * len(data)
    assert by_hour[0:5].sum() < 0.03 * len(data)
    # heavy-tailed activity per host
    per_host = data.groupby("src_ip").size()
    assert per_host.max() > 5 * per_host.median()


def test_public_servers_files(obvious):
    t = obvious.truth
    pub = {s["ip"] for s in t["public_servers"]}
    assert 1 <= len(pub) <= 3
    for name in ("servers", "servers_data"):
        df = obvious[name]
        assert set(df.dst_ip) <= pub
        assert set(zip(df.proto, df.port)) == {("tcp", 443)}
        assert not obvious.internal(df.src_ip).any()
        assert df.src_ip.nunique() > 100
        assert 5000 < df.up_bytes.median() < 16000 and 50000 < df.down_bytes.median() < 120000
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
    assert {a["family"] for a in obvious.truth["anomalies"]} == set(simulate.FAMILY_KINDS)
    assert clean.truth["anomalies"] == []
    assert clean.truth["benign"]


def test_strength_follows_scenario(obvious, stealthy_many):
    assert all(a["details"]["strength"] >= 0.7 for a in obvious.truth["anomalies"])
    for day in stealthy_many:
        assert {a["family"] for a in day.truth["anomalies"]} == set(simulate.FAMILY_KINDS)
        assert all(a["details"]["strength"] <= 0.3 for a in day.truth["anomalies"])


def test_anomaly_and_benign_hosts_are_disjoint(tmp_path_factory):
    day = _gen(tmp_path_factory, "drift", 8, 0.02)
    anomalous = {h for a in day.truth["anomalies"] for h in a["hosts"]}
    benign = [h for b in day.truth["benign"] for h in b["hosts"]]
    assert len(benign) == len(set(benign))
    assert not anomalous & set(benign)
    assert len(day.truth["benign"]) >= 10
    fams = {a["family"] for a in day.truth["anomalies"]}
    assert 2 <= len(fams) <= 3


# --- anomalies are really in the flows --------------------------------------------------------------------


def _check_day(day: Day, strong: bool) -> None:
    data, test = day["data"], day["test"]
    sd, sv = day["servers_data"], day["servers"]
    hosts_in_test = set(test.src_ip)
    for a in day.truth["anomalies"]:
        kind, H, D = a["kind"], a["hosts"], a["details"]
        if a["family"] != "external_abuse":
            assert set(H) <= hosts_in_test and set(H) <= set(day.truth["internal_hosts"]), a
        if kind == "p2p_mesh":
            between = lambda df: df[df.src_ip.isin(H) & df.dst_ip.isin(H)]  # noqa: E731
            assert len(between(data)) == 0
            t = between(test)
            assert len(t) == D["flows"] > 0
            assert set(zip(t.proto, t.port)) == {(D["proto"], D["port"])}
            assert (D["proto"], D["port"]) not in {("udp", 53), ("tcp", 443)}
            assert t.src_ip.nunique() >= 2
        elif kind == "coordinated_beacon":
            assert (data.dst_ip == D["dst_ip"]).sum() == 0
            t = test[test.dst_ip == D["dst_ip"]]
            assert len(t) == D["flows"]
            assert set(t.src_ip) == set(H)
            assert t.groupby("src_ip").size().min() >= 4
            assert t.up_bytes.std() / t.up_bytes.mean() < 0.5  # similar sizes
        elif kind == "https_upload":
            (h,) = H
            up_d = data.loc[data.src_ip == h, "up_bytes"].sum()
            up_t = test.loc[test.src_ip == h, "up_bytes"].sum()
            assert up_t > (10 if strong else 2) * up_d, (up_t, up_d)
            to_dst = test[(test.src_ip == h) & (test.dst_ip == D["dst_ip"])]
            assert to_dst.up_bytes.sum() >= D["up_bytes"]
            assert abs(D["up_bytes"] - D["target_up_bytes"]) <= 1000 * D["flows"]
            assert D["flows"] == D["expected_flows"]
            if D["dst_kind"] != "popular_known":
                assert (data.dst_ip == D["dst_ip"]).sum() == 0
        elif kind == "dns_tunnel":
            (h,) = H
            q = lambda df: df[(df.src_ip == h) & (df.proto == "udp") & (df.port == 53)]  # noqa: E731
            dd, dt = q(data), q(test)
            assert len(dt) > 2 * len(dd)
            network_dns = data[(data.proto == "udp") & (data.port == 53)]
            assert dt.up_bytes.median() > 1.3 * network_dns.up_bytes.median()
            assert (dt.dst_ip == D["resolver_ip"]).sum() >= D["flows"]
        elif kind == "dns_new_resolver":
            (h,) = H
            assert (data.dst_ip == D["resolver_ip"]).sum() == 0
            t = test[test.dst_ip == D["resolver_ip"]]
            assert len(t) == D["flows"] >= 6
            assert set(t.src_ip) == {h} and set(zip(t.proto, t.port)) == {("udp", 53)}
        elif kind == "dns_off_hours":
            (h,) = H
            lo, hi = (x * 360_000 for x in D["window_hours"])
            win = lambda df: df[(df.src_ip == h) & (df.timestamp >= lo) & (df.timestamp < hi)]  # noqa: E731
            assert len(win(data)) == 0
            t = win(test)
            assert len(t) >= D["flows"] >= 6
            assert set(zip(t.proto, t.port)) == {("udp", 53)}
        else:  # external abuse
            (c,) = H
            assert not day.internal(pd.Series([c])).any()
            counts = sv.groupby("src_ip").size()
            mine = sv[sv.src_ip == c]
            assert len(mine) == D["flows"] > 0
            assert D["in_clean_day"] == bool((sd.src_ip == c).any())
            others = counts.drop([x for a2 in day.truth["anomalies"] for x in a2["hosts"] if x in counts.index])
            if kind == "flood":
                assert len(mine) > others.quantile(0.99 if D["strength"] >= 0.5 else 0.9)
                if D["strength"] < 0.4:
                    assert D["around_the_clock"]
                    hour = mine.timestamp / 360_000
                    assert ((hour < 7) | (hour >= 20.5)).mean() > 0.25
            elif kind == "bulk_download":
                assert mine.down_bytes.median() > 4 * sv.down_bytes.median()
            elif kind == "off_hours":
                hour = mine.timestamp / 360_000
                assert ((hour < 7) | (hour >= 20.5)).mean() >= 0.6
            elif kind == "unusual_origin":
                assert not D["in_clean_day"]
                assert len(mine) > others.quantile(0.85)


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


# --- benign changes ---------------------------------------------------------------------------------------


def test_benign_changes_are_in_the_flows(clean, obvious):
    for day in (clean, obvious):
        data, test = day["data"], day["test"]
        servers = {s["ip"] for s in day.truth["internal_servers"]}
        for b in day.truth["benign"]:
            kind, H, D = b["kind"], b["hosts"], b["details"]
            if kind == "new_device":
                (h,) = H
                assert (data.src_ip == h).sum() == 0
                t = test[test.src_ip == h]
                assert len(t) > 0
                ext = set(t.dst_ip) - servers
                assert ext <= set(D["popular_destinations"])
                assert set(zip(t.proto, t.port)) <= {("udp", 53), ("tcp", 443)}
            elif kind == "new_popular_destinations":
                (h,) = H
                assert ((data.src_ip == h) & data.dst_ip.isin(D["dst_ips"])).sum() == 0
                assert ((test.src_ip == h) & test.dst_ip.isin(D["dst_ips"])).sum() > 0
            elif kind == "busy_external_client":
                (c,) = H
                assert (day["servers_data"].src_ip == c).sum() > 0
                assert (day["servers"].src_ip == c).sum() > (day["servers_data"].src_ip == c).sum()
            elif kind == "new_cdn_addresses":
                assert data.dst_ip.isin(D["dst_ips"]).sum() == 0
                assert test[test.dst_ip.isin(D["dst_ips"])].src_ip.nunique() > 1
    # the clean scenario's test day has nothing but ordinary traffic: same services, internal sources
    test = clean["test"]
    internal = clean.internal(test.dst_ip)
    assert set(zip(test[~internal].proto, test[~internal].port)) == {("tcp", 443)}
    assert set(test[internal].dst_ip) <= {s["ip"] for s in clean.truth["internal_servers"]}
