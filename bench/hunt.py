"""`flowsiem hunt` on the real labelled captures: does it name the infected host, and what else?

For every capture of ../shared/fixtures/zeek-labelled/ (and the SSH brute force of
../shared/fixtures/zeek/), runs `hunt` with no option beyond the capture itself and prints, per
capture: the expected hosts, their rank among the devices with an alert of medium or more
(1 = the riskiest), how many other devices reach medium, and whether the capture passes:

  malicious   an expected host is among the top 3 devices at medium or more
  clean       no device reaches medium
  attacked    the attacked host is in none of botnet, exfiltration, cnc (its attackers are the findings)

The expected hosts come from each capture's README (ground truth and where it comes from).

    .venv/bin/python bench/hunt.py [--fixtures ../shared/fixtures] [--out bench/out/hunt] [-v]
    .venv/bin/python bench/hunt.py --simulated obvious,stealthy,clean --seeds 10   # generated days

With --simulated, `hunt` runs instead on generated test days (tuning seeds 1..N at scale 0.2,
with their servers file, no clean day given) and prints devices at medium or more, how many are
anomaly hosts (and in their family), how many anomaly hosts there are, and devices on clean days.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_FIXTURES = HERE.parent.parent / "shared" / "fixtures"

# (name, path under the fixtures dir, kind, expected hosts, what the truth says)
CAPTURES = [
    ("ctu230-njrat-c2", "zeek-labelled/ctu230-njrat-c2/conn.log", "malicious", ["192.168.1.115"],
     "NjRAT retrying its C2 41.108.179.197:1177"),
    ("ctu-nmap-scans", "zeek-labelled/ctu-nmap-scans/conn.log", "malicious", ["172.16.1.11"],
     "Nmap scans of three networks"),
    ("android-rat01-exfil", "zeek-labelled/android-rat01-exfil/conn.log", "malicious", ["10.8.0.61"],
     "Android RAT sending 42 MB to its C2"),
    ("ctu355-simda-dga", "zeek-labelled/ctu355-simda-dga/conn.log", "malicious",
     ["192.168.1.116", "fd77:48a1:c0bb:0:b96c:506d:6c7f:e8be"], "Simda DGA (the two addresses: inferred)"),
    ("rita-proxy-beacon", "zeek-labelled/rita-proxy-beacon/conn.log", "malicious", ["10.136.0.18"],
     "beacon through an HTTP proxy"),
    ("honeypot-ssh-bruteforce", "zeek/honeypot-ssh-bruteforce/conn.log", "malicious", ["138.197.148.152"],
     "SSH brute force against a honeypot"),
    ("ctu-normal43-day1", "zeek-labelled/ctu-normal43-day1/conn.log.labeled", "attacked", ["147.32.83.165"],
     "benign Windows host attacked from the Internet"),
    ("ubuntu-benign-20230220", "zeek-labelled/ubuntu-benign-20230220/conn.log.labeled", "clean", [],
     "clean Ubuntu desktop"),
]
HOST_FAMILIES = {"botnet", "exfiltration", "cnc"}


def judge(kind: str, expected: list[str], devices: list[dict]) -> dict:
    """Rank of the expected hosts among medium+ devices, other medium+ devices, pass/fail."""
    act = [d for d in devices if d["severity"] in ("medium", "high", "critical")]
    ranks = {ip: next((i + 1 for i, d in enumerate(act) if d["ip"] == ip), None) for ip in expected}
    others = [d for d in act if d["ip"] not in expected]
    if kind == "malicious":
        ok = any(r is not None and r <= 3 for r in ranks.values())
    elif kind == "clean":
        ok = not act
    else:  # attacked: the victim is not flagged as compromised
        fam = {f for d in act if d["ip"] in expected for f in d["families"].split(";")}
        ok = not (fam & HOST_FAMILIES)
    return {"ranks": ranks, "others": len(others), "ok": ok, "medium": len(act)}


def simulated(scenarios: list[str], seeds: int, out: Path) -> int:
    """hunt on generated test days (no clean day): precision-style counts against truth.json."""
    import json

    from flowsiem import simulate
    from flowsiem.hunt import HuntOptions, hunt

    tot = {"days": 0, "flagged": 0, "anomaly_hosts_flagged": 0, "in_their_family": 0, "anomaly_hosts": 0,
           "flagged_on_clean_days": 0}
    for sc in scenarios:
        for seed in range(1, seeds + 1):
            d = out / "days" / f"{sc}-{seed}"
            if not (d / "truth.json").exists():
                simulate.generate(sc, seed=seed, scale=0.2, out_dir=d)
            truth = json.loads((d / "truth.json").read_text())
            bad: dict[str, set] = {}
            for a in truth["anomalies"]:
                for h in a.get("hosts", []):
                    bad.setdefault(h, set()).add(a["family"])
            res = hunt(str(d / "test.parquet"), out / "runs" / f"{sc}-{seed}", servers=str(d / "servers.parquet"),
                       options=HuntOptions(examples=0, report=False))
            act: dict[str, set] = {}
            for a in res.alerts:
                if a.actionable:
                    act.setdefault(a.source_ip, set()).add(a.rule.family)
            hits = [ip for ip in act if ip in bad]
            tot["days"] += 1
            tot["flagged"] += len(act)
            tot["anomaly_hosts_flagged"] += len(hits)
            tot["in_their_family"] += sum(1 for ip in hits if act[ip] & bad[ip])
            tot["anomaly_hosts"] += len(bad)
            tot["flagged_on_clean_days"] += len(act) if not bad else 0
            print(f"{sc}/{seed}: {len(act)} at medium+, {len(hits)} anomaly hosts of {len(bad)}", file=sys.stderr)
    print("| days | devices at medium+ | of them anomaly hosts | in their family | anomaly hosts | on clean days |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {tot['days']} | {tot['flagged']} | {tot['anomaly_hosts_flagged']} | {tot['in_their_family']} | "
          f"{tot['anomaly_hosts']} | {tot['flagged_on_clean_days']} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "hunt")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every medium+ device")
    ap.add_argument("--simulated", help="comma-separated scenarios: hunt on generated days instead")
    ap.add_argument("--seeds", type=int, default=10, help="with --simulated: seeds 1..N (the tuning seeds)")
    args = ap.parse_args(argv)

    from flowsiem.console import set_quiet
    from flowsiem.hunt import HuntOptions, hunt

    set_quiet(True)
    if args.simulated:
        return simulated(args.simulated.split(","), args.seeds, args.out / "simulated")
    rows, failures = [], 0
    for name, rel, kind, expected, truth in CAPTURES:
        path = args.fixtures / rel
        if not path.exists():
            print(f"{name}: {path} missing, skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        res = hunt(str(path), args.out / name, options=HuntOptions())
        secs = time.perf_counter() - t0
        devices = [{"ip": d["ip"], "severity": d["severity"], "families": ";".join(d["families"])
                    if isinstance(d["families"], list) else str(d["families"])} for d in res.devices]
        j = judge(kind, expected, devices)
        failures += not j["ok"]
        rank = ", ".join(f"{ip}: {r if r else '-'}" for ip, r in j["ranks"].items()) or "-"
        rows.append((name, kind, truth, rank, j["others"], "pass" if j["ok"] else "FAIL", secs))
        if args.verbose:
            for d in devices:
                if d["severity"] != "low":
                    print(f"  {name}: {d['ip']} {d['severity']} {d['families']}")
    print("| capture | kind | truth | expected host: rank among medium+ | other devices at medium+ | result | seconds |")
    print("|---|---|---|---|---:|---|---:|")
    for name, kind, truth, rank, others, res, secs in rows:
        print(f"| {name} | {kind} | {truth} | {rank} | {others} | {res} | {secs:.1f} |")
    print(f"\n{len(rows) - failures} of {len(rows)} captures pass")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
