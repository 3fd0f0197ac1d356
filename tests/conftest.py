"""Shared test helpers: a small hand-built company day and a one-call profile + detect.

    def test_x(office, detect_day):
        base = office(seed=1)                   # clean day, pandas, seed layout
        test = office(seed=2)                   # the next ordinary day
        test = pd.concat([test, my_anomaly_rows])
        res = detect_day(base, test)            # -> flowsiem.detect.DetectResult
        assert {a.source_ip for a in res.alerts if a.rule.id == "..."} == {...}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

COLUMNS = ["timestamp", "src_ip", "dst_ip", "proto", "port", "up_bytes", "down_bytes"]
NET = "10.9.8"
DNS_SERVER = f"{NET}.250"
WEB_SERVER = f"{NET}.251"
POPULAR = ["142.250.184.243", "157.240.212.35", "88.157.217.145", "13.107.42.14", "104.244.42.129",
           "185.15.58.224", "3.160.132.100", "104.26.3.211"]
PUBLIC_SERVER = "200.0.0.11"
HOUR = 360000  # centiseconds


def hosts(n: int = 30) -> list[str]:
    return [f"{NET}.{i}" for i in range(1, n + 1)]


def make_office_day(seed: int = 1, n_hosts: int = 30, flows_per_host=(150, 400)) -> pd.DataFrame:
    """An ordinary office day: every host uses the internal DNS and web servers and popular HTTPS
    sites during working hours (08–19h), with per-host volumes. Vectorised, deterministic."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, h in enumerate(hosts(n_hosts)):
        hr = np.random.default_rng(1000 + i)  # per-host traits stable across days
        n = int(rng.integers(*flows_per_host))
        up_scale = hr.uniform(4000, 12000)
        ts = np.sort(rng.integers(8 * HOUR, 19 * HOUR, n))
        kind = rng.choice(3, n, p=[0.35, 0.15, 0.5])
        dst = np.where(kind == 0, DNS_SERVER, np.where(kind == 1, WEB_SERVER,
                                                       np.array(POPULAR)[rng.integers(0, len(POPULAR), n)]))
        proto = np.where(kind == 0, "udp", "tcp")
        port = np.where(kind == 0, 53, 443)
        up = np.where(kind == 0, rng.integers(60, 200, n), rng.lognormal(np.log(up_scale), 0.5, n).astype(int))
        down = np.where(kind == 0, rng.integers(80, 400, n), rng.lognormal(np.log(60000), 0.8, n).astype(int))
        frames.append(pd.DataFrame({"timestamp": ts, "src_ip": h, "dst_ip": dst, "proto": proto, "port": port,
                                    "up_bytes": up, "down_bytes": down}))
    return pd.concat(frames, ignore_index=True).sort_values("timestamp", kind="stable").reset_index(drop=True)


def make_clients_day(seed: int = 1, n_clients: int = 150) -> pd.DataFrame:
    """External clients of one public HTTPS server: mostly daytime, per-client volumes."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_clients):
        c = f"82.155.{100 + i // 200}.{i % 200 + 1}"
        n = int(np.random.default_rng(5000 + i).integers(5, 80))
        ts = rng.normal(14 * HOUR, 3 * HOUR, n).clip(0, 24 * HOUR - 1).astype(int)
        frames.append(pd.DataFrame({"timestamp": np.sort(ts), "src_ip": c, "dst_ip": PUBLIC_SERVER, "proto": "tcp",
                                    "port": 443, "up_bytes": rng.integers(800, 20000, n),
                                    "down_bytes": rng.integers(7000, 150000, n)}))
    return pd.concat(frames, ignore_index=True).sort_values("timestamp", kind="stable").reset_index(drop=True)


def rows(timestamps, src, dst, proto="tcp", port=443, up=1000, down=1000) -> pd.DataFrame:
    """Flows from `src` to `dst` at the given centisecond timestamps (for injecting anomalies)."""
    ts = np.asarray(list(timestamps), dtype=np.int64)
    n = len(ts)
    return pd.DataFrame({"timestamp": ts, "src_ip": src, "dst_ip": dst, "proto": proto, "port": port,
                         "up_bytes": np.broadcast_to(up, n).astype(np.int64),
                         "down_bytes": np.broadcast_to(down, n).astype(np.int64)})


def with_lookups(flows: pd.DataFrame, share: float = 0.5, seed: int = 5) -> pd.DataFrame:
    """The flows with a DNS lookup to the company resolver one second before `share` of them
    (software finding its server by name, the answer cached in between)."""
    rng = np.random.default_rng(seed)
    looked = flows[rng.random(len(flows)) < share]
    dns = pd.concat([rows(g.timestamp - 100, src, DNS_SERVER, proto="udp", port=53, up=70, down=120)
                     for src, g in looked.groupby("src_ip")] or [flows.iloc[:0]], ignore_index=True)
    return pd.concat([flows, dns], ignore_index=True)


@pytest.fixture
def office():
    return make_office_day


@pytest.fixture
def clients():
    return make_clients_day


@pytest.fixture
def detect_day(tmp_path):
    """profile(base[, servers_base]) then detect(test[, servers]); returns the DetectResult."""
    from flowsiem.detect import DetectOptions, detect
    from flowsiem.profile import ProfileOptions, build_profile

    counter = {"n": 0}

    def run(base: pd.DataFrame, test: pd.DataFrame, servers: pd.DataFrame | None = None,
            servers_base: pd.DataFrame | None = None, rules: Path | None = None, disable=None,
            examples: int = 3):
        counter["n"] += 1
        d = tmp_path / f"case{counter['n']}"
        d.mkdir()
        base.to_parquet(d / "data.parquet", index=False)
        test.to_parquet(d / "test.parquet", index=False)
        sb = None
        if servers_base is not None:
            servers_base.to_parquet(d / "servers_data.parquet", index=False)
            sb = d / "servers_data.parquet"
        sv = None
        if servers is not None:
            servers.to_parquet(d / "servers.parquet", index=False)
            sv = d / "servers.parquet"
        build_profile(d / "data.parquet", d / "profile", servers=sb, options=ProfileOptions())
        return detect(d / "test.parquet", d / "profile", d / "out", servers=sv,
                      options=DetectOptions(rules_file=rules, disable=list(disable or []), examples=examples))

    return run
