"""Shared helpers of the Python twins: the run length and the JSON lines the harness reads.

Each twin prints one JSON object per line on standard output:
{"group": ..., "case": ..., "name": "python ...", "median_ns": ..., "spread_ns": ...,
 "samples": ..., "note": ...}
where median_ns is the median time of one operation (as the Rust entry of the same group and
case measures it), spread_ns the median absolute deviation of the samples, and note says how the
figure was obtained when it was scaled from a smaller run. Progress goes to standard error.
"""

import json
import os
import statistics
import sys
import time


def quick():
    """True for a `--quick` pass (argument or MULTIPROC_BENCH_QUICK in the environment)."""
    if "--quick" in sys.argv:
        return True
    v = os.environ.get("MULTIPROC_BENCH_QUICK", "")
    return v not in ("", "0")


def pick(quick_value, full_value):
    return quick_value if quick() else full_value


def sample(fn, reps, ops=1, scale=1.0):
    """Runs fn() `reps` times; returns the time of one operation of each run, in ns.

    fn runs `ops` operations per call; `scale` multiplies each per-operation time (a figure
    measured on fewer items, scaled to the item count of the Rust entry).
    """
    out = []
    for _ in range(reps):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / ops * scale)
    return out


def emit(group, case, name, samples, note=None):
    med = statistics.median(samples)
    mad = statistics.median([abs(s - med) for s in samples])
    rec = {
        "group": group,
        "case": case,
        "name": "python " + name,
        "median_ns": med,
        "spread_ns": mad,
        "samples": len(samples),
    }
    if note:
        rec["note"] = note
    print(json.dumps(rec), flush=True)
    print(f"  {group} / {case} / python {name}: {med / 1e3:.1f} us", file=sys.stderr, flush=True)
