"""Twin of group `start`: Process start + join of a child that does nothing, per start method."""

import multiprocessing as mp

from twin_common import emit, pick, sample


def noop():
    pass


def start_join(ctx):
    p = ctx.Process(target=noop)
    p.start()
    p.join()
    assert p.exitcode == 0


def main():
    reps = {"fork": pick(20, 100), "forkserver": pick(10, 40), "spawn": pick(5, 20)}
    for method in ("fork", "spawn", "forkserver"):
        ctx = mp.get_context(method)
        start_join(ctx)  # warm-up (starts the fork server)
        s = sample(lambda: start_join(ctx), reps[method])
        emit("start", "noop child", method, s)


if __name__ == "__main__":
    main()
