"""`flowsiem profile` on simulated days: exactly the network and servers the simulator built."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flowsiem import simulate
from flowsiem.profile import ProfileOptions, build_profile

CASES = [("obvious", 1), ("stealthy", 2), ("drift", 3), ("clean", 4), ("botnet", 5), ("exfil", 11), ("cnc", 23)]


@pytest.mark.parametrize("scenario,seed", CASES)
def test_profile_names_network_and_servers(tmp_path, scenario, seed):
    simulate.generate(scenario, seed=seed, scale=0.03, out_dir=tmp_path / "days")
    truth = json.loads((tmp_path / "days" / "truth.json").read_text())
    res = build_profile(tmp_path / "days" / "data.parquet", tmp_path / "prof",
                        servers=tmp_path / "days" / "servers.parquet", options=ProfileOptions())
    p = res.profile
    assert p["internal_networks"] == truth["internal_networks"]
    got = {s["ip"]: sorted((x["proto"], x["port"]) for x in s["services"]) for s in p["internal_servers"]}
    want = {s["ip"]: sorted((x["proto"], x["port"]) for x in s["services"]) for s in truth["internal_servers"]}
    assert got == want
    assert {s["ip"] for s in p["public_servers"]["servers"]} == {s["ip"] for s in truth["public_servers"]}

    # Statistics against an independent pandas computation on the same file.
    day = pd.read_parquet(tmp_path / "days" / "data.parquet")
    prefix = truth["internal_networks"][0].rsplit(".", 1)[0] + "."
    di = day.dst_ip.str.startswith(prefix)
    for cls, g in (("internal_internal", day[di]), ("internal_external", day[~di])):
        got_c = p["traffic"][cls]
        assert got_c["flows"] == len(g)
        for col in ("up_bytes", "down_bytes"):
            want_d = g[col].describe()
            for stat in ("mean", "std", "min", "25%", "50%", "75%", "max"):
                assert got_c["describe"][col][stat] == pytest.approx(want_d[stat], rel=1e-9), (cls, col, stat)
    by_hour = [int((day.timestamp // 360000 == h).sum()) for h in range(24)]
    assert p["hours"]["flows_by_hour"] == by_hour
