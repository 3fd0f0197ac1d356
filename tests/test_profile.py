"""`flowsiem profile` against an independent pandas computation on a hand-built day."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flowsiem.profile import ProfileOptions, build_profile, parse_bucket

NET = "10.20.30"
DNS, WEB, WEB2 = f"{NET}.250", f"{NET}.251", f"{NET}.252"
EXTERNAL = ["142.250.184.243", "157.240.212.35", "88.157.217.145", "13.107.42.14", "104.244.42.129"]


def _day(seed: int = 1, hosts: int = 40) -> pd.DataFrame:
    """A small clean day in the seed's layout, built without the simulator."""
    rng = np.random.default_rng(seed)
    rows = []
    host_ips = [f"{NET}.{i}" for i in range(1, hosts + 1)]
    for h in host_ips:
        n = int(rng.integers(30, 120))
        ts = np.sort(rng.integers(8 * 360000, 19 * 360000, n))
        kind = rng.choice(["dns", "web", "ext"], n, p=[0.35, 0.2, 0.45])
        for t, k in zip(ts, kind):
            if k == "dns":
                rows.append((t, h, DNS, "udp", 53, int(rng.integers(60, 200)), int(rng.integers(80, 400))))
            elif k == "web":
                rows.append((t, h, rng.choice([WEB, WEB2]), "tcp", 443, int(rng.integers(500, 9000)),
                             int(rng.integers(2000, 90000))))
            else:
                rows.append((t, h, rng.choice(EXTERNAL), "tcp", 443, int(rng.integers(600, 20000)),
                             int(rng.integers(3000, 150000))))
    # Night-time floor of activity and one peer-to-peer pair (a single client: not a service).
    rows.append((2 * 360000 + 5, host_ips[0], DNS, "udp", 53, 70, 90))
    rows.append((10 * 360000, host_ips[1], host_ips[2], "tcp", 445, 1000, 2000))
    df = pd.DataFrame(rows, columns=["timestamp", "src_ip", "dst_ip", "proto", "port", "up_bytes", "down_bytes"])
    return df.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _servers_day(seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    clients = [f"82.155.121.{i}" for i in range(1, 60)] + ["185.15.58.224", "176.9.67.69"]
    rows = []
    for c in clients:
        n = int(rng.integers(5, 50))
        for t in rng.integers(0, 24 * 360000, n):
            rows.append((int(t), c, rng.choice(["200.0.0.11", "200.0.0.12"]), "tcp", 443,
                         int(rng.integers(800, 20000)), int(rng.integers(7000, 200000))))
    return pd.DataFrame(rows, columns=["timestamp", "src_ip", "dst_ip", "proto", "port", "up_bytes", "down_bytes"])


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("profile")
    day, srv = _day(), _servers_day()
    day.to_parquet(d / "data.parquet", index=False)
    srv.to_parquet(d / "servers.parquet", index=False)
    res = build_profile(d / "data.parquet", d / "out", servers=d / "servers.parquet",
                        options=ProfileOptions(bucket="1h", top=10))
    return day, srv, res, d / "out"


def _cls(df: pd.DataFrame) -> pd.Series:
    si = df.src_ip.str.startswith(NET + ".")
    di = df.dst_ip.str.startswith(NET + ".")
    return np.select([si & di, si & ~di, ~si & di], ["internal_internal", "internal_external", "external_internal"],
                     "external_external")


def test_network_and_servers(profiled):
    day, _, res, out = profiled
    p = json.loads((out / "profile.json").read_text())
    assert p["internal_networks"] == [f"{NET}.0/24"]
    assert p["schema_version"] == 1
    servers = {s["ip"]: {(x["proto"], x["port"]) for x in s["services"]} for s in p["internal_servers"]}
    assert servers == {DNS: {("udp", 53)}, WEB: {("tcp", 443)}, WEB2: {("tcp", 443)}}
    for s in p["internal_servers"]:
        for svc in s["services"]:
            sel = day[(day.dst_ip == s["ip"]) & (day.proto == svc["proto"]) & (day.port == svc["port"])]
            assert svc["flows"] == len(sel)
            assert svc["clients"] == sel.src_ip.nunique()


def test_describe_matches_pandas(profiled):
    day, _, res, _ = profiled
    day = day.assign(cls=_cls(day))
    for cls, g in day.groupby("cls"):
        got = res.profile["traffic"][cls]
        assert got["flows"] == len(g)
        assert got["up_bytes"] == g.up_bytes.sum()
        for col in ("port", "up_bytes", "down_bytes"):
            want = g[col].describe()
            have = got["describe"][col]
            for stat in ("count", "mean", "min", "25%", "50%", "75%", "max"):
                assert have[stat] == pytest.approx(want[stat], rel=1e-9), (cls, col, stat)
            if len(g) > 1:
                assert have["std"] == pytest.approx(want["std"], rel=1e-9)


def test_top_tables_match_pandas(profiled):
    day, _, res, out = profiled
    ie = day[_cls(day) == "internal_external"]
    want_dst = ie.dst_ip.value_counts()
    got = res.profile["traffic"]["internal_external"]["top_destinations"]
    assert [(d["ip"], d["flows"]) for d in got] == list(want_dst.sort_index().sort_values(ascending=False, kind="stable").items())[: len(got)]
    ports = res.profile["traffic"]["internal_internal"]["ports"]
    ii = day[_cls(day) == "internal_internal"]
    want_ports = ii.groupby(["proto", "port"]).size().sort_values(ascending=False)
    assert {(x["proto"], x["port"]): x["flows"] for x in ports} == {k: v for k, v in want_ports.items()}
    up = ie.groupby("src_ip").up_bytes.sum().sort_values(ascending=False)
    got_up = res.profile["top_uploaders"]
    assert [(u["ip"], u["up_bytes"]) for u in got_up] == list(up.head(len(got_up)).items())
    first = got_up[0]
    to = ie[ie.src_ip == first["ip"]].groupby("dst_ip").up_bytes.sum().sort_values(ascending=False)
    assert first["destinations"][0]["ip"] == to.index[0]
    assert first["destinations"][0]["up_bytes"] == to.iloc[0]
    # Countries: our per-address enrichment, aggregated independently by pandas.
    ip_info = pd.read_parquet(out / "baseline" / "ip_info.parquet").set_index("ip")
    assert ip_info.loc["142.250.184.243", "country"] == "US" and ip_info.loc["88.157.217.145", "country"] == "PT"
    assert ip_info.loc[DNS, "country"] == "private" and bool(ip_info.loc[DNS, "internal"])
    want_c = ie.dst_ip.map(ip_info.country).value_counts()
    got_c = {c["country"]: c["flows"] for c in res.profile["traffic"]["internal_external"]["countries"]}
    assert got_c == {k: int(v) for k, v in want_c.items()}


def test_timeline_and_hours(profiled):
    day, _, res, _ = profiled
    tl = res.profile["traffic"]["internal_internal"]["timeline"]
    assert tl["bucket_seconds"] == 3600
    ii = day[_cls(day) == "internal_internal"]
    want = ii.groupby(ii.timestamp // 360000).size()
    got = {int(pd.Timestamp(t).hour): n for t, n, _, _ in tl["points"]}
    assert got == {int(k): int(v) for k, v in want.items()}
    by_hour = res.profile["hours"]["flows_by_hour"]
    assert by_hour == [int((day.timestamp // 360000 == h).sum()) for h in range(24)]
    assert 2 in res.profile["hours"]["quiet_hours"] and 12 not in res.profile["hours"]["quiet_hours"]


def test_host_baseline_matches_pandas(profiled):
    day, _, res, out = profiled
    hosts = pd.read_parquet(out / "baseline" / "hosts.parquet").set_index("ip")
    g = day.groupby("src_ip")
    assert set(hosts.index) == set(day.src_ip)
    pd.testing.assert_series_equal(hosts.flows.sort_index(), g.size().sort_index(), check_names=False, check_dtype=False)
    pd.testing.assert_series_equal(hosts.up_bytes.sort_index(), g.up_bytes.sum().sort_index(), check_names=False,
                                   check_dtype=False)
    np.testing.assert_allclose(hosts.up_p50.sort_index(), g.up_bytes.median().sort_index())
    np.testing.assert_allclose(hosts.up_p90.sort_index(), g.up_bytes.quantile(0.9).sort_index())
    hours = day.assign(hour=day.timestamp // 360000).groupby("src_ip").hour
    pd.testing.assert_series_equal(hosts.active_hours.sort_index(), hours.nunique().sort_index(),
                                   check_names=False, check_dtype=False)
    hourly = day.assign(hour=day.timestamp // 360000).pivot_table(
        index="src_ip", columns="hour", values="up_bytes", aggfunc="sum", fill_value=0).reindex(columns=range(24), fill_value=0)
    np.testing.assert_allclose(hosts.hourly_up_median.sort_index(), np.median(hourly.sort_index().values, axis=1))
    h0, h1 = f"{NET}.1", f"{NET}.2"
    assert list(hosts.loc[h0, "resolvers"]) == [DNS]
    assert hosts.loc[h1, "internal_peers"] == 1  # the 445 chatter, not a server
    assert hosts.loc[h0, "internal_peers"] == 0
    edges = pd.read_parquet(out / "baseline" / "edges.parquet")
    assert edges.flows.sum() == len(day)


def test_public_server_clients(profiled):
    _, srv, res, out = profiled
    ps = res.profile["public_servers"]
    assert {s["ip"] for s in ps["servers"]} == {"200.0.0.11", "200.0.0.12"}
    assert ps["clients"]["count"] == srv.src_ip.nunique()
    assert ps["clients"]["flows"] == len(srv)
    assert ps["clients"]["flows_by_hour"] == [int((srv.timestamp // 360000 == h).sum()) for h in range(24)]
    clients = pd.read_parquet(out / "baseline" / "clients.parquet").set_index("ip")
    want = srv.groupby("src_ip").down_bytes.sum()
    pd.testing.assert_series_equal(clients.down_bytes.sort_index(), want.sort_index(), check_names=False, check_dtype=False)
    countries = {c["country"]: c["clients"] for c in ps["clients"]["countries"]}
    assert countries.get("PT", 0) >= 59
    assert ps["clients"]["describe"]["down_bytes"]["50%"] == pytest.approx(srv.down_bytes.median())


def test_internal_option_overrides_inference(tmp_path):
    day = _day(seed=3, hosts=12)
    day.to_parquet(tmp_path / "d.parquet", index=False)
    res = build_profile(tmp_path / "d.parquet", tmp_path / "o", options=ProfileOptions(internal="10.20.0.0/16"))
    assert res.profile["internal_networks"] == ["10.20.0.0/16"]
    assert res.profile["internal_networks_inferred"] is False


def test_parse_bucket():
    assert parse_bucket("10m") == 600 and parse_bucket("1h") == 3600 and parse_bucket("45") == 45
    from flowsiem.errors import UsageError
    with pytest.raises(UsageError):
        parse_bucket("ten minutes")


ZEEK = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "zeek"


@pytest.mark.skipif(not (ZEEK / "m57-zeek42-cindy").exists(), reason="shared Zeek fixtures not present")
def test_profile_real_zeek_log(tmp_path):
    """A real office capture: one /24, the router as DNS/DHCP server, broadcasts are not servers."""
    res = build_profile(ZEEK / "m57-zeek42-cindy" / "conn.log", tmp_path)
    p = res.profile
    assert p["internal_networks"] == ["192.168.1.0/24"]
    servers = {s["ip"]: {(x["proto"], x["port"]) for x in s["services"]} for s in p["internal_servers"]}
    assert set(servers) == {"192.168.1.1"}
    assert ("udp", 53) in servers["192.168.1.1"]
    assert p["hosts"]["resolvers"] == ["192.168.1.1"]
    assert p["input"]["rows"] == 8505 and p["input"]["time_unit"] == "s"
    assert "external_external" not in p["traffic"]  # multicast/broadcast/link-local stay local
    hosts = pd.read_parquet(tmp_path / "baseline" / "hosts.parquet")
    assert "0.0.0.0" not in set(hosts.ip)


ZEEK_ROWS = {"bro22-inp2": 148, "bro-mptcp-2015": 969, "brobeat-bro25-vlan": 6465, "m57-zeek42-cindy": 8505,
             "kishpud-lab-ipv6": 808, "evanswj-json-ipv6": 110, "zat-json-ursnif": 50,
             "honeypot-ssh-bruteforce": 253, "rita-proxy-rolling": 7260}


@pytest.mark.skipif(not ZEEK.exists(), reason="shared Zeek fixtures not present")
@pytest.mark.parametrize("name", sorted(ZEEK_ROWS))
def test_profile_every_real_zeek_log(tmp_path, name):
    """Every real capture profiles (some have no internal server at all) and detect runs on it."""
    from flowsiem.detect import DetectOptions, detect

    res = build_profile(ZEEK / name, tmp_path / "p")
    assert res.profile["input"]["rows"] == ZEEK_ROWS[name]
    assert res.profile["internal_networks"]
    out = detect(ZEEK / name, tmp_path / "p", tmp_path / "d", options=DetectOptions())
    assert (tmp_path / "d" / "alerts.jsonl").exists()
    # The day is its own baseline: nothing changed, so at most a handful of alerts.
    assert len(out.devices) <= 3, [d["evidence"] for d in out.devices]
