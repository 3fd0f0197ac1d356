"""`generate()`: build the world, plan the scenario, stream each day to Parquet, write truth.json."""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from pathlib import Path

import numpy as np

from . import catalog as cat
from . import routines
from .inject import ClientMods, HostMods, Plan, make_plan
from .model import (
    N_BINS,
    SRV,
    Batch,
    Population,
    World,
    build_clients,
    build_world,
    client_presence,
    day_shape,
    wrap_shape,
)
from .scenarios import SCENARIOS

ROW_GROUP_ROWS = 1 << 20

FILES = {  # file -> (id in the random streams, day)
    "data.parquet": (0, 0),
    "servers_data.parquet": (1, 0),
    "test.parquet": (2, 1),
    "servers.parquet": (3, 1),
}


def arrow_schema():
    import pyarrow as pa

    return pa.schema([
        ("timestamp", pa.int64()), ("src_ip", pa.string()), ("dst_ip", pa.string()),
        ("proto", pa.string()), ("port", pa.int32()), ("up_bytes", pa.int64()), ("down_bytes", pa.int64()),
    ])


class ChunkWriter:
    """Sorted 10-minute chunks appended to one Parquet file; row groups of ~1 M rows."""

    def __init__(self, path: Path, world: World):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self.path = path
        self.book = world.book.arrow()
        self.proto = pa.array([p for p, _ in world.svcs.items], type=pa.string())
        self.port = np.array([p for _, p in world.svcs.items], dtype=np.int32)
        self.schema = arrow_schema()
        self.writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")
        self.buf: list[Batch] = []
        self.buf_rows = 0
        self.rows = 0

    def add(self, batches: list[Batch | None]) -> int:
        batches = [b for b in batches if b is not None and len(b)]
        if not batches:
            return 0
        cols = [np.concatenate([getattr(b, f) for b in batches]) for f in ("ts", "src", "dst", "svc", "up", "down")]
        order = np.argsort(cols[0], kind="stable")
        merged = Batch(*(c[order] for c in cols))
        self.buf.append(merged)
        self.buf_rows += len(merged)
        if self.buf_rows >= ROW_GROUP_ROWS:
            self.flush()
        return len(merged)

    def flush(self) -> None:
        if not self.buf:
            return
        pa = self._pa
        cols = {f: np.concatenate([getattr(b, f) for b in self.buf]) for f in ("ts", "src", "dst", "svc", "up", "down")}
        self.buf, self.buf_rows = [], 0
        table = pa.Table.from_arrays([
            pa.array(cols["ts"], type=pa.int64()),
            self.book.take(pa.array(cols["src"], type=pa.int32())),
            self.book.take(pa.array(cols["dst"], type=pa.int32())),
            self.proto.take(pa.array(cols["svc"], type=pa.int32())),
            pa.array(self.port[cols["svc"]], type=pa.int32()),
            pa.array(cols["up"], type=pa.int64()),
            pa.array(cols["down"], type=pa.int64()),
        ], schema=self.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> int:
        self.flush()
        self.writer.close()
        return self.rows


class RowCounter:
    """Stands in for ChunkWriter for a day that is drawn but not written (generate(test_day_only=True)):
    counts the rows a ChunkWriter would have written, nothing else."""

    def __init__(self):
        self.rows = 0

    def add(self, batches: list[Batch | None]) -> int:
        n = sum(len(b) for b in batches if b is not None)
        self.rows += n
        return n

    def close(self) -> int:
        return self.rows


# --- one day of each population ---------------------------------------------------------------------


def host_population(w: World, day: int, scale: float, mods: HostMods | None) -> Population:
    """Internal hosts on day 0 (clean) or day 1 (test, with the plan's benign modifications)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([w.seed, 2, day])))
    n0 = w.n_hosts
    mult = rng.lognormal(-w.sigma_day ** 2 / 2, w.sigma_day, n0)
    start = w.start + rng.normal(0, 0.25, n0)
    end = w.end + rng.normal(0, 0.35, n0)
    absent = rng.random(n0) < (w.p_absent if day == 1 else 0.0)
    ext_w = w.ext_w.copy()
    # day-to-day taste of each host for each destination (drawn on the base targets only, so the
    # clean day does not depend on what a scenario appends)
    nb = w.n_base_ext
    ext_w[:, :nb] *= rng.lognormal(0, w.sigma_dest_day, (n0, nb))

    f_int, f_dns = w.f_int.copy(), w.f_dns.copy()
    pref_dns, pref_https = w.pref_dns.copy(), w.pref_https.copy()
    alt_col, alt_share = w.alt_col.copy(), w.alt_share.copy()
    mu_up, mu_dn = w.mu_up.copy(), w.mu_dn.copy()
    act = w.act.copy()
    src = w.host_codes.copy()
    new_hosts = []
    if mods is not None:
        for h in mods.keep:
            absent[h] = False
        for h, f in mods.volume.items():
            mult[h] *= f
        for h, dh in mods.end_shift.items():
            end[h] = w.end[h] + dh
        for new, old, frac in mods.rotation:
            ext_w[:, new] += frac * ext_w[:, old]
            ext_w[:, old] *= 1 - frac
        for h, (idx, share) in mods.new_dest.items():
            tot = ext_w[h].sum()
            ext_w[h] *= 1 - share
            ext_w[h, idx] += share * tot / len(idx)
        for h, (col, share) in mods.alt_dns.items():
            alt_col[h], alt_share[h] = col, share
        new_hosts = mods.new_hosts
    mult[absent] = 0.0
    absent_ips = [w.host_ip(i) for i in np.flatnonzero(absent)]
    shape = day_shape(start, end, w.width, w.lunch_c, w.lunch_depth, w.floor, w.deep_end, w.deep_factor)
    if mods is not None and mods.shift:
        hs = sorted(mods.shift)
        shape[hs] = wrap_shape([mods.shift[h][0] for h in hs], [mods.shift[h][1] for h in hs],
                               w.width[hs], 0.002)
    if new_hosts:
        nn = len(new_hosts)
        act = np.r_[act, [h.act for h in new_hosts]]
        mult = np.r_[mult, np.ones(nn)]
        f_int = np.r_[f_int, [h.f_int for h in new_hosts]]
        f_dns = np.r_[f_dns, [h.f_dns for h in new_hosts]]
        pref_dns = np.r_[pref_dns, np.full((nn, pref_dns.shape[1]), 1.0 / pref_dns.shape[1])]
        pref_https = np.r_[pref_https, np.full((nn, pref_https.shape[1]), 1.0 / pref_https.shape[1])]
        rows = np.zeros((nn, ext_w.shape[1]))
        for i, h in enumerate(new_hosts):
            rows[i, : len(h.ext_w)] = h.ext_w
        ext_w = np.r_[ext_w, rows]
        net_up = np.median(w.mu_up, axis=0)
        net_dn = np.median(w.mu_dn, axis=0)
        mu_up = np.r_[mu_up, np.tile(net_up, (nn, 1))]
        mu_dn = np.r_[mu_dn, np.tile(net_dn, (nn, 1))]
        sh = day_shape([h.start for h in new_hosts], [h.end for h in new_hosts], np.full(nn, 0.5),
                       np.full(nn, 13.0), np.full(nn, 0.4), np.zeros(nn), w.deep_end, w.deep_factor)
        for i, h in enumerate(new_hosts):
            if h.shape is not None:
                sh[i] = h.shape / h.shape.sum()
        shape = np.r_[shape, sh]
        src = np.r_[src, w.book.codes([cat.ip_str(h.ip_int) for h in new_hosts])]
        alt_col = np.r_[alt_col, np.full(nn, -1)]
        alt_share = np.r_[alt_share, np.zeros(nn)]
    lam = (w.day_flows * scale * act * mult)[:, None] * shape
    weights = w.host_weights(f_int, f_dns, pref_dns, pref_https, ext_w, alt_col, alt_share)
    dst, svc, cls = w.host_targets()
    pop = Population(src, lam, weights, dst, svc, cls, mu_up, mu_dn, w.bm)
    pop.absent_ips = absent_ips
    pop.absent = absent
    pop.day_shape = shape
    return pop


def client_population(w: World, day: int, scale: float, mods: ClientMods | None) -> Population:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([w.seed, 5, day])))
    m = len(w.client_ints)
    present = client_presence(w, day)
    mult = rng.lognormal(-0.045, 0.3, m)
    start = w.c_start + rng.normal(0, 0.5, m)
    end = w.c_end + rng.normal(0, 0.7, m)
    if mods is not None:
        for c, f in mods.volume.items():
            mult[c] *= f
    if mods is not None:
        for c in mods.present:
            present[c] = True
    shape = day_shape(start, end, w.c_width, np.full(m, 13.0), np.full(m, 0.2), w.c_floor,
                      w.deep_end, 0.3)
    # normalised on the clients actually present that day, so the day's total stays near its target
    # whatever heavy hitters happen to come
    tot = float((w.c_act * present).sum())
    lam = (w.servers_flows * scale * w.c_act / tot * mult * present)[:, None] * shape
    n_pub = len(w.pub_servers)
    cls = np.full(n_pub, SRV)
    https = w.svcs.code("tcp", 443)
    return Population(w.client_codes, lam, w.c_pref, w.pub_codes, np.full(n_pub, https), cls,
                      w.c_mu_up, w.c_mu_dn, w.bm)


# --- truth ------------------------------------------------------------------------------------------


def _truth(w: World, scenario: str, seed: int, scale: float, plan: Plan, rows: dict, stats: dict,
           seconds: float, absent: list[str]) -> dict:
    def st(key, days=("test.parquet", "servers.parquet")):
        out = [0, 0, 0]
        for f in days:
            for i, v in enumerate(stats.get((f, key), (0, 0, 0))):
                out[i] += v
        return {"flows": int(out[0]), "up_bytes": int(out[1]), "down_bytes": int(out[2])}

    anomalies = []
    for i, a in enumerate(plan.anomalies):
        a = dict(a)
        a["details"] = {**a["details"], **st(("a", i))}
        anomalies.append(a)
    # benign: the world's routines (both days; a host that is an anomaly today or stays home is not
    # listed), then the test day's changes
    flagged = {h for a in plan.anomalies for h in a["hosts"]}
    streamed = {key for _, key in stats}
    away = set(absent)
    benign = []
    changed = {h for b in plan.benign for h in b["hosts"]}  # clients whose behaviour the plan changed
    for i, b in enumerate(w.routines.entries):
        skip = flagged | away | (changed if not w.routines.entry_hosts[i] else set())
        hosts = [h for h in b["hosts"] if h not in skip]
        if b["hosts"] and not hosts:
            continue
        details = dict(b["details"])
        if ("w", i) in streamed:  # flows of the entry's own streams (not of a population's draws)
            details.update(st(("w", i)))
            details["flows_clean_day"] = st(("w", i), ("data.parquet", "servers_data.parquet"))["flows"]
        benign.append({"kind": b["kind"], "hosts": hosts, "details": details})
    for i, b in enumerate(plan.benign):
        benign.append({**b, "details": {**b["details"], **(st(("b", i)) if ("b", i) in streamed else {})}})

    def services(sv):
        return [{"proto": p, "port": int(q)} for p, q in sv["services"]]

    return {
        "scenario": scenario,
        "seed": seed,
        "scale": scale,
        "description": SCENARIOS[scenario].description,
        "timestamp_unit": "centiseconds since midnight (0..8639999)",
        "files": {
            "data": "data.parquet", "test": "test.parquet", "servers": "servers.parquet",
            "servers_data": "servers_data.parquet",
            "notes": "servers.parquet: external clients of the public servers on the test day (with the "
                     "external_abuse anomalies); servers_data.parquet: the same population on the clean day.",
        },
        "rows": rows,
        "internal_networks": [w.cidr],
        "internal_network_kind": w.net_kind,
        "internal_servers": [{"ip": s["ip"], "services": services(s)} for s in w.servers],
        "internal_hosts": [w.host_ip(i) for i in range(w.n_hosts)],
        "public_servers": [{"ip": s["ip"], "services": services(s)} for s in w.pub_servers],
        "anomalies": anomalies,
        "benign": benign,
        "world": {
            "hosts": int(w.n_hosts),
            "external_destinations": int(w.n_base_ext),
            "external_clients": int(len(w.client_ints)),
            "absent_on_test_day": absent,
            "search_crawlers": [cat.ip_str(int(v)) for v, k in zip(w.client_ints, w.client_kind) if k == 2],
            "machines_left_on": [w.host_ip(i) for i in np.flatnonzero(w.always_on)],
            "monitoring_host": None if w.routines.monitor is None else w.host_ip(w.routines.monitor),
            "nas": w.routines.nas_ip,
            "evening_clients_in_population": int(w.c_evening.sum()),
            "expected_day_flows": round(w.day_flows * scale),
            "expected_servers_flows": round(w.servers_flows * scale),
            "deep_night_until_hour": round(w.deep_end, 2),
            "night_floor_factor": round(w.deep_factor, 3),
            "medians": {k: round(v, 1) for k, v in w.medians.items()},
        },
        "generator": {"version": 2, "seconds": round(seconds, 2)},
    }


# --- the entry point ----------------------------------------------------------------------------------


def generate(scenario: str, seed: int = 0, scale: float = 1.0, out_dir: Path | str = ".", progress=None,
             test_day_only: bool = False) -> dict:
    """Write data.parquet, test.parquet, servers.parquet, servers_data.parquet and truth.json into
    out_dir; return a summary {"rows": {...}, "anomalies": k, "benign": m, ...}.

    test_day_only=True writes only test.parquet, servers.parquet and truth.json, for callers that
    already have the clean day of this seed and scale (data.parquet and servers_data.parquet are the
    same for every scenario). The clean day is still drawn, since truth.json counts its rows and its
    routines' flows, but not sorted, encoded or written: the three files are byte-identical to a full
    run's (truth.json but for generator.seconds, a timing) and the random streams are unchanged. Clean-day
    files already in out_dir are left as they are."""
    from ..errors import UsageError

    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario '{scenario}' (choose one of: {', '.join(SCENARIOS)})")
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise UsageError(f"scale must be a number > 0 (got {scale!r})") from None
    if not math.isfinite(scale) or scale <= 0:
        raise UsageError(f"scale must be > 0 (got {scale})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer (got {seed!r})")
    seed = int(seed)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {out}: {exc.strerror or exc}") from None

    t0 = time.perf_counter()
    sc = SCENARIOS[scenario]
    world = build_world(seed)
    build_clients(world, seed, scale)
    routines.build_routines(world, seed)
    plan = make_plan(world, sc, seed, scale, zlib.crc32(scenario.encode()))

    def hosts(day, mods, extra):
        pop = host_population(world, day, scale, mods)
        return pop, routines.host_streams(world, day, scale, pop.day_shape, pop.absent) + extra

    def clients(day, mods, extra):
        return client_population(world, day, scale, mods), routines.client_streams(world, day, scale) + extra

    jobs = {  # built lazily, one file at a time
        "data.parquet": lambda: hosts(0, None, []),
        "servers_data.parquet": lambda: clients(0, None, []),
        "test.parquet": lambda: hosts(1, plan.host_mods, plan.test_streams),
        "servers.parquet": lambda: clients(1, plan.client_mods, plan.servers_streams),
    }
    stats: dict[tuple, list[int]] = {}
    absent: list[str] = []
    rows: dict[str, int] = {}

    own = progress is None
    if own:
        from ..console import progress as make_progress

        progress = make_progress()
        progress.__enter__()
    try:
        for name, job in jobs.items():
            pop, streams = job()
            streams = [st for st in streams if st is not None]
            for st in streams:
                stats.setdefault((name, st.entry), [0, 0, 0])
            if name == "test.parquet":
                absent = pop.absent_ips
            file_id, day = FILES[name]
            write = day == 1 or not test_day_only
            task = progress.task(f"{'writing' if write else 'drawing'} {name}", total=N_BINS)
            tmp = out / f".{name}.partial"
            wr = ChunkWriter(tmp, world) if write else RowCounter()
            try:
                for b in range(N_BINS):
                    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 10 + file_id, b])))
                    batches = [pop.emit(rng, b)]
                    for st in streams:
                        bt = st.emit(rng, b)
                        if bt is not None:
                            acc = stats.setdefault((name, st.entry), [0, 0, 0])
                            acc[0] += len(bt)
                            acc[1] += int(bt.up.sum())
                            acc[2] += int(bt.down.sum())
                        batches.append(bt)
                    wr.add(batches)
                    progress.advance(task, 1)
                rows[name] = wr.close()
            except BaseException:
                if write:
                    wr.writer.close()
                    tmp.unlink(missing_ok=True)
                raise
            if write:
                os.replace(tmp, out / name)
    finally:
        if own:
            progress.__exit__(None, None, None)

    seconds = time.perf_counter() - t0
    truth = _truth(world, scenario, seed, scale, plan, rows, stats, seconds, absent)
    tmp = out / ".truth.json.partial"
    tmp.write_text(json.dumps(truth, indent=2) + "\n")
    os.replace(tmp, out / "truth.json")
    return {
        "rows": rows,
        "anomalies": len(plan.anomalies),
        "benign": len(plan.benign),
        "seconds": round(seconds, 2),
        "out_dir": str(out),
        "truth": str(out / "truth.json"),
        "families": sorted({a["family"] for a in plan.anomalies}),
    }
