"""Time `flowsiem profile` on a generated day and print flows/s and peak memory.

    python bench/profile_speed.py [SCALE] [--engine duckdb] [--keep DIR]

Scale 1 is about 1 M flows in data.parquet (the seed's volume). The profile runs in a child
process so its peak RSS is measured alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scale", nargs="?", type=float, default=1.0)
    ap.add_argument("--engine", default="duckdb")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="directory to keep the generated days in")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="flowsiem-bench-"))
    days = work / "days"
    if not (days / "data.parquet").exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "flowsiem.cli", "generate", "--scenario", "obvious", "--seed",
                        str(a.seed), "--scale", str(a.scale), "--out", str(days), "--quiet"], check=True)
        print(f"generate: {time.perf_counter() - t:.1f} s")
    # The profile runs in its own child, which reports its own peak RSS (not the generator's).
    child = ("import resource, sys\n"
             "from flowsiem.cli import main\n"
             "try:\n    main(sys.argv[1:])\n"
             "finally:\n    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", child, "profile", str(days / "data.parquet"), "--servers",
                        str(days / "servers.parquet"), "--out", str(work / "profile"), "--engine", a.engine,
                        "--quiet"], capture_output=True, text=True)
    secs = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"profile failed: {r.stderr.strip()}")
    peak_mib = int(r.stderr.strip().splitlines()[-1]) / 1024
    p = json.loads((work / "profile" / "profile.json").read_text())
    rows = p["input"]["rows"]
    srv = p["public_servers"]["clients"]["flows"] if p.get("public_servers") else 0
    print(f"profile: scale {a.scale}  data {rows:,} flows + servers {srv:,} flows  {secs:.1f} s  "
          f"{(rows + srv) / secs:,.0f} flows/s  peak RSS {peak_mib:,.0f} MiB  engine {a.engine}")


if __name__ == "__main__":
    main()
