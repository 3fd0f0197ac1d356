"""Detection quality on simulated days: per-family precision and recall, and alerts on clean days.

    python bench/quality.py [--seeds 20] [--scale 0.2] [--scenarios obvious,stealthy,...]
                            [--family botnet] [--no-servers-baseline] [--verbose] [--fresh]

For every scenario and seed: generate the days (simulator), profile the clean day (and the clean
servers day unless --no-servers-baseline), detect on the test day, and compare the flagged
devices per family with truth.json. Detection never sees truth.json; only this script reads it.
Generated days and profiles are cached under bench/out/quality/ (delete it or pass --fresh
after changing the simulator or the profile).

A device counts once per family: flagged by any rule of that family = positive. Benign-change
hosts and every other device flagged are false positives of that family.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("botnet", "exfiltration", "cnc", "external_abuse")


def _case(scenario: str, seed: int, scale: float, cache: Path, servers_baseline: bool, verbose: bool,
          only: str | None = None):
    from flowsiem import console, simulate
    from flowsiem.detect import DetectOptions, detect
    from flowsiem.profile import ProfileOptions, build_profile

    console.set_quiet(True)
    d = cache / f"{scenario}-{seed}-{scale}"
    days = d / "days"
    if not (days / "truth.json").exists():
        simulate.generate(scenario, seed=seed, scale=scale, out_dir=days)
    prof = d / ("profile" if servers_baseline else "profile-noservers")
    if not (prof / "profile.json").exists():
        build_profile(days / "data.parquet", prof,
                      servers=(days / "servers_data.parquet") if servers_baseline else None,
                      options=ProfileOptions())
    with tempfile.TemporaryDirectory(prefix="flowsiem-quality-") as tmp:  # parallel runs never share outputs
        res = detect(days / "test.parquet", prof, Path(tmp), servers=days / "servers.parquet",
                     options=DetectOptions(examples=0))
    truth = json.loads((days / "truth.json").read_text())
    want = defaultdict(set)
    for a in truth["anomalies"]:
        want[a["family"]].update(a["hosts"])
    got = defaultdict(set)
    rules_by = defaultdict(set)
    for a in res.alerts:
        got[a.rule.family].add(a.source_ip)
        rules_by[(a.rule.family, a.source_ip)].add(a.rule.id)
    benign = {h: b["kind"] for b in truth["benign"] for h in b["hosts"]}
    kind_of = {h: f"{a['family']}/{a['kind']}" for a in truth["anomalies"] for h in a["hosts"]}
    out = {}
    for fam in FAMILIES:
        tp, fp, fn = got[fam] & want[fam], got[fam] - want[fam], want[fam] - got[fam]
        out[fam] = (len(tp), len(fp), len(fn))
        if verbose and only in (None, fam):
            for h in sorted(fp):
                why = benign.get(h) or kind_of.get(h) or "ordinary device"
                print(f"  FP {scenario}/{seed} {fam}: {h} ({why}) by {', '.join(sorted(rules_by[(fam, h)]))}")
            for h in sorted(fn):
                print(f"  FN {scenario}/{seed} {fam}: {h} ({kind_of.get(h)})")
    return out, len(res.alerts), res.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=0.2)
    ap.add_argument("--scenarios", default=None, help="comma-separated (default: every scenario)")
    ap.add_argument("--family", default=None, help="with --verbose: list FP/FN of this family only")
    ap.add_argument("--no-servers-baseline", action="store_true",
                    help="profile without the clean servers day: external clients judged against their own population")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / "out" / "quality")
    ap.add_argument("--fresh", action="store_true", help="regenerate days and profiles")
    ap.add_argument("--verbose", "-v", action="store_true", help="list every false positive / negative")
    a = ap.parse_args()

    from flowsiem import simulate

    scenarios = a.scenarios.split(",") if a.scenarios else list(simulate.SCENARIOS)
    if a.fresh and a.cache.exists():
        shutil.rmtree(a.cache)
    a.cache.mkdir(parents=True, exist_ok=True)
    totals = {f: [0, 0, 0] for f in FAMILIES}
    per_scenario = defaultdict(lambda: {f: [0, 0, 0] for f in FAMILIES})
    clean_alerts, clean_days, secs, cases = 0, 0, 0.0, 0
    t0 = time.perf_counter()
    for sc in scenarios:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            res, n_alerts, s = _case(sc, seed, a.scale, a.cache, not a.no_servers_baseline, a.verbose, a.family)
            for fam, (tp, fp, fn) in res.items():
                for i, v in enumerate((tp, fp, fn)):
                    totals[fam][i] += v
                    per_scenario[sc][fam][i] += v
            if sc == "clean":
                clean_alerts += n_alerts
                clean_days += 1
            secs += s
            cases += 1
            print(f"\r{cases} cases, {time.perf_counter() - t0:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    def pr(tp, fp, fn):
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        return p, r

    print(f"Detection quality: {len(scenarios)} scenarios x {a.seeds} seeds at scale {a.scale} "
          f"({'with' if not a.no_servers_baseline else 'without'} a clean servers day); "
          f"detect {secs / max(cases, 1):.2f} s per day on average")
    print()
    print("| family | TP | FP | FN | precision | recall |")
    print("|---|---:|---:|---:|---:|---:|")
    for fam in FAMILIES:
        tp, fp, fn = totals[fam]
        p, r = pr(tp, fp, fn)
        print(f"| {fam} | {tp} | {fp} | {fn} | {p:.3f} | {r:.3f} |")
    print()
    print(f"Alerts on clean test days: {clean_alerts} over {clean_days} days")
    print()
    print("| scenario | " + " | ".join(f"{f} P/R" for f in FAMILIES) + " |")
    print("|---|" + "---|" * len(FAMILIES))
    for sc in scenarios:
        cells = []
        for fam in FAMILIES:
            tp, fp, fn = per_scenario[sc][fam]
            if tp + fp + fn == 0:
                cells.append("–")
            else:
                p, r = pr(tp, fp, fn)
                cells.append(f"{p:.2f}/{r:.2f}")
        print(f"| {sc} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
