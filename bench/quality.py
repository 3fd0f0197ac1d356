"""Detection quality on simulated days: a tuning set and a holdout set, kept apart.

    python bench/quality.py [--set tune|holdout] [--seeds N] [--first-seed S] [--scales 0.2,1,3]
                            [--scenarios obvious,clean,...] [--jobs 2] [--verbose] [--family F]
                            [--fresh] [--keep] [--no-servers-baseline] [--dry-run]
    python bench/quality.py --days DIR [--jobs 2] [--verbose]     # score days made by another generator

Two seed sets
-------------
  --set tune      seeds 1-20, scale 0.2 by default. This is what you look at while tuning rules and
                  thresholds: read its false positives and negatives as much as you like.
  --set holdout   seeds 1001-1050 (50 per scenario), scales 0.2, 1 and 3 by default. NEVER run it
                  while tuning, and never tune on what it shows: it is the final, honest measurement
                  of rules fixed beforehand. Once a rule is changed because of a holdout result the
                  holdout is spent. Seeds >= 1001 are reserved for it (the tune set refuses them,
                  the holdout set refuses seeds below).
  --seeds / --first-seed override the set's seeds, --scales its scales. Scenarios: every scenario of
  flowsiem.simulate.SCENARIOS (read at run time), or --scenarios to restrict.

What is counted
---------------
Severity means evidence. A device is flagged for a family only by an alert of that family with
severity medium or more (alert.severity_number >= 47, ECS event.severity >= 47). Low alerts are
notices: they count for neither precision nor recall and are reported separately.
Truth is truth.json: each anomaly's hosts are the positives of its family (a device counts once
per family). Every other device flagged at medium+ in a family is a false positive of that family,
named by its benign change (truth "benign" kind), "<family>/<kind>" when it is an anomaly host of
another family, or "ordinary device". Clean days (no anomaly in truth.json) must have no device at
medium+. Verdict per scale: PASS when every family has precision and recall >= 0.98 and no clean
day has a device at medium+.

Per (seed, scale) group, once: generate the clean day (data.parquet, servers_data.parquet: the
same bytes for every scenario, see flowsiem.simulate) and profile it (with the clean servers day
unless --no-servers-baseline). Per case: generate its test day (test.parquet, servers.parquet,
truth.json; simulate.generate(test_day_only=True), byte-identical to a full run's), detect on it
with the group's profile, score against truth.json. What each case measures is what a case with
its own clean day and profile would: the same detect call on the same files and the same profile.
Each task (a group's clean day, a case) is one worker process; --jobs run in parallel, cases as
soon as their group's profile is ready, at most jobs + 1 groups open at once. Detection never sees
truth.json; only this script reads it. A case that raises is reported (scenario/seed/scale,
traceback) and counted, and the run goes on; a clean day that raises fails its group's cases.

Disk
----
The tune set caches its clean days and profiles under bench/out/quality/cache/_baseline-<seed>-<scale>/
and its test days under bench/out/quality/cache/<scenario>-<seed>-<scale>/ (--cache to move it). A
day is regenerated when the simulator's source changed since, a profile rebuilt when the profile
code (any flowsiem module but simulate/, rules/, detect.py, alerts.py, explain.py, cli.py) changed;
--fresh regenerates the cases of this run (and their clean days) regardless. The holdout set
generates into a temporary directory per (seed, scale) group (under --tmp: the clean day, its
profile and the group's test days, ~100 MB per day at scale 3) and deletes it once the group's
cases are scored, unless --keep (holdout days then stay in bench/out/quality/holdout/, and are
reused by later --keep runs). --days runs profile each day into a temporary directory, deleted
once it is scored unless --keep.

External days
-------------
--days DIR scores every subdirectory of DIR that holds data.parquet, test.parquet, servers.parquet,
servers_data.parquet and truth.json (same "anomalies"/"benign" layout as the simulator's; scenario
from truth.json "scenario", scale from "scale", seed from "seed" when present). Nothing is written
into DIR.

Merging runs
------------
--merge A.json B.json ... runs nothing: it prints the tables of earlier runs' summaries as one run
and writes their merged summary (bench/out/quality/<set>-merged-<time>.json), so a 50-seed holdout
measured in parts (seeds 1111-1130 in one session, 1131-1160 in the next) is read as one table. It
refuses runs of different sets, commits, code fingerprints (every .py and .yaml under src/flowsiem,
recorded by each run: a snapshot outside git has one too) or servers-day modes, and a case present
in two runs.

Output
------
Markdown tables per scale on stdout (per-family TP/FP/FN/precision/recall, devices at medium+ on
clean days, low notices, per-rule TP/FP, FN per anomaly kind, FP per cause, per-scenario grid), a
verdict line per scale, and a JSON summary of the run (every count; per case: scenario, seed, scale,
per-family tp/fp/fn IP lists, false positive/negative details, seconds; per group, i.e. clean
day and profile: seconds; wall time per scale) written to
bench/out/quality/<set>-<YYYYmmdd-HHMMSS>.json, so README tables can be regenerated and FPs looked
up later. Progress (cases done / total, clean days done, elapsed, ETA) goes to stderr; the wall time
per scale is printed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "flowsiem"
OUT = ROOT / "bench" / "out" / "quality"
MEDIUM = 47                     # ECS event.severity of a medium alert: the evidence threshold
GOAL = 0.98                     # precision and recall every family must reach for a PASS
HOLDOUT_FIRST = 1001            # seeds >= this are the holdout set's
SETS = {
    "tune": {"first_seed": 1, "seeds": 20, "scales": (0.2,)},
    "holdout": {"first_seed": HOLDOUT_FIRST, "seeds": 50, "scales": (0.2, 1.0, 3.0)},
}
DAY_FILES = ("data.parquet", "test.parquet", "servers.parquet", "servers_data.parquet", "truth.json")
CLEAN_FILES = ("data.parquet", "servers_data.parquet")           # the same for every scenario of a (seed, scale)
TEST_FILES = ("test.parquet", "servers.parquet", "truth.json")
# flowsiem modules build_profile does not depend on: a change anywhere else rebuilds cached profiles
NOT_PROFILE = ("simulate", "rules", "detect.py", "alerts.py", "explain.py", "cli.py")


# ---------------------------------------------------------------- fingerprints

def _fingerprint(paths, suffixes: tuple[str, ...] = (".py",)) -> str:
    h = hashlib.sha1()
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.suffix in suffixes) if p.is_dir() else [p]
        for f in files:
            if f.exists():
                h.update(str(f.relative_to(SRC)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _stamps() -> dict:
    sim = _fingerprint([SRC / "simulate"])
    prof = [p for p in sorted(SRC.iterdir()) if p.name not in NOT_PROFILE and (p.is_dir() or p.suffix == ".py")]
    return {"days": sim, "profile": sim + "-" + _fingerprint(prof)}


def _code_fingerprint() -> str:
    """Every source and rules file of flowsiem: runs of one snapshot, git or not, share it (--merge)."""
    return _fingerprint([SRC], (".py", ".yaml"))


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- one case (worker process)

def _score(truth: dict, alerts: list, families: list[str]) -> dict:
    """Compare medium+ alerts with truth.json; low alerts are notices, listed apart."""
    want: dict[str, set] = defaultdict(set)
    kinds_of: dict[tuple, list] = defaultdict(list)          # (family, ip) -> [anomaly]
    for an in truth.get("anomalies", []):
        for h in an["hosts"]:
            want[an["family"]].add(h)
            kinds_of[(an["family"], h)].append(an)
    benign: dict[str, list] = defaultdict(list)
    for b in truth.get("benign", []):
        for h in b["hosts"]:
            if b["kind"] not in benign[h]:
                benign[h].append(b["kind"])
    anomaly_of: dict[str, list] = defaultdict(list)           # ip -> ["family/kind"]
    for an in truth.get("anomalies", []):
        for h in an["hosts"]:
            fk = f"{an['family']}/{an['kind']}"
            if fk not in anomaly_of[h]:
                anomaly_of[h].append(fk)

    got: dict[str, set] = defaultdict(set)
    rules_by: dict[tuple, set] = defaultdict(set)             # (family, ip) -> medium+ rule ids
    low_by: dict[tuple, set] = defaultdict(set)               # (family, ip) -> low rule ids
    low = []
    for a in alerts:
        fam, ip = a.rule.family, a.source_ip
        if a.severity_number >= MEDIUM:  # the alert's own severity (a rule may emit low notices)
            got[fam].add(ip)
            rules_by[(fam, ip)].add(a.rule.id)
        else:
            low_by[(fam, ip)].add(a.rule.id)
            low.append({"family": fam, "ip": ip, "rule": a.rule.id, "risk_score": a.risk_score,
                        "anomaly_host": ip in want[fam]})
    fams = list(families) + sorted((set(got) | set(want)) - set(families))

    res = {"families": {}, "fp": [], "fn": [], "tp_rules": [], "low": low, "kinds": []}
    for fam in fams:
        tp, fp, fn = got[fam] & want[fam], got[fam] - want[fam], want[fam] - got[fam]
        res["families"][fam] = {"tp": sorted(tp), "fp": sorted(fp), "fn": sorted(fn)}
        for h in sorted(tp):
            res["tp_rules"].append({"family": fam, "ip": h, "rules": sorted(rules_by[(fam, h)])})
        for h in sorted(fp):
            why = benign.get(h, []) + [k for k in anomaly_of.get(h, []) if not k.startswith(fam + "/")]
            res["fp"].append({"family": fam, "ip": h, "why": " + ".join(why) or "ordinary device",
                              "causes": why or ["ordinary device"], "benign": bool(benign.get(h)),
                              "rules": sorted(rules_by[(fam, h)])})
        for h in sorted(fn):
            for an in kinds_of[(fam, h)]:
                det = an.get("details") or {}
                res["fn"].append({"family": fam, "kind": an["kind"], "ip": h,
                                  "strength": det.get("strength"),
                                  "low_rules": sorted(low_by[(fam, h)])})
    # every (family, kind, host) of truth with whether it was found: recall per kind
    seen = set()
    for an in truth.get("anomalies", []):
        for h in an["hosts"]:
            key = (an["family"], an["kind"], h)
            if key not in seen:
                seen.add(key)
                res["kinds"].append({"family": an["family"], "kind": an["kind"], "ip": h,
                                     "strength": (an.get("details") or {}).get("strength"),
                                     "found": h in got[an["family"]]})
    res["medium_devices"] = sorted({ip for f in got for ip in got[f]})
    return res


def _ident(case: dict) -> dict:
    r = {k: case[k] for k in ("scenario", "seed", "scale")}
    if case["mode"] == "external":
        r["dir"] = case["dir"]
    return r


def _fresh_stamp(d: Path, name: str, stamp: str, files) -> bool:
    """Whether d/days holds every one of files and d/<name>.stamp is stamp."""
    return all((d / "days" / f).exists() for f in files) and _read(d / f"{name}.stamp") == stamp


def run_prep(group: dict, opts: dict) -> dict:
    """The clean day of one (seed, scale) group, generated and profiled once for all its scenarios;
    never raises (errors are returned).

    Simulated groups: the clean day (data.parquet, servers_data.parquet) goes to <base>/days, the
    profile to <base>/profile. It is made by a full generate() of the group's first scenario, whose
    test-day files stay in that case's own days/ (its case then has nothing to generate).
    External days (--days): a group per case; only the profile is built (into <base>), from the
    case directory's data.parquet and servers_data.parquet."""
    t_start = time.perf_counter()
    out = {"group": group["key"], "seed": group["seed"], "scale": group["scale"], "seconds": {}, "error": None}
    try:
        from flowsiem import console
        console.set_quiet(True)
        from flowsiem import simulate
        from flowsiem.profile import ProfileOptions, build_profile

        mode, base = group["mode"], Path(group["base"])
        if opts["fresh"] and mode in ("cache", "keep"):
            for p in [base] + [Path(c["dir"]) for c in group["cases"]]:
                shutil.rmtree(p, ignore_errors=True)
        base.mkdir(parents=True, exist_ok=True)
        if mode == "external":
            days = Path(group["cases"][0]["dir"])
        else:
            days = base / "days"
            if not _fresh_stamp(base, "days", opts["stamps"]["days"], CLEAN_FILES):
                for p in (days, base / "profile", base / "profile-noservers"):
                    shutil.rmtree(p, ignore_errors=True)
                c0 = Path(group["cases"][0]["dir"])
                c0.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(c0 / "days", ignore_errors=True)
                t = time.perf_counter()
                simulate.generate(group["cases"][0]["scenario"], seed=group["seed"], scale=group["scale"],
                                  out_dir=c0 / "days")
                out["seconds"]["generate"] = round(time.perf_counter() - t, 2)
                days.mkdir(parents=True)
                for f in CLEAN_FILES:
                    (c0 / "days" / f).replace(days / f)
                (c0 / "days.stamp").write_text(opts["stamps"]["days"])
                (base / "days.stamp").write_text(opts["stamps"]["days"])
        prof_name = "profile" if opts["servers_baseline"] else "profile-noservers"
        prof = base / prof_name
        if not (prof / "profile.json").exists() or _read(base / f"{prof_name}.stamp") != opts["stamps"]["profile"]:
            shutil.rmtree(prof, ignore_errors=True)
            t = time.perf_counter()
            build_profile(days / "data.parquet", prof,
                          servers=(days / "servers_data.parquet") if opts["servers_baseline"] else None,
                          options=ProfileOptions())
            out["seconds"]["profile"] = round(time.perf_counter() - t, 2)
            (base / f"{prof_name}.stamp").write_text(opts["stamps"]["profile"])
    except BaseException as exc:                         # noqa: BLE001 - reported, never fatal
        out["error"] = "".join(traceback.format_exception(exc))
        if isinstance(exc, KeyboardInterrupt):
            raise
    out["seconds"]["total"] = round(time.perf_counter() - t_start, 2)
    return out


def run_case(case: dict, opts: dict) -> dict:
    """(test day ->) detect -> score one case against its group's profile; never raises (errors are
    returned). Run once run_prep of its group has succeeded."""
    t_start = time.perf_counter()
    out = _ident(case)
    out.update(seconds={}, error=None)
    scratch = None
    try:
        from flowsiem import console
        console.set_quiet(True)
        from flowsiem import simulate
        from flowsiem.detect import DetectOptions, detect

        mode = case["mode"]
        prof = Path(case["base"]) / ("profile" if opts["servers_baseline"] else "profile-noservers")
        if mode == "external":
            days = Path(case["dir"])
        else:
            d = Path(case["dir"])
            days = d / "days"
            if not _fresh_stamp(d, "days", opts["stamps"]["days"], TEST_FILES):
                shutil.rmtree(days, ignore_errors=True)
                d.mkdir(parents=True, exist_ok=True)
                t = time.perf_counter()
                simulate.generate(case["scenario"], seed=case["seed"], scale=case["scale"], out_dir=days,
                                  test_day_only=True)
                out["seconds"]["generate"] = round(time.perf_counter() - t, 2)
                (d / "days.stamp").write_text(opts["stamps"]["days"])
            # what a cache made before the clean day was shared still holds: the group's has it now
            for f in CLEAN_FILES:
                (days / f).unlink(missing_ok=True)
            for p in ("profile", "profile-noservers"):
                shutil.rmtree(d / p, ignore_errors=True)
                (d / f"{p}.stamp").unlink(missing_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"{case['key']}-", dir=opts["tmp_root"]))
        det_out = scratch / "detect"
        res = detect(days / "test.parquet", prof, det_out, servers=days / "servers.parquet",
                     options=DetectOptions(examples=0, report=False))
        out["seconds"]["detect"] = round(res.seconds, 2)
        out["alerts"] = len(res.alerts)
        out["detect_errors"] = list(getattr(res, "errors", []) or [])
        truth = json.loads((days / "truth.json").read_text())     # read only after detection
        scen = simulate.SCENARIOS.get(case["scenario"])
        out["clean_day"] = bool((scen is not None and scen.clean) or not truth.get("anomalies"))
        out["benign"] = Counter(b["kind"] for b in truth.get("benign", []))
        out.update(_score(truth, res.alerts, opts["families"]))
    except BaseException as exc:                         # noqa: BLE001 - reported, never fatal
        out["error"] = "".join(traceback.format_exception(exc))
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        if scratch is not None and not opts["keep_scratch"]:
            shutil.rmtree(scratch, ignore_errors=True)
    out["seconds"]["total"] = round(time.perf_counter() - t_start, 2)
    return out


# ---------------------------------------------------------------- plan

def _parse_scales(s: str) -> list[float]:
    try:
        vals = [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--scales: comma-separated numbers expected (got {s!r})") from None
    if not vals or any(not math.isfinite(v) or v <= 0 for v in vals):
        raise SystemExit(f"--scales: numbers > 0 expected (got {s!r})")
    return vals


def _fmt_scale(x: float) -> str:
    return f"{x:g}"


def plan_cases(a, scenarios_all: dict) -> tuple[list[dict], dict]:
    """The cases to run and a description of the run."""
    want_sc = [s.strip() for s in a.scenarios.split(",") if s.strip()] if a.scenarios else None
    if a.days:
        root = Path(a.days)
        if not root.is_dir():
            raise SystemExit(f"--days: {root} is not a directory")
        scales = _parse_scales(a.scales) if a.scales else None
        cases, skipped = [], []
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            missing = [f for f in DAY_FILES if not (sub / f).exists()]
            if missing:
                skipped.append(f"{sub.name} (missing {', '.join(missing)})")
                continue
            t = json.loads((sub / "truth.json").read_text())
            sc, scale = str(t.get("scenario", sub.name)), float(t.get("scale", 1.0))
            if want_sc and sc not in want_sc:
                continue
            if scales and not any(math.isclose(scale, s) for s in scales):
                continue
            cases.append({"scenario": sc, "seed": t.get("seed", sub.name), "scale": scale,
                          "mode": "external", "dir": str(sub), "key": f"{sc}-{t.get('seed', sub.name)}-{scale:g}"})
        for s in skipped:
            print(f"--days: skipping {s}", file=sys.stderr)
        if not cases:
            raise SystemExit(f"--days: no case directory with {', '.join(DAY_FILES)} under {root}")
        info = {"set": "days", "source": str(root), "first_seed": None, "seeds": None,
                "scales": sorted({c["scale"] for c in cases}),
                "scenarios": list(dict.fromkeys(c["scenario"] for c in cases))}
        return cases, info

    spec = SETS[a.set]
    first = spec["first_seed"] if a.first_seed is None else a.first_seed
    n = spec["seeds"] if a.seeds is None else a.seeds
    if n < 1:
        raise SystemExit("--seeds must be >= 1")
    last = first + n - 1
    if a.set == "tune" and last >= HOLDOUT_FIRST:
        raise SystemExit(f"seeds {first}-{last}: seeds >= {HOLDOUT_FIRST} belong to the holdout set, "
                         f"which must never be looked at while tuning (use --set holdout for the final measurement)")
    if a.set == "holdout" and first < HOLDOUT_FIRST:
        raise SystemExit(f"seeds {first}-{last}: the holdout set uses seeds >= {HOLDOUT_FIRST} only "
                         f"(lower seeds are the tuning set's)")
    scales = _parse_scales(a.scales) if a.scales else list(spec["scales"])
    if want_sc:
        unknown = [s for s in want_sc if s not in scenarios_all]
        if unknown:
            raise SystemExit(f"unknown scenario(s) {', '.join(unknown)} (choose from: {', '.join(scenarios_all)})")
        scenarios = want_sc
    else:
        scenarios = list(scenarios_all)
    cases = []
    # biggest cases first: better packing on the pool, and the ETA errs on the long side
    for scale in sorted(scales, reverse=True):
        for sc in scenarios:
            for seed in range(first, last + 1):
                key = f"{sc}-{seed}-{_fmt_scale(scale)}"
                if a.set == "tune":
                    mode, d = "cache", str(a.cache / key)
                elif a.keep:
                    mode, d = "keep", str(OUT / "holdout" / key)
                else:
                    mode, d = "temp", None
                cases.append({"scenario": sc, "seed": seed, "scale": scale, "mode": mode, "dir": d, "key": key})
    info = {"set": a.set, "source": "simulator", "first_seed": first, "seeds": n, "scales": scales,
            "scenarios": scenarios}
    return cases, info


def plan_groups(cases: list[dict], a) -> list[dict]:
    """Cases grouped by (seed, scale): one clean day and profile per group (run_prep), shared by the
    group's scenarios. External days: a group per case. In the cases' order (biggest scale first)."""
    groups: dict[str, dict] = {}
    for i, c in enumerate(cases):
        if c["mode"] == "external":
            gkey = f"{i}-{c['key']}"                     # two external days may share scenario/seed/scale
        else:
            gkey = f"{c['seed']}-{_fmt_scale(c['scale'])}"
        g = groups.get(gkey)
        if g is None:
            base = None                                  # temp and external: under the run's scratch
            if c["mode"] == "cache":
                base = str(a.cache / f"_baseline-{gkey}")
            elif c["mode"] == "keep":
                base = str(OUT / "holdout" / f"_baseline-{gkey}")
            g = groups[gkey] = {"key": gkey, "seed": c["seed"], "scale": c["scale"], "mode": c["mode"],
                                "base": base, "cases": []}
        c["group"], c["base"] = gkey, g["base"]
        g["cases"].append(c)
    return list(groups.values())


def _place_scratch_groups(groups: list[dict], tmp_root: Path) -> None:
    """Directories of temp (holdout) and external groups, under the run's scratch: tmp_root/<group>/
    holds the clean day and profile (_baseline/) and each scenario's test day, and is deleted once
    the group's cases are all scored."""
    for g in groups:
        if g["mode"] == "temp":
            gdir = tmp_root / g["key"]
            g["base"], g["cleanup"] = str(gdir / "_baseline"), str(gdir)
            for c in g["cases"]:
                c["dir"] = str(gdir / c["scenario"])
        elif g["mode"] == "external":
            gdir = tmp_root / f"profile-{g['key']}"
            g["base"], g["cleanup"] = str(gdir), str(gdir)
        else:
            g["cleanup"] = None
        for c in g["cases"]:
            c["base"] = g["base"]


# ---------------------------------------------------------------- run

def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def run_all(groups: list[dict], opts: dict, jobs: int) -> tuple[list[dict], list[dict], dict]:
    """Run the groups' preps and cases on a process pool, at most `jobs` at a time; a dead worker fails
    only its tasks. Returns (case results, prep results, {scale: timing}).

    Scheduling: a case is ready once its group's prep is done; a free worker takes the oldest ready
    case, else opens the next group (its prep) while fewer than jobs + 1 groups are open (so a worker
    rarely waits for a prep, and at most jobs + 1 groups are on disk at once)."""
    results: list[dict] = []
    preps: list[dict] = []
    n_cases = sum(len(g["cases"]) for g in groups)
    failed = 0
    took: dict[str, dict[float, list[float]]] = {"prep": defaultdict(list), "case": defaultdict(list)}
    left = {"prep": Counter(g["scale"] for g in groups),
            "case": Counter(c["scale"] for g in groups for c in g["cases"])}
    timing: dict[float, dict] = {}                        # scale -> first start, last end, worker seconds
    t0 = time.perf_counter()
    tty = sys.stderr.isatty()
    pending = list(groups)                                # groups whose prep is not submitted yet
    ready: list[dict] = []                                # cases whose group's prep is done
    open_left: dict[str, int] = {}                        # open group -> its cases not recorded yet
    by_key = {g["key"]: g for g in groups}

    def eta() -> float:
        # per remaining task: the mean time of its kind done at its scale, else a guess from the
        # others (~ fixed cost + cost proportional to the scale), spread over the jobs
        units = {kind: [sum(v) / len(v) / (k + 1.5) for k, v in t.items()] for kind, t in took.items()}
        every = units["prep"] + units["case"]
        if not every:
            return float("nan")
        total = 0.0
        for kind, t in took.items():
            unit = sum(units[kind] or every) / len(units[kind] or every)
            for k, n in left[kind].items():
                total += n * (sum(t[k]) / len(t[k]) if t.get(k) else unit * (k + 1.5))
        return total / jobs

    def progress(last: str) -> None:
        el = time.perf_counter() - t0
        eta_s = eta()
        msg = (f"[{len(results)}/{n_cases}] {failed} failed, clean days {len(preps)}/{len(groups)}, "
               f"elapsed {_hms(el)}, ETA {_hms(eta_s) if math.isfinite(eta_s) else '?'}  (last: {last})")
        print(("\r" + msg + "   ") if tty else msg, end="" if tty else "\n", file=sys.stderr, flush=True)

    def clock(scale: float, started: bool = False, seconds: float | None = None) -> None:
        """A task of this scale started (started=True) or ended after `seconds` of its own."""
        t = timing.setdefault(scale, {"start": None, "end": None, "worker_seconds": 0.0})
        now = time.perf_counter() - t0
        if started:
            t["start"] = now if t["start"] is None else min(t["start"], now)
        else:
            t["end"] = now if t["end"] is None else max(t["end"], now)
            t["worker_seconds"] += seconds or 0.0

    def record(c: dict, r: dict) -> None:
        nonlocal failed
        results.append(r)
        failed += bool(r.get("error"))
        left["case"][c["scale"]] -= 1
        if not r.get("error"):
            took["case"][c["scale"]].append(r["seconds"].get("total", 0.0))
        clock(c["scale"], seconds=r["seconds"].get("total"))
        progress(f"{c['scenario']}/{c['seed']}/{_fmt_scale(c['scale'])} {r['seconds'].get('total', 0):.0f} s")
        open_left[c["group"]] -= 1
        if not open_left[c["group"]]:                     # the group's last case: its files can go
            del open_left[c["group"]]
            g = by_key[c["group"]]
            if g.get("cleanup") and not opts["keep_scratch"]:
                shutil.rmtree(g["cleanup"], ignore_errors=True)

    def failure(c: dict, msg: str) -> dict:
        r = _ident(c)
        r.update(seconds={}, error=msg)
        return r

    def prep_done(g: dict, r: dict) -> None:
        preps.append(r)
        left["prep"][g["scale"]] -= 1
        if not r.get("error"):
            took["prep"][g["scale"]].append(r["seconds"].get("total", 0.0))
        clock(g["scale"], seconds=r["seconds"].get("total"))
        progress(f"clean day {g['key']} {r['seconds'].get('total', 0):.0f} s")
        if r.get("error"):
            msg = f"the clean day / profile of this case's group ({g['key']}) failed:\n{r['error']}"
            for c in g["cases"]:
                record(c, failure(c, msg))
        else:
            ready.extend(g["cases"])

    ctx = mp.get_context("spawn")
    tries: dict[int, int] = {}
    died: list[tuple[str, dict]] = []
    while pending or ready:
        # a fresh process per task frees a big case's memory; a broken pool fails only the tasks it
        # was running and is replaced for the rest
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
            running: dict = {}
            while pending or ready or running:
                while len(running) < jobs:
                    if ready:
                        c = ready.pop(0)
                        running[pool.submit(run_case, c, opts)] = ("case", c)
                        clock(c["scale"], started=True)
                    elif pending and len(open_left) < jobs + 1:
                        g = pending.pop(0)
                        open_left[g["key"]] = len(g["cases"])
                        running[pool.submit(run_prep, g, opts)] = ("prep", g)
                        clock(g["scale"], started=True)
                    else:
                        break
                if not running:                          # cannot happen: an open group has a task
                    raise RuntimeError("scheduler stuck: nothing running, nothing to submit")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                broken = False
                for f in done:
                    kind, x = running.pop(f)
                    try:
                        r = f.result()
                    except BrokenProcessPool:
                        broken = True
                        died.append((kind, x))
                        continue
                    except Exception as exc:             # noqa: BLE001
                        msg = "".join(traceback.format_exception(exc))
                        r = failure(x, msg) if kind == "case" else {
                            "group": x["key"], "seed": x["seed"], "scale": x["scale"], "seconds": {}, "error": msg}
                    if kind == "case":
                        record(x, r)
                    else:
                        prep_done(x, r)
                if broken:
                    # every task the dead pool was running: retried once (the culprit is not known),
                    # failed on a second death
                    retry_preps, retry_cases = [], []
                    for kind, x in died + list(running.values()):
                        tries[id(x)] = tries.get(id(x), 0) + 1
                        if tries[id(x)] > 1:
                            msg = "worker process died twice (killed? out of memory?) while running this "
                            if kind == "case":
                                record(x, failure(x, msg + "case"))
                            else:
                                prep_done(x, {"group": x["key"], "seed": x["seed"], "scale": x["scale"],
                                              "seconds": {}, "error": msg + "clean day / profile"})
                        elif kind == "case":
                            retry_cases.append(x)
                        else:
                            del open_left[x["key"]]
                            retry_preps.append(x)
                    ready[:0] = retry_cases
                    pending[:0] = retry_preps
                    died.clear()
                    running.clear()
                    break
    if tty:
        print(file=sys.stderr)
    return results, preps, timing


# ---------------------------------------------------------------- report

def _pr(tp: int, fp: int, fn: int) -> tuple[float | None, float | None]:
    return (tp / (tp + fp) if tp + fp else None), (tp / (tp + fn) if tp + fn else None)


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


# The simulator's strength s of an anomaly (0 stealthiest, 1 most obvious), in bands: where the
# misses sit tells a rule's blind spot (strong ones missed) from the detection floor (weak ones).
STRENGTH_BANDS = (0.2, 0.4, 0.6)


def _band(strength: float | None) -> str:
    if strength is None:
        return "unknown"
    lo = max((b for b in STRENGTH_BANDS if strength >= b), default=0.0)
    hi = min((b for b in STRENGTH_BANDS if strength < b), default=1.0)
    return f"{lo:.1f}-{hi:.1f}"


def aggregate(results: list[dict], families: list[str]) -> dict:
    """Per scale: every table's counts."""
    by_scale: dict[float, dict] = {}
    for r in results:
        s = by_scale.setdefault(r["scale"], {
            "cases": 0, "failed": [], "detect_seconds": [],
            "families": defaultdict(lambda: [0, 0, 0]),
            "scenarios": defaultdict(lambda: defaultdict(lambda: [0, 0, 0])),
            "clean_days": 0, "clean_devices": 0, "clean_days_with_devices": 0, "clean_rules": Counter(),
            "low_alerts": 0, "low_devices": 0, "low_on_anomaly_hosts": 0, "low_on_clean_days": 0,
            "rules": defaultdict(lambda: {"family": "", "tp": 0, "fp": 0, "low": 0}),
            "kinds": defaultdict(lambda: [0, 0]), "bands": defaultdict(lambda: [0, 0]),
            "fp_why": Counter(), "fp_list": [], "fn_list": [],
        })
        s["cases"] += 1
        if r.get("error"):
            s["failed"].append(r)
            continue
        s["detect_seconds"].append(r["seconds"].get("detect", 0.0))
        for fam, v in r["families"].items():
            c = (len(v["tp"]), len(v["fp"]), len(v["fn"]))
            for i in range(3):
                s["families"][fam][i] += c[i]
                s["scenarios"][r["scenario"]][fam][i] += c[i]
        s["scenarios"][r["scenario"]]                        # a row even with no counts
        if r["clean_day"]:
            s["clean_days"] += 1
            s["clean_devices"] += len(r["medium_devices"])
            s["clean_days_with_devices"] += bool(r["medium_devices"])
            for x in r["fp"]:
                s["clean_rules"].update(x["rules"])
        s["low_alerts"] += len(r["low"])
        s["low_devices"] += len({(x["family"], x["ip"]) for x in r["low"]})
        s["low_on_anomaly_hosts"] += sum(x["anomaly_host"] for x in r["low"])
        s["low_on_clean_days"] += len(r["low"]) if r["clean_day"] else 0
        for x in r["low"]:
            s["rules"][x["rule"]]["family"] = x["family"]
            s["rules"][x["rule"]]["low"] += 1
        for x in r["tp_rules"]:
            for rid in x["rules"]:
                s["rules"][rid]["family"] = x["family"]
                s["rules"][rid]["tp"] += 1
        for x in r["fp"]:
            for rid in x["rules"]:
                s["rules"][rid]["family"] = x["family"]
                s["rules"][rid]["fp"] += 1
            for why in x.get("causes") or [x["why"]]:
                s["fp_why"][(x["family"], why)] += 1
            s["fp_list"].append({**x, "scenario": r["scenario"], "seed": r["seed"], "scale": r["scale"]})
        for x in r["kinds"]:
            k = s["kinds"][(x["family"], x["kind"])]
            k[0] += 1
            k[1] += not x["found"]
            b = s["bands"][(x["family"], _band(x.get("strength")))]
            b[0] += 1
            b[1] += not x["found"]
        for x in r["fn"]:
            s["fn_list"].append({**x, "scenario": r["scenario"], "seed": r["seed"], "scale": r["scale"]})
    for s in by_scale.values():
        for fam in families:
            s["families"][fam]
    return by_scale


def verdict(scale: float, s: dict, families: list[str]) -> tuple[bool, str]:
    problems, notes, absent = [], [], []
    for fam in families:
        tp, fp, fn = s["families"][fam]
        p, r = _pr(tp, fp, fn)
        if p is not None and p < GOAL:
            problems.append(f"{fam} P {p:.3f}")
        if r is not None and r < GOAL:
            problems.append(f"{fam} R {r:.3f}")
        if tp + fn == 0:
            absent.append(fam)
    if absent:
        notes.append(f"no anomaly of {', '.join(absent)} in this run")
    if s["clean_devices"]:
        problems.append(f"{s['clean_devices']} device(s) at medium+ on {s['clean_days_with_devices']} clean day(s)")
    if not s["clean_days"]:
        notes.append("no clean day in this run")
    ok = not problems and not s["failed"]
    word = "INCOMPLETE" if s["failed"] else "PASS" if ok else "FAIL"
    scored = s["cases"] - len(s["failed"])
    if not scored:
        return False, f"scale {_fmt_scale(scale)}: INCOMPLETE — all {s['cases']} case(s) failed"
    text = (f"scale {_fmt_scale(scale)}: {word} — "
            + (f"{len(s['failed'])} of {s['cases']} case(s) failed; on the {scored} scored: " if s["failed"] else "")
            + ("; ".join(problems) if problems else
               f"every family P and R >= {GOAL} and no device at medium+ on {s['clean_days']} clean day(s)")
            + (f" ({'; '.join(notes)})" if notes else ""))
    return ok, text


def wall_by_scale(timing: dict) -> dict:
    """{scale: {"wall_seconds": first task started -> last task done, "worker_seconds": sum of the
    tasks' own times}}; scales overlap a little where the pool moves from one to the next."""
    return {_fmt_scale(k): {"wall_seconds": round((t["end"] or 0) - (t["start"] or 0), 1),
                            "worker_seconds": round(t["worker_seconds"], 1)}
            for k, t in sorted(timing.items())}


def _seed_label(info: dict) -> str:
    """'1111–1160', or the runs of a merged set's seeds: '1111–1130, 1141–1160'."""
    seeds = info.get("seed_list") or range(info["first_seed"], info["first_seed"] + info["seeds"])
    runs: list[list[int]] = []
    for x in sorted(seeds):
        if runs and x == runs[-1][1] + 1:
            runs[-1][1] = x
        else:
            runs.append([x, x])
    return ", ".join(f"{lo}–{hi}" if hi > lo else f"{lo}" for lo, hi in runs)


def _load_runs(paths: list[Path]) -> list[dict]:
    """Earlier runs' JSON summaries, refused when they mix sets, rules (commit or code fingerprint)
    or servers-day modes: one table must measure one thing."""
    docs = []
    for p in paths:
        try:
            docs.append(json.loads(Path(p).read_text()))
        except (OSError, ValueError) as e:
            raise SystemExit(f"--merge: cannot read {p}: {e}") from None
        if "cases" not in docs[-1] or "set" not in docs[-1]:
            raise SystemExit(f"--merge: {p} is no summary of bench/quality.py")
    for what, values in (("sets", {d["set"] for d in docs}),
                         ("commits", {c for d in docs if (c := (d.get("git") or {}).get("commit"))}),
                         ("code fingerprints (their rules differ)", {c for d in docs if (c := d.get("code"))}),
                         ("servers-day modes", {bool(d.get("servers_baseline", True)) for d in docs})):
        if len(values) > 1:
            raise SystemExit(f"--merge: the runs have different {what}: {', '.join(map(str, sorted(values)))}")
    if not all(d.get("code") or ((d.get("git") or {}).get("commit") and not d["git"].get("dirty")) for d in docs):
        print("--merge: some runs record neither a code fingerprint nor a clean commit: "
              "make sure they ran the same rules", file=sys.stderr)
    return docs


def merge_runs(paths: list[Path]) -> tuple[list[dict], dict, list[str], float, int]:
    """Earlier runs as one (a 50-seed holdout split over sessions): their cases, none twice."""
    docs = _load_runs(paths)
    results, seen = [], set()
    for p, d in zip(paths, docs):
        for c in d["cases"]:
            key = (c["scenario"], str(c["seed"]), _fmt_scale(c["scale"]))
            if key in seen:
                raise SystemExit(f"--merge: case {'/'.join(key)} is in more than one run (last: {p})")
            seen.add(key)
            results.append(c)
    seeds = sorted({c["seed"] for c in results if isinstance(c["seed"], int)})
    info = {"set": docs[0]["set"], "source": docs[0].get("source", "simulator"),
            "first_seed": seeds[0] if seeds else None, "seeds": len(seeds) or None, "seed_list": seeds,
            "scales": sorted({c["scale"] for c in results}),
            "scenarios": list(dict.fromkeys(sc for d in docs for sc in d.get("scenarios", []))),
            "merged_from": [str(p) for p in paths], "servers_baseline": bool(docs[0].get("servers_baseline", True)),
            "code": docs[0].get("code") if all(d.get("code") for d in docs) else None}
    families = list(dict.fromkeys(f for d in docs for f in d.get("families", [])))
    return (results, info, families, sum(d.get("wall_seconds", 0.0) for d in docs),
            max(d.get("jobs", 1) for d in docs))


def report(results: list[dict], info: dict, families: list[str], a, wall: float,
           timing: dict | None = None) -> tuple[dict, list[str]]:
    by_scale = aggregate(results, families)
    P = print
    if info["set"] == "holdout":
        P(f"# Detection quality — HOLDOUT set (seeds {_seed_label(info)})")
        P()
        P("**Holdout: the final measurement of rules fixed beforehand. Never run it or look at it while "
          "tuning; a rule changed because of it spends the holdout.**")
    elif info["set"] == "tune":
        P(f"# Detection quality — tuning set (seeds {_seed_label(info)})")
    else:
        P(f"# Detection quality — external days from {info['source']}")
    P()
    P(f"{len(info['scenarios'])} scenarios ({', '.join(info['scenarios'])}) x scales "
      f"{', '.join(map(_fmt_scale, info['scales']))}; {len(results)} cases, "
      f"{sum(bool(r.get('error')) for r in results)} failed; "
      f"{'with' if not a.no_servers_baseline else 'without'} a clean servers day; "
      f"a device counts at severity medium or more (event.severity >= {MEDIUM}); {_hms(wall)} wall time "
      f"with {a.jobs} job(s)")

    if a.verbose:
        for scale in sorted(by_scale):
            s = by_scale[scale]
            fps = [x for x in s["fp_list"] if a.family in (None, x["family"])]
            fns = [x for x in s["fn_list"] if a.family in (None, x["family"])]
            if not (fps or fns):
                continue
            P()
            P(f"## Scale {_fmt_scale(scale)}: every false positive / negative")
            P()
            for x in sorted(fps, key=lambda x: (x["scenario"], str(x["seed"]), x["family"], x["ip"])):
                P(f"- FP {x['scenario']}/{x['seed']}/{_fmt_scale(x['scale'])} {x['family']}: {x['ip']} "
                  f"({x['why']}) by {', '.join(x['rules'])}")
            for x in sorted(fns, key=lambda x: (x["scenario"], str(x["seed"]), x["family"], x["ip"])):
                st = f", strength {x['strength']:.2f}" if isinstance(x.get("strength"), (int, float)) else ""
                lo = f"; low notice by {', '.join(x['low_rules'])}" if x.get("low_rules") else ""
                P(f"- FN {x['scenario']}/{x['seed']}/{_fmt_scale(x['scale'])} {x['family']}/{x['kind']}: "
                  f"{x['ip']}{st}{lo}")

    verdicts = []
    for scale in sorted(by_scale):
        s = by_scale[scale]
        ds = s["detect_seconds"]
        P()
        P(f"## Scale {_fmt_scale(scale)}")
        P()
        P(f"{s['cases']} cases ({len(s['failed'])} failed); detect {sum(ds) / max(len(ds), 1):.2f} s per day on average")
        P()
        P("| family | TP | FP | FN | precision | recall |")
        P("|---|---:|---:|---:|---:|---:|")
        for fam in families:
            tp, fp, fn = s["families"][fam]
            p, r = _pr(tp, fp, fn)
            P(f"| {fam} | {tp} | {fp} | {fn} | {_f(p)} | {_f(r)} |")
        P()
        extra = (f"; by rule: {', '.join(f'`{k}` {v}' for k, v in s['clean_rules'].most_common())}"
                 if s["clean_rules"] else "")
        P(f"Devices at medium+ on clean days: {s['clean_devices']} over {s['clean_days']} days "
          f"({s['clean_days_with_devices']} with any{extra})")
        P()
        P(f"Low notices (not scored): {s['low_alerts']} alerts on {s['low_devices']} device-families "
          f"({s['low_on_anomaly_hosts']} on anomaly hosts of their family, {s['low_on_clean_days']} on clean days)")
        if s["rules"]:
            P()
            P("| rule | family | TP devices | FP devices | low notices |")
            P("|---|---|---:|---:|---:|")
            for rid, v in sorted(s["rules"].items(), key=lambda kv: (-kv[1]["fp"], kv[0])):
                P(f"| `{rid}` | {v['family']} | {v['tp']} | {v['fp']} | {v['low']} |")
        if s["kinds"]:
            P()
            P("| anomaly kind | hosts | FN | recall |")
            P("|---|---:|---:|---:|")
            for (fam, kind), (n, fn) in sorted(s["kinds"].items(), key=lambda kv: (-kv[1][1], kv[0])):
                P(f"| {fam}/{kind} | {n} | {fn} | {_f((n - fn) / n if n else None)} |")
        if s["bands"]:
            P()
            P("| family | anomaly strength | hosts | FN | recall |")
            P("|---|---|---:|---:|---:|")
            for (fam, band), (n, fn) in sorted(s["bands"].items()):
                P(f"| {fam} | {band} | {n} | {fn} | {_f((n - fn) / n if n else None)} |")
        if s["fp_why"]:
            P()
            P("| false positives: family | cause (benign kind, other family's anomaly) | devices |")
            P("|---|---|---:|")
            for (fam, why), n in sorted(s["fp_why"].items(), key=lambda kv: (-kv[1], kv[0])):
                P(f"| {fam} | {why} | {n} |")
            P()
            P("(a device with several benign changes counts under each)")
        P()
        P("| scenario | " + " | ".join(f"{f} P/R" for f in families) + " |")
        P("|---|" + "---|" * len(families))
        for sc in info["scenarios"]:
            if sc not in s["scenarios"]:
                continue
            cells = []
            for fam in families:
                tp, fp, fn = s["scenarios"][sc][fam]
                if tp + fp + fn == 0:
                    cells.append("–")
                    continue
                p, r = _pr(tp, fp, fn)
                cell = f"{_f(p, 2)}/{_f(r, 2)}"
                if fp or fn:
                    cell += f" ({', '.join(x for x in (f'{fp} FP' if fp else '', f'{fn} FN' if fn else '') if x)})"
                cells.append(cell)
            P(f"| {sc} | " + " | ".join(cells) + " |")
        if s["failed"]:
            P()
            P(f"Failed cases at scale {_fmt_scale(scale)}:")
            for r in s["failed"]:
                P()
                P(f"- {r['scenario']}/{r['seed']}/{_fmt_scale(r['scale'])}"
                  + (f" ({r['dir']})" if r.get("dir") else "") + ":")
                P("```")
                P(r["error"].rstrip())
                P("```")
        verdicts.append(verdict(scale, s, families)[1])
    P()
    P("## Verdict")
    P()
    for v in verdicts:
        P(f"- {v}")
    if timing:
        P()
        P(f"## Wall time ({a.jobs} job(s))")
        P()
        for k, t in wall_by_scale(timing).items():
            n = sum(1 for r in results if _fmt_scale(r["scale"]) == k)
            P(f"- scale {k}: {_hms(t['wall_seconds'])} for {n} case(s) "
              f"({t['worker_seconds'] / max(n, 1):.1f} worker-seconds per case, its clean day's share included)")
        P(f"- total: {_hms(wall)}")

    summary = {"by_scale": {}}
    for scale, s in sorted(by_scale.items()):
        fam = {}
        for f in families:
            tp, fp, fn = s["families"][f]
            p, r = _pr(tp, fp, fn)
            fam[f] = {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r}
        summary["by_scale"][_fmt_scale(scale)] = {
            "cases": s["cases"], "failed": len(s["failed"]),
            "detect_seconds_mean": sum(s["detect_seconds"]) / max(len(s["detect_seconds"]), 1),
            "families": fam,
            "clean": {"days": s["clean_days"], "devices_medium_plus": s["clean_devices"],
                      "days_with_devices": s["clean_days_with_devices"], "rules": dict(s["clean_rules"])},
            "low_notices": {"alerts": s["low_alerts"], "device_families": s["low_devices"],
                            "on_anomaly_hosts": s["low_on_anomaly_hosts"], "on_clean_days": s["low_on_clean_days"]},
            "rules": {k: dict(v) for k, v in sorted(s["rules"].items())},
            "kinds": {f"{fk[0]}/{fk[1]}": {"hosts": n, "fn": fn} for fk, (n, fn) in sorted(s["kinds"].items())},
            "strength_bands": {f"{fb[0]}/{fb[1]}": {"hosts": n, "fn": fn}
                               for fb, (n, fn) in sorted(s["bands"].items())},
            "fp_causes": [{"family": f, "cause": w, "devices": n} for (f, w), n in s["fp_why"].most_common()],
            "scenarios": {sc: {f: dict(zip(("tp", "fp", "fn"), v)) for f, v in d.items()}
                          for sc, d in s["scenarios"].items()},
            "verdict": verdict(scale, s, families)[1],
            "pass": verdict(scale, s, families)[0],
        }
    return summary, verdicts


def _git() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain", "--untracked-files=no"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=sorted(SETS), default="tune",
                    help="tune (default; seeds 1-20, scale 0.2) or holdout (seeds 1001-1050, scales 0.2,1,3: "
                         "never while tuning)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the set's)")
    ap.add_argument("--first-seed", type=int, default=None, help="first seed (default: the set's)")
    ap.add_argument("--scales", default=None, help="comma-separated scales (default: tune 0.2, holdout 0.2,1,3)")
    ap.add_argument("--scale", dest="scales", help=argparse.SUPPRESS)        # old spelling
    ap.add_argument("--scenarios", default=None, help="comma-separated (default: every scenario of the simulator)")
    ap.add_argument("--days", type=Path, default=None,
                    help="score the case directories under DIR (another generator's days) instead of generating")
    ap.add_argument("--jobs", "-j", type=int, default=2, help="cases run in parallel (default 2)")
    ap.add_argument("--family", default=None, help="with --verbose: list FP/FN of this family only")
    ap.add_argument("--no-servers-baseline", action="store_true",
                    help="profile without the clean servers day: external clients judged against their own population")
    ap.add_argument("--cache", type=Path, default=OUT / "cache", help="tune set's cache of days and profiles")
    ap.add_argument("--tmp", type=Path, default=None,
                    help="where per-group and per-case temporary directories go (default: system temp)")
    ap.add_argument("--fresh", action="store_true", help="regenerate the cached days and profiles of this run's cases")
    ap.add_argument("--keep", action="store_true",
                    help="keep generated days (holdout: in bench/out/quality/holdout/; --days: the profiles "
                         "and detect outputs, in --tmp)")
    ap.add_argument("--verbose", "-v", action="store_true", help="list every false positive / negative")
    ap.add_argument("--dry-run", action="store_true", help="print the cases that would run and exit")
    ap.add_argument("--json", type=Path, default=None, help="summary path (default bench/out/quality/<set>-<time>.json)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="print the tables of earlier runs' summaries as one run (e.g. a holdout split over "
                         "sessions: same set and rules, no case twice) and write their merged summary; runs nothing")
    a = ap.parse_args()
    if a.jobs < 1:
        raise SystemExit("--jobs must be >= 1")

    if a.merge:
        results, info, families, wall, a.jobs = merge_runs(a.merge)
        a.no_servers_baseline = not info["servers_baseline"]
        summary, _ = report(results, info, families, a, wall)
        write_summary(a, info, families, results, [], {}, wall, summary, time.strftime("%Y%m%d-%H%M%S"))
        return

    from flowsiem import simulate                  # read at run time: scenarios and kinds change

    cases, info = plan_cases(a, simulate.SCENARIOS)
    groups = plan_groups(cases, a)
    families = list(getattr(simulate, "FAMILY_KINDS", {}) or ("botnet", "exfiltration", "cnc", "external_abuse"))

    if a.dry_run:
        if info["set"] == "holdout":
            print("HOLDOUT set: the final measurement only; never run or look at it while tuning.")
        print(f"set {info['set']}: {len(cases)} cases = {len(info['scenarios'])} scenarios "
              f"({', '.join(info['scenarios'])}) x "
              + (f"{info['seeds']} seeds ({info['first_seed']}–{info['first_seed'] + info['seeds'] - 1}) x "
                 if info["seeds"] else "")
              + f"scales {', '.join(map(_fmt_scale, info['scales']))}; {a.jobs} job(s)")
        print(f"{len(groups)} clean day(s) generated and profiled, each shared by its group's cases"
              + (" (one per seed and scale)" if info["set"] != "days" else " (one per external day)"))
        where = {"cache": "cached in", "keep": "kept in", "external": "read from",
                 "temp": "temporary directory, deleted once the group is scored"}
        for g in groups:
            if g["mode"] == "external":
                print(f"  profile of {g['cases'][0]['dir']}: temporary directory")
            else:
                print(f"  clean day + profile, seed {g['seed']} scale {_fmt_scale(g['scale'])}: "
                      + (f"{where[g['mode']]} {g['base']}" if g["base"] else where["temp"]))
            for c in g["cases"]:
                loc = "test day in it" if c["mode"] == "temp" else f"{where[c['mode']]} {c['dir']}"
                print(f"    {c['scenario']:<12} seed {c['seed']!s:<6} scale {_fmt_scale(c['scale']):<5} {loc}")
        return

    stamp = time.strftime("%Y%m%d-%H%M%S")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f"flowsiem-quality-{info['set']}-",
                                     dir=str(a.tmp) if a.tmp else None))
    opts = {"servers_baseline": not a.no_servers_baseline, "fresh": a.fresh, "tmp_root": str(tmp_root),
            "keep_scratch": bool(a.keep and info["set"] == "days"), "stamps": _stamps(), "families": families}
    if info["set"] == "holdout":
        print("HOLDOUT set: the final measurement only; never run or look at it while tuning.", file=sys.stderr)
    print(f"{len(cases)} cases in {len(groups)} group(s) sharing a clean day, {a.jobs} job(s); "
          f"scratch in {tmp_root}", file=sys.stderr)
    _place_scratch_groups(groups, tmp_root)
    t0 = time.perf_counter()
    try:
        results, preps, timing = run_all(groups, opts, a.jobs)
    finally:
        if not opts["keep_scratch"]:
            shutil.rmtree(tmp_root, ignore_errors=True)
    wall = time.perf_counter() - t0

    for r in results:                                # a family new to the simulator's list
        for f in r.get("families", {}):
            if f not in families:
                families.append(f)
    summary, verdicts = report(results, info, families, a, wall, timing)
    write_summary(a, info, families, results, preps, timing, wall, summary, stamp)


def write_summary(a, info: dict, families: list[str], results: list[dict], preps: list[dict], timing: dict,
                  wall: float, summary: dict, stamp: str) -> None:
    """The run's JSON summary (every count, every case) under bench/out/quality/, or --json."""
    for r in results:
        r["benign"] = dict(r.get("benign") or {})
    doc = {
        "set": info["set"], "source": info["source"], "started": stamp, "wall_seconds": round(wall, 1),
        "argv": sys.argv[1:], "jobs": a.jobs, "first_seed": info["first_seed"], "seeds": info["seeds"],
        "scales": info["scales"], "scenarios": info["scenarios"], "families": families,
        "servers_baseline": not a.no_servers_baseline, "severity_threshold": MEDIUM, "goal": GOAL,
        "git": _git(), "code": info["code"] if "merged_from" in info else _code_fingerprint(),
        "failed": sum(bool(r.get("error")) for r in results),
        "wall_by_scale": wall_by_scale(timing),
        **({"merged_from": info["merged_from"], "seed_list": info["seed_list"]} if "merged_from" in info else {}),
        **summary,
        "cases": sorted(results, key=lambda r: (r["scale"], r["scenario"], str(r["seed"]))),
        "groups": sorted(preps, key=lambda r: (r["scale"], str(r["seed"]), r["group"])),
    }
    path = a.json or OUT / f"{info['set']}{'-merged' if 'merged_from' in info else ''}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str))
    print()
    print(f"Summary: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
