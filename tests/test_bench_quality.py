"""bench/quality.py --merge: runs of one holdout split over sessions are reported as one."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "quality.py"


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _case(scenario: str, seed: int, tp: int, fp: int, fn: int) -> dict:
    ips = [f"10.0.0.{i}" for i in range(tp + fp + fn)]
    fam = {"tp": ips[:tp], "fp": ips[tp:tp + fp], "fn": ips[tp + fp:]}
    return {"scenario": scenario, "seed": seed, "scale": 1.0, "seconds": {"detect": 1.0}, "error": None,
            "clean_day": False, "medium_devices": [], "benign": {}, "low": [], "tp_rules": [], "kinds": [],
            "families": {"botnet": fam},
            "fp": [{"family": "botnet", "ip": ip, "why": "periodic_updater", "rules": ["botnet.common_beacon"]}
                   for ip in fam["fp"]],
            "fn": [{"family": "botnet", "ip": ip, "kind": "star"} for ip in fam["fn"]]}


def _run(tmp_path: Path, name: str, cases: list[dict], **over) -> Path:
    doc = {"set": "holdout", "source": "simulator", "scenarios": ["botnet"], "families": ["botnet"],
           "servers_baseline": True, "git": {"commit": "", "dirty": False}, "code": "abc", "jobs": 2,
           "wall_seconds": 10.0, "cases": cases, **over}
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def _merge(*paths: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--merge", *map(str, paths), "--json", str(out)],
                          capture_output=True, text=True, timeout=120)


def test_merged_runs_add_up_to_one_table(tmp_path):
    a = _run(tmp_path, "a.json", [_case("botnet", 1111, 9, 1, 0), _case("botnet", 1112, 8, 0, 2)])
    b = _run(tmp_path, "b.json", [_case("botnet", 1141, 10, 0, 0)])
    r = _merge(a, b, out=tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    assert "seeds 1111–1112, 1141" in r.stdout
    assert "| botnet | 27 | 1 | 2 | 0.964 | 0.931 |" in r.stdout
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["by_scale"]["1"]["families"]["botnet"] == {"tp": 27, "fp": 1, "fn": 2, "precision": 27 / 28,
                                                       "recall": 27 / 29}
    assert m["merged_from"] == [str(a), str(b)] and m["code"] == "abc"


def test_a_case_in_two_runs_is_refused(tmp_path):
    a = _run(tmp_path, "a.json", [_case("botnet", 1111, 9, 1, 0)])
    r = _merge(a, a, out=tmp_path / "m.json")
    assert r.returncode != 0 and "botnet/1111/1 is in more than one run" in r.stderr
    assert not (tmp_path / "m.json").exists()


def test_runs_of_different_rules_are_refused(tmp_path):
    a = _run(tmp_path, "a.json", [_case("botnet", 1111, 9, 1, 0)])
    b = _run(tmp_path, "b.json", [_case("botnet", 1112, 9, 1, 0)], code="def")
    r = _merge(a, b, out=tmp_path / "m.json")
    assert r.returncode != 0 and "different code fingerprints" in r.stderr


def test_seed_label_names_each_run_of_seeds(quality):
    assert quality._seed_label({"first_seed": 1111, "seeds": 50}) == "1111–1160"
    assert quality._seed_label({"seed_list": [5, 1, 2, 3, 9]}) == "1–3, 5, 9"


def test_recall_by_strength_band_separates_weak_misses(tmp_path):
    """Misses are reported by the anomaly's strength: weak ones (the detection floor) apart from
    strong ones (a rule's blind spot)."""
    kinds = [{"family": "botnet", "kind": "star", "ip": f"10.0.1.{i}", "strength": s, "found": found}
             for i, (s, found) in enumerate([(0.05, False), (0.15, True), (0.3, True), (0.9, False), (0.7, True)])]
    case = {**_case("botnet", 1111, 3, 0, 2), "kinds": kinds}
    a = _run(tmp_path, "a.json", [case, {**_case("botnet", 1112, 1, 0, 0),
                                         "kinds": [{"family": "botnet", "kind": "star", "ip": "10.0.2.1",
                                                    "found": True}]}])
    r = _merge(a, out=tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    assert "| botnet | 0.0-0.2 | 2 | 1 | 0.500 |" in r.stdout
    assert "| botnet | 0.2-0.4 | 1 | 0 | 1.000 |" in r.stdout
    assert "| botnet | 0.6-1.0 | 2 | 1 | 0.500 |" in r.stdout
    assert "| botnet | unknown | 1 | 0 | 1.000 |" in r.stdout  # runs from before strength was kept
    bands = json.loads((tmp_path / "m.json").read_text())["by_scale"]["1"]["strength_bands"]
    assert bands["botnet/0.6-1.0"] == {"hosts": 2, "fn": 1}
