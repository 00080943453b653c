"""The api3 benchmark: `shotgun_api3.find` of 50 shots through the cache versus directly against the
simulated site (which adds a fixed latency to every request, 150 ms by default, as a hosted site).

Run by scripts/bench-api3, which starts the stack and exports API3_CACHE_URL, API3_SITE_URL,
API3_SCRIPT and API3_KEY. Prints median and p99 latency of both and the speed-up, and checks that
both return the same records. The loops are bounded by --rounds.
"""

import argparse
import os
import statistics
import sys
import time

import shotgun_api3

FIELDS = ["code", "sg_status_list", "sg_sequence", "sg_sequence.Sequence.code", "project", "sg_cut_in", "created_at"]


def percentile(samples, p):
    s = sorted(samples)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def run(sg, rounds, statuses):
    times = []
    last = None
    for i in range(rounds):
        filters = [["sg_status_list", "is", statuses[i % len(statuses)]]] if statuses else []
        t0 = time.perf_counter()
        last = sg.find("Shot", filters, FIELDS, order=[{"field_name": "code", "direction": "asc"}], limit=50)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times, last


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--latency-ms", type=int, default=150)
    a = ap.parse_args()
    script, key = os.environ["API3_SCRIPT"], os.environ["API3_KEY"]
    cache = shotgun_api3.Shotgun(os.environ["API3_CACHE_URL"], script, key)
    site = shotgun_api3.Shotgun(os.environ["API3_SITE_URL"], script, key)

    # Warm up both (connections, the client's `info`), and check they agree.
    statuses = sorted({r["sg_status_list"] for r in cache.find("Shot", [], ["sg_status_list"]) if r["sg_status_list"]})
    a_cache = cache.find("Shot", [], FIELDS, order=[{"field_name": "code", "direction": "asc"}], limit=50)
    a_site = site.find("Shot", [], FIELDS, order=[{"field_name": "code", "direction": "asc"}], limit=50)
    if a_cache != a_site or len(a_cache) != 50:
        print("the cache and the site disagree on the benchmark query", file=sys.stderr)
        return 1

    cache_ms, _ = run(cache, a.rounds, statuses)
    site_ms, _ = run(site, a.rounds, statuses)
    c_med, c_p99 = statistics.median(cache_ms), percentile(cache_ms, 99)
    s_med, s_p99 = statistics.median(site_ms), percentile(site_ms, 99)
    print(f"shotgun_api3.find of 50 Shots, {a.rounds} rounds each, site latency {a.latency_ms} ms per request")
    print(f"  through the cache : median {c_med:8.2f} ms   p99 {c_p99:8.2f} ms")
    print(f"  direct to the site: median {s_med:8.2f} ms   p99 {s_p99:8.2f} ms")
    print(f"  speed-up          : median {s_med / c_med:6.1f}x   p99 {s_p99 / c_p99:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
