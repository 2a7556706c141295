"""Signals as a flag checked between steps, so that state is never left half-updated."""

import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


@contextmanager
def signals_as_flag(signals: Sequence[int]) -> Iterator[list[bool]]:
    """For the block, each of `signals` sets `flag[0]`; a second one stops at once
    (KeyboardInterrupt). Off the main thread, where handlers cannot be set, the flag stays
    False. The previous handlers are restored after the block."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag[0]:  # a second signal: stop now
            raise KeyboardInterrupt
        flag[0] = True

    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
