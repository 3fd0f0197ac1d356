"""Speed of flowsiem.enrich.GeoResolver on N random public IPv4 addresses.

Usage: python bench/enrich_speed.py [N] [--country-mmdb PATH] [--asn-mmdb PATH]
Prints the data load time (first lookup of one address) and lookups per second.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import time

from flowsiem.enrich import GeoResolver


def random_public_ipv4(n: int, seed: int = 42) -> list[str]:
    rnd = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        addr = ipaddress.IPv4Address(rnd.getrandbits(32))
        if addr.is_global and not addr.is_multicast:
            out.add(str(addr))
    return list(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=100_000, help="number of unique IPs")
    ap.add_argument("--country-mmdb", default=None)
    ap.add_argument("--asn-mmdb", default=None)
    args = ap.parse_args()

    ips = random_public_ipv4(args.n)
    resolver = GeoResolver(country_mmdb=args.country_mmdb, asn_mmdb=args.asn_mmdb)

    t0 = time.perf_counter()
    resolver.lookup(["8.8.8.8"])          # loads the data (once per process)
    load = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = resolver.lookup(ips)
    elapsed = time.perf_counter() - t0

    countries = table.column("country").to_pylist()
    known = sum(c not in ("unknown", "private") for c in countries)
    with_org = table.num_rows - table.column("as_org").null_count
    print(f"source:     {resolver.source}")
    print(f"load:       {load:.3f} s")
    print(f"lookups:    {table.num_rows:,} unique IPv4 in {elapsed:.3f} s "
          f"= {table.num_rows / elapsed:,.0f} lookups/s ({elapsed / table.num_rows * 1e6:.1f} µs each)")
    print(f"coverage:   country known {known / table.num_rows:.1%}, "
          f"AS organisation known {with_org / table.num_rows:.1%}")


if __name__ == "__main__":
    main()
