"""Does memory stay bounded on a large text log? (issue 10)

    python bench/memory.py [--gb 2] [--dir bench/out/memory] [--memory-limit 500MB]

Generates (once; kept under --dir) a Zeek conn.log of about --gb GB in Zeek's TSV layout, and its
gzip, then measures each in its own child process (peak RSS of the process tree, sampled every
50 ms from /proc, as bench/speed.py does):

- **read**: `read_flows` on the log and the canonical table materialised in the engine, as every
  command does first: parse, validate, convert, keep. Without a memory limit the kept table sits
  in DuckDB's compressed in-memory database; with `--memory-limit` (the CLI's option) in the run's
  scratch database file, DuckDB's buffer pool held to the limit.
- **hunt**: `flowsiem hunt LOG --no-report --memory-limit L`, the whole analysis.

Text is parsed in blocks of 16 MB (flowsiem.io.sniff.BLOCK_SIZE) spooled to parquet in the
scratch directory, so the reading side does not grow with the file. The JSON goes to DIR/memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from speed import timed  # noqa: E402  (bench scripts share the measuring code)

FIELDS = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service",
          "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp",
          "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes",
          "tunnel_parents"]
TYPES = ["time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count",
         "count", "string", "bool", "bool", "count", "string", "count", "count", "count", "count",
         "set[string]"]

READ = """
import sys, time
from flowsiem.engine import connect
from flowsiem.io import read_flows
t = time.perf_counter()
engine = connect("duckdb", memory_limit=sys.argv[2] or None)
res = read_flows(sys.argv[1], engine)
kept = engine.materialize(res.table)
print(kept.count().execute(), round(time.perf_counter() - t, 1))
"""


def _block(rng, n: int, t0: float, t1: float):
    """n conn.log rows as an Arrow table (a day of an office: 800 hosts, 30 000 destinations)."""
    import numpy as np
    import pyarrow as pa

    ts = np.sort(rng.uniform(t0, t1, n))
    src = rng.integers(0, 800, n)
    dst = rng.zipf(1.3, n) % 30_000
    tcp = rng.random(n) < 0.8
    port = np.where(tcp, rng.choice([443, 80, 22, 445, 8080], n, p=[.7, .15, .05, .05, .05]), 53)
    up = rng.lognormal(6, 2, n).astype(np.int64)
    down = rng.lognormal(8, 2.5, n).astype(np.int64)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
    uid = ["C" + "".join(r) for r in letters[rng.integers(0, len(letters), (n, 17))]]
    cols = {
        "ts": pa.array(np.char.mod("%.6f", ts)),
        "uid": pa.array(uid),
        "id.orig_h": pa.array(np.char.add("10.1.", np.char.add((src // 250).astype(str),
                                                              np.char.add(".", (src % 250 + 1).astype(str))))),
        "id.orig_p": pa.array(rng.integers(1024, 65535, n)),
        "id.resp_h": pa.array(np.char.add("198.", np.char.add((dst // 65536 % 256).astype(str), np.char.add(
            ".", np.char.add((dst // 256 % 256).astype(str), np.char.add(".", (dst % 256).astype(str)))))))
        ,
        "id.resp_p": pa.array(port),
        "proto": pa.array(np.where(tcp, "tcp", "udp")),
        "service": pa.array(np.where(port == 53, "dns", np.where(port == 443, "ssl", "-"))),
        "duration": pa.array(np.char.mod("%.6f", rng.exponential(3.0, n))),
        "orig_bytes": pa.array(up),
        "resp_bytes": pa.array(down),
        "conn_state": pa.array(rng.choice(["SF", "S0", "REJ", "RSTO"], n, p=[.85, .08, .04, .03])),
        "local_orig": pa.array(np.full(n, "T")),
        "local_resp": pa.array(np.full(n, "F")),
        "missed_bytes": pa.array(np.zeros(n, dtype=np.int64)),
        "history": pa.array(np.where(tcp, "ShADadFf", "Dd")),
        "orig_pkts": pa.array(up // 1000 + 2),
        "orig_ip_bytes": pa.array(up + 80),
        "resp_pkts": pa.array(down // 1000 + 2),
        "resp_ip_bytes": pa.array(down + 80),
        "tunnel_parents": pa.array(np.full(n, "-")),
    }
    return pa.table(cols)


def generate(path: Path, gb: float) -> None:
    """Write a Zeek TSV conn.log of about `gb` GB, then its gzip (both reused when present)."""
    import numpy as np
    import pyarrow.csv as pcsv

    if not path.exists():
        rng = np.random.default_rng(7)
        part = path.with_suffix(".part")
        t0 = 1_700_000_000.0
        opts = pcsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
        with open(part, "wb") as fh:
            fh.write(("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
                      "#path\tconn\n#open\t2023-11-14-22-13-20\n#fields\t" + "\t".join(FIELDS) +
                      "\n#types\t" + "\t".join(TYPES) + "\n").encode())
            step, i = 200_000, 0
            while fh.tell() < gb * 1e9:
                pcsv.write_csv(_block(rng, step, t0 + i * 60, t0 + (i + 1) * 60), fh, opts)
                i += 1
            fh.write(b"#close\t2023-11-15-22-13-20\n")
        part.rename(path)
    gz = path.with_name(path.name + ".gz")
    if not gz.exists():
        with open(gz.with_suffix(".part"), "wb") as out:
            subprocess.run(["gzip", "-1", "-c", str(path)], stdout=out, check=True)
        gz.with_suffix(".part").rename(gz)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=HERE / "out" / "memory")
    ap.add_argument("--memory-limit", default="500MB", help="the limit given to the limited runs")
    ap.add_argument("--skip-hunt", action="store_true")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    log = args.dir / f"conn-{args.gb:g}gb.log"
    t = time.perf_counter()
    generate(log, args.gb)
    print(f"input: {log} ({log.stat().st_size / 1e9:.2f} GB), {log.name}.gz "
          f"({Path(str(log) + '.gz').stat().st_size / 1e9:.2f} GB); ready in {time.perf_counter() - t:.0f} s")
    py = sys.executable
    runs = {}
    for name in (log.name, log.name + ".gz"):
        path = args.dir / name
        for limit in ("", args.memory_limit):
            runs[f"read {name}" + (f", --memory-limit {limit}" if limit else "")] = \
                [py, "-c", READ, str(path), limit]
    if not args.skip_hunt:
        runs[f"hunt {log.name}, --memory-limit {args.memory_limit}"] = [
            py, "-m", "flowsiem", "hunt", str(log), "--out", str(args.dir / "hunt"), "--no-report",
            "--quiet", "--memory-limit", args.memory_limit]
    results = {}
    print("| what | wall | peak RSS |\n|---|---:|---:|")
    for name, cmd in runs.items():
        secs, peak = timed(cmd)
        results[name] = {"s": round(secs, 1), "peak_rss_mib": round(peak / 2**20)}
        print(f"| {name} | {secs:.1f} s | {peak / 2**30:.2f} GiB |", flush=True)
    (args.dir / "memory.json").write_text(json.dumps(
        {"input_bytes": log.stat().st_size, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
