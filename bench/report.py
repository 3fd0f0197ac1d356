"""The report's size and how fast it renders in headless Chromium, on a generated day.

    python bench/report.py [SCALE] [--seed 1] [--keep DIR] [--screenshot docs/report.png]

Generates an `obvious` day (scale 1: ~2.7 M flows in three files), runs `flowsiem run` with and
without the report (the difference is what the report costs), then opens OUT/report.html in
Debian's chromium through playwright and prints: page size, time to the load event with the
first screen drawn (figures are drawn as they scroll into view), and time to draw every figure.
Targets (issue 8): under 10 MB and under 3 s at scale 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import Page  # noqa: E402  (the tests' headless Chromium; installs it when missing)


def flowsiem(*args) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flowsiem.cli", *map(str, args), "--quiet"], check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scale", nargs="?", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="directory to keep the generated days and outputs in")
    ap.add_argument("--screenshot", type=Path, default=None, help="save the first screen of the page here")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="flowsiem-bench-report-"))
    days = work / "days"
    if not (days / "data.parquet").exists():
        flowsiem("generate", "--scenario", "obvious", "--seed", a.seed, "--scale", a.scale, "--out", days)
    inputs = [days / "data.parquet", days / "test.parquet", "--servers", days / "servers.parquet",
              "--servers-baseline", days / "servers_data.parquet"]
    bare = flowsiem("run", *inputs, "--out", work / "bare", "--no-report")
    full = flowsiem("run", *inputs, "--out", work / "run")
    page = work / "run" / "report.html"
    with Page(page) as p:
        t = time.perf_counter()
        p.page.reload(wait_until="load")
        p.page.wait_for_function("() => document.querySelectorAll('.fig[data-drawn] .main-svg').length > 0")
        first = time.perf_counter() - t
        t = time.perf_counter()
        p.draw_all()
        every = time.perf_counter() - t + first
        marks = p.marks()
        if a.screenshot:
            a.screenshot.parent.mkdir(parents=True, exist_ok=True)
            p.page.screenshot(path=str(a.screenshot))
        errors = p.errors
    empty = sorted(k for k, v in marks.items() if v == 0)
    print(f"scale {a.scale}: `flowsiem run` {bare:.1f} s without the report, {full:.1f} s with it "
          f"(report +{full - bare:.1f} s)")
    print(f"page {page.stat().st_size / 1e6:.2f} MB, {len(marks)} figures; load + first screen drawn "
          f"{first:.2f} s; every figure drawn {every:.2f} s; console errors {len(errors)}; "
          f"figures without marks {len(empty)}")
    print(f"outputs in {work}")


if __name__ == "__main__":
    main()
