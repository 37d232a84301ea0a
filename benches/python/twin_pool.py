"""Twin of group `pool`: Pool(2) map, imap, imap_unordered, apply_async, CPU-bound speed-up."""

import multiprocessing as mp

from twin_common import emit, pick, sample

N = 100_000


def inc(x):
    return x + 1


def sum_to(n):
    s = 0
    for i in range(n):
        s += i
    return s


def main():
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.map(inc, range(1000))  # warm-up

        def full_map():
            r = pool.map(inc, range(N))
            assert len(r) == N and r[-1] == N

        emit("pool", "map 100k default", "Pool", sample(full_map, pick(3, 10)))

        # Chunksize 1 runs at tens of thousands of items per second: measured on m items and
        # scaled to 100,000.
        m = pick(5_000, 20_000)
        note = f"{m:,} items, scaled x{N // m}"

        def map1():
            assert len(pool.map(inc, range(m), chunksize=1)) == m

        emit("pool", "map 100k chunksize 1", "Pool", sample(map1, pick(3, 5), scale=N / m), note)

        # imap and imap_unordered (chunksize 1) over 10,000 items, as the Rust entries.
        k = 10_000

        def imap():
            assert sum(1 for _ in pool.imap(inc, range(k))) == k

        emit("pool", "imap 10k", "Pool", sample(imap, pick(2, 5)))

        def imap_unordered():
            assert sum(1 for _ in pool.imap_unordered(inc, range(k))) == k

        emit("pool", "imap_unordered 10k", "Pool", sample(imap_unordered, pick(2, 5)))

        batch = pick(100, 300)

        def apply():
            for _ in range(batch):
                assert pool.apply_async(inc, (7,)).get() == 8

        emit("pool", "apply_async round trip", "Pool", sample(apply, pick(3, 10), ops=batch))

        # CPU-bound: Python's loop is ~50x slower than Rust's, so a smaller job of its own (the
        # report compares the speed-ups, not the times).
        tasks, each = 8, pick(200_000, 500_000)
        want = sum_to(each)

        def one():
            assert all(sum_to(each) == want for _ in range(tasks))

        def two():
            assert all(s == want for s in pool.map(sum_to, [each] * tasks))

        case = f"cpu-bound python {tasks} tasks"
        emit("pool", case, "one process", sample(one, pick(3, 5)))
        emit("pool", case, "Pool", sample(two, pick(3, 5)))


if __name__ == "__main__":
    main()
