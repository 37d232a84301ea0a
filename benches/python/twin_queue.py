"""Twin of group `queue`: Queue and SimpleQueue throughput (64 B, 64 KiB) and ping-pong."""

import multiprocessing as mp

from twin_common import emit, pick, sample


def producer(q, control, size):
    msg = b"\xab" * size
    while True:
        n = control.recv()
        if n is None:
            return
        for _ in range(n):
            q.put(msg)


def echo(inbox, outbox):
    while True:
        v = inbox.get()
        if v is None:
            return
        outbox.put(v)


def main():
    ctx = mp.get_context("fork")
    for kind in ("Queue", "SimpleQueue"):
        for size, case, n in ((64, "64 B", pick(10_000, 40_000)), (65536, "64 KiB", pick(500, 2000))):
            q = getattr(ctx, kind)()
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=producer, args=(q, theirs, size))
            p.start()

            def receive():
                mine.send(n)
                for _ in range(n):
                    q.get()

            receive()
            emit("queue", case, kind, sample(receive, pick(3, 10), ops=n))
            mine.send(None)
            p.join()

        inbox, outbox = getattr(ctx, kind)(), getattr(ctx, kind)()
        p = ctx.Process(target=echo, args=(inbox, outbox))
        p.start()
        batch = pick(300, 1000)

        def trips():
            for _ in range(batch):
                inbox.put(7)
                assert outbox.get() == 7

        trips()
        emit("queue", "ping-pong", kind, sample(trips, pick(3, 10), ops=batch))
        inbox.put(None)
        p.join()


if __name__ == "__main__":
    main()
