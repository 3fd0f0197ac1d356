"""Peak memory and speed of `flowsiem.simulate.generate` at a given scale.

Usage: python bench/simulate_memory.py [SCALE] [--scenario obvious] [--seed 0] [--out DIR]

Runs the generation in a child process (so the figure is the generator's own peak RSS, not this
script's) and prints rows written, seconds, flows per second, peak RSS and the size on disk.
Without --out the files go to a temporary directory that is removed afterwards.
Scale 1 is about 1 M flows per day file; scale 100 (100 M flows per day) should stay within ~1 GiB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _child(scenario: str, seed: int, scale: float, out: str, conn) -> None:
    from flowsiem import console
    from flowsiem import simulate

    console.set_quiet(True)
    t0 = time.perf_counter()
    summary = simulate.generate(scenario, seed=seed, scale=scale, out_dir=Path(out))
    summary["wall"] = time.perf_counter() - t0
    summary["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.send(summary)
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scale", nargs="?", type=float, default=5.0)
    ap.add_argument("--scenario", default="obvious")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="keep the files here (default: a temporary directory)")
    args = ap.parse_args()

    out = args.out or tempfile.mkdtemp(prefix="flowsiem-simbench-")
    ctx = mp.get_context("spawn")  # a fresh interpreter: its RSS is the generator's alone
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(args.scenario, args.seed, args.scale, out, child))
    p.start()
    child.close()
    summary = parent.recv()
    p.join()
    try:
        size = sum(f.stat().st_size for f in Path(out).iterdir() if f.is_file())
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)

    rows = summary["rows"]
    total = sum(rows.values())
    wall = summary["wall"]
    print(f"scenario:   {args.scenario}  seed {args.seed}  scale {args.scale:g}")
    for name, n in rows.items():
        print(f"  {name:<22} {n:>13,} flows")
    print(f"total:      {total:,} flows in {wall:.1f} s  ({total / wall:,.0f} flows/s)")
    print(f"peak RSS:   {summary['maxrss_kib'] / 1024:,.0f} MiB (child process, includes interpreter and imports)")
    print(f"on disk:    {size / 2**20:,.0f} MiB ({size / max(total, 1):.1f} bytes/flow)")
    print(f"cpus:       {os.cpu_count()}  python {sys.version.split()[0]}")
    print(json.dumps({"scale": args.scale, "flows": total, "seconds": round(wall, 2),
                      "flows_per_s": round(total / wall), "peak_rss_mib": round(summary["maxrss_kib"] / 1024),
                      "bytes_on_disk": size}))


if __name__ == "__main__":
    main()
