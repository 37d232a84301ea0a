"""Twin of group `array`: Array('d', 1,000,000) filled by a child, summed by the parent."""

import multiprocessing as mp

from twin_common import emit, pick, sample

LEN = 1_000_000


def fill(a):
    with a.get_lock():
        raw = a.get_obj()
        for i in range(LEN):
            raw[i] = i * 0.5


def main():
    ctx = mp.get_context("fork")
    want = sum(i * 0.5 for i in range(LEN))

    def run():
        a = ctx.Array("d", LEN)
        p = ctx.Process(target=fill, args=(a,))
        p.start()
        p.join()
        assert p.exitcode == 0
        with a.get_lock():
            s = sum(a.get_obj())
        assert s == want, s

    emit("array", "1M f64 fill+sum", "Array", sample(run, pick(3, 7)))


if __name__ == "__main__":
    main()
