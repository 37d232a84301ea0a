"""Twin of group `lock`: Value.get_lock() uncontended; 2 processes x 1,000,000 increments."""

import multiprocessing as mp

from twin_common import emit, pick, sample

PER_PROCESS = 1_000_000


def increment(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def main():
    ctx = mp.get_context("fork")
    v = ctx.Value("q", 0)
    lock = v.get_lock()
    batch = 100_000

    def uncontended():
        for _ in range(batch):
            lock.acquire()
            lock.release()

    emit("lock", "uncontended", "Value.get_lock()", sample(uncontended, pick(5, 15), ops=batch))

    # The seed program, scaled: n increments per process instead of 1,000,000.
    n = pick(50_000, 200_000)

    def contended():
        w = ctx.Value("q", 0)
        p = ctx.Process(target=increment, args=(w, n))
        p.start()
        increment(w, n)
        p.join()
        assert w.value == 2 * n, w.value

    s = sample(contended, pick(3, 5), scale=PER_PROCESS / n)
    emit("lock", "2x1M increments", "Value", s, note=f"2 x {n:,} increments, scaled x{PER_PROCESS // n}")


if __name__ == "__main__":
    main()
