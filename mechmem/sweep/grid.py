"""Axis values as people write them: a comma list (`0,5,15,20`) or `start:stop:count`."""

import math
from collections.abc import Callable
from typing import Any

# More values than any grid can train: a range this long is a typo, refused before it is built.
MAX_VALUES = 10_000


def linspace(start: float, stop: float, count: int) -> tuple[float, ...]:
    """`count` evenly spaced values from `start` to `stop` inclusive, rounded to 10 digits so
    that 0.1:0.9:17 gives 0.15, not 0.15000000000000002."""
    if count < 1:
        raise ValueError(f"A range needs at least one value, got count {count}.")
    if count > MAX_VALUES:
        raise ValueError(f"A range of {count} values is more than a sweep axis takes (at most "
                         f"{MAX_VALUES}).")
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise ValueError(f"A range needs finite ends, got {start} and {stop}.")
    if count == 1:
        return (float(start),)
    step = (stop - start) / (count - 1)
    return tuple(round(start + i * step, 10) for i in range(count))


def parse_values(text: str, convert: Callable[..., Any]) -> tuple[Any, ...]:
    """Parse one flag's text into axis values.

    Args:
        text: "v", "v1,v2,..." or "start:stop:count" (numbers only).
        convert: turns one item into a value (raises ValueError or ArgumentTypeError).

    Returns:
        The values, in order; a single value is a one-tuple.

    Example:
        >>> parse_values("0.1:0.9:5", float)
        (0.1, 0.3, 0.5, 0.7, 0.9)
    """
    text = text.strip()
    if text.count(":") == 2:
        a, b, n = text.split(":")
        try:
            start, stop, count = float(a), float(b), int(n)
        except (ValueError, OverflowError):
            raise ValueError(f"a range is start:stop:count with numbers, got {text!r}") from None
        # Whole numbers are written without a point, so that integer fields take a range too.
        return tuple(convert(str(int(v)) if v.is_integer() else repr(v))
                     for v in linspace(start, stop, count))
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise ValueError(f"empty item in the list {text!r}")
    return tuple(convert(t) for t in items)
