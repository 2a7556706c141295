"""How many CPU threads torch uses for mechmem's commands: one, unless asked for more.

Measured by benchmarks/bench_threads.py: on a 2-core machine whose cores are busy with another
process, torch's default (one thread per core) made training 10-14x slower than one thread,
because its threads wait on each other at every operation while the other process holds a core;
on an idle machine a second thread can at best halve a step (small models gain nothing: their
steps are overheads, not arithmetic). The loss is large and the gain bounded, and the load of a
shared machine changes while a run goes on (a load average read at the start does not hold for
its minutes), so the commands use one thread unless `--threads N` (or MECHMEM_THREADS) asks for
more. This is set once, by the command line; from Python, torch's own setting is the user's.
"""

import os

import torch

ENV = "MECHMEM_THREADS"


def default_threads() -> int:
    """The thread count the commands use when not told: MECHMEM_THREADS if set, else 1."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{ENV} must be a positive integer, got {text!r}.")
    return int(text)


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count to `threads` (None: `default_threads()`); returns it."""
    n = default_threads() if threads is None else threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"The thread count must be a positive integer, got {n!r}.")
    torch.set_num_threads(n)
    return n
