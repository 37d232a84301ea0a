"""Twin of group `pipe`: Pipe() round trip of a small int to an echo child."""

import multiprocessing as mp

from twin_common import emit, pick, sample


def echo(conn):
    while True:
        try:
            v = conn.recv()
        except EOFError:
            return
        if v is None:
            return
        conn.send(v)


def main():
    ctx = mp.get_context("fork")
    mine, theirs = ctx.Pipe()
    p = ctx.Process(target=echo, args=(theirs,))
    p.start()
    theirs.close()
    batch = 2000

    def trips():
        for _ in range(batch):
            mine.send(7)
            assert mine.recv() == 7

    trips()
    emit("pipe", "8 B", "Connection", sample(trips, pick(5, 20), ops=batch))
    mine.send(None)
    p.join()


if __name__ == "__main__":
    main()
