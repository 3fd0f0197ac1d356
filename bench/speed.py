"""How fast is flowsiem next to the machine's floor and the seed's own code?

    python bench/speed.py [--scales 1 10 50] [--days DIR] [--engine duckdb] [--skip-seed] [--only 'WHAT;WHAT']
                          [--memory-limit 3GB]

For each scale it generates the four files once (kept under --days, default bench/out/speed-days/,
so later runs reuse them) and times, each in its own child process:

- **floor**: one DuckDB `GROUP BY (src, dst, proto, port)` and one `GROUP BY (src, hour)` per input
  file, in one process, results discarded: what any detector has to do at least (and the same on
  the test day's two files alone, the floor for `hunt`);
- **run** / **run, no report**: `flowsiem run` (profile the clean day, detect on the test day, with
  the public servers' clients of both days), with and without `report.html`;
- **hunt** / **hunt, no report**: `flowsiem hunt` on the test day and its servers file, no baseline;
- **seed pandas**: `bench/seed_pandas.py`, a faithful pandas re-implementation of the seed report's
  section 2 and 4 code (scales <= 10 only: at 50 it needs more memory than the machine has);
- **--help**: `flowsiem --help`, best of five.

It prints wall time, peak RSS of the whole process tree (sampled every 50 ms from /proc), flows/s
and the ratios to the floor and to the seed's code. The JSON goes to bench/out/speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = ("data.parquet", "test.parquet", "servers_data.parquet", "servers.parquet")

FLOOR = """
import sys, duckdb
con = duckdb.connect()
for f in sys.argv[1:]:
    src = f"read_parquet('{f}')"
    con.execute(f"SELECT src_ip, dst_ip, proto, port, count(*), sum(up_bytes), sum(down_bytes) "
                f"FROM {src} GROUP BY ALL").fetch_arrow_table()
    con.execute(f"SELECT src_ip, (timestamp // 360000) AS hour, count(*), sum(up_bytes) "
                f"FROM {src} GROUP BY ALL").fetch_arrow_table()
"""


def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def timed(cmd: list[str]) -> tuple[float, int]:
    """Run a command; return its wall time and the peak RSS of its process tree."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, _tree_rss(proc.pid))

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    secs = time.perf_counter() - t
    done.set()
    th.join()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err.strip()[-2000:]}")
    return secs, peak


def generate(days: Path, scale: float) -> dict[str, int]:
    """Generate (or reuse) one scale's files; return the number of flows in each."""
    import pyarrow.parquet as pq

    if not all((days / f).exists() for f in FILES):
        print(f"generating scale {scale:g} into {days} ...", flush=True)
        subprocess.run([sys.executable, "-m", "flowsiem.cli", "generate", "--scenario", "obvious", "--seed", "11",
                        "--scale", str(scale), "--out", str(days), "--quiet"], check=True)
    return {f: pq.ParquetFile(days / f).metadata.num_rows for f in FILES}


def commands(days: Path, out: Path, engine: str, skip_seed: bool, scale: float) -> dict[str, list[str]]:
    fs = [sys.executable, "-m", "flowsiem.cli"]
    d = {f: str(days / f) for f in FILES}
    run = fs + ["run", d["data.parquet"], d["test.parquet"], "--servers", d["servers.parquet"],
                "--servers-baseline", d["servers_data.parquet"], "--engine", engine, "--quiet"]
    hunt = fs + ["hunt", d["test.parquet"], "--servers", d["servers.parquet"], "--engine", engine, "--quiet"]
    cmds = {
        "floor": [sys.executable, "-c", FLOOR] + [d[f] for f in FILES],
        "floor, test day": [sys.executable, "-c", FLOOR, d["test.parquet"], d["servers.parquet"]],
        "run": run + ["--out", str(out / "run")],
        "run, no report": run + ["--out", str(out / "run-nr"), "--no-report"],
        "hunt": hunt + ["--out", str(out / "hunt")],
        "hunt, no report": hunt + ["--out", str(out / "hunt-nr"), "--no-report"],
    }
    if not skip_seed and scale <= 10:
        cmds["seed pandas"] = [sys.executable, str(HERE / "seed_pandas.py"), str(days), "--quiet"]
    return cmds


def help_time() -> float:
    exe = Path(sys.executable).with_name("flowsiem")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "flowsiem.cli"]
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run(cmd + ["--help"], stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=float, nargs="+", default=[1, 10, 50])
    ap.add_argument("--days", type=Path, default=HERE / "out" / "speed-days")
    ap.add_argument("--engine", default="duckdb")
    ap.add_argument("--skip-seed", action="store_true", help="do not time the seed's pandas code")
    ap.add_argument("--only", default=None,
                    help="semicolon-separated subset (names contain commas): 'run, no report;hunt, no report'")
    ap.add_argument("--memory-limit", default=None, help="flowsiem's --memory-limit (e.g. 3GB; default DuckDB's)")
    a = ap.parse_args()
    if a.memory_limit:
        os.environ["FLOWSIEM_MEMORY_LIMIT"] = a.memory_limit  # the children inherit it
    only = {w.strip() for w in a.only.split(";")} if a.only else None
    out = HERE / "out" / "speed.json"
    results: dict = {"scales": {}}
    if out.exists():  # one file across invocations (e.g. scale 50 run on its own)
        results = json.loads(out.read_text())
    results.update({"help_s": round(help_time(), 3), "engine": a.engine})
    print(f"flowsiem --help: {results['help_s']:.2f} s (best of 5)")
    for scale in a.scales:
        days = a.days / f"scale-{scale:g}"
        counts = generate(days, scale)
        flows = sum(counts.values())
        rows = {}
        with tempfile.TemporaryDirectory(prefix="flowsiem-speed-") as tmp:
            for name, cmd in commands(days, Path(tmp), a.engine, a.skip_seed, scale).items():
                if only and name not in only and not name.startswith("floor"):
                    continue
                secs, peak = timed(cmd)
                rows[name] = {"s": round(secs, 2), "peak_rss_mib": round(peak / 2**20)}
                print(f"  scale {scale:g} {name:<16} {secs:8.1f} s  {peak / 2**30:5.2f} GiB", flush=True)
        results["scales"][f"{scale:g}"] = {"flows": counts, "rows": rows, "memory_limit": a.memory_limit}
        print_table(scale, counts, rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"JSON: {out}")


def print_table(scale: float, counts: dict[str, int], rows: dict) -> None:
    floor = rows.get("floor", {}).get("s")
    floor_test = rows.get("floor, test day", {}).get("s")
    seed = rows.get("seed pandas", {}).get("s")
    flows = sum(counts.values())
    hunted = counts["test.parquet"] + counts["servers.parquet"]  # hunt reads the test day only
    print(f"\nscale {scale:g}: {flows:,} flows in the four files ({hunted:,} in the test day's two)")
    print("| what | wall | peak RSS (tree) | flows/s | × floor | seed ÷ this |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        ref = floor_test if name.startswith(("hunt", "floor, test")) else floor
        xf = f"{r['s'] / ref:.1f}" if ref else "–"
        xs = f"{seed / r['s']:.1f}" if seed and name != "seed pandas" else "–"
        n = hunted if name.startswith("hunt") else flows
        print(f"| {name} | {r['s']:.1f} s | {r['peak_rss_mib'] / 1024:.2f} GiB | {n / r['s']:,.0f} | {xf} | {xs} |")
    print()


if __name__ == "__main__":
    main()
