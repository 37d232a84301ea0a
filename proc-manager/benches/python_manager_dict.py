"""Python's twin of proc-manager's `round_trip/proxy_dict_insert_get` benchmark (stdlib only).

Times `d[k] = v; d[k]` on a `multiprocessing.Manager().dict()` proxy (two round trips to the
manager process, as the Rust benchmark's `insert` + `get`) and prints the time of one
insert+get pair: a human line on standard error and a JSON line on standard output
({"group", "case", "name", "median_ns", "samples"}). `--quick` runs fewer samples.
"""

import json
import multiprocessing as mp
import statistics
import sys
import time


def main():
    quick = "--quick" in sys.argv
    reps = 5 if quick else 15
    batch = 2000
    with mp.Manager() as manager:
        d = manager.dict()
        for k in range(200):  # warm up
            d[k] = k
            d[k]
        samples = []
        for _ in range(reps):
            t = time.perf_counter_ns()
            for i in range(batch):
                k = i % 1024
                d[k] = k
                d[k]
            samples.append((time.perf_counter_ns() - t) / batch)
    median = statistics.median(samples)
    print(f"python Manager().dict() insert+get: {median / 1000:.1f} us per pair "
          f"(median of {reps} runs of {batch})", file=sys.stderr)
    print(json.dumps({
        "group": "round_trip",
        "case": "dict insert+get",
        "name": "python Manager().dict()",
        "median_ns": median,
        "samples": reps,
    }))


if __name__ == "__main__":
    main()
