"""The field types of a frozen config, checked against its annotations when it is built.

A wrong type is a TypeError naming the field and what it takes; a float field holding NaN or an
infinity is a ValueError. The configs call `check_fields` first in `__post_init__`, so that their
own range checks compare values of the right type. Rules: `int` takes integers but not bools,
`float` takes floats and integers (never rewritten, so stored configs keep their spelling),
`Literal[...]` takes values of the literals' type (the config's own check names the choices),
`tuple[X, Y]` and `tuple[X, ...]` take tuples of those, any other class takes its instances.
"""

import dataclasses
import functools
import math
import types
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


def check_fields(obj: Any, *, skip: tuple[str, ...] = ()) -> None:
    """Check every field of the dataclass instance `obj` against its annotation.

    Raises:
        TypeError: a field holds a value of another type (the message names the field).
        ValueError: a float field holds NaN or an infinity.
    """
    for name, kind, matches in _checkers(type(obj)):
        if name in skip:
            continue
        value = getattr(obj, name)
        if not matches(value):
            raise TypeError(f"`{name}` must be {describe(kind)}, got {type(value).__name__} "
                            f"{value!r:.60}.")
        if not _finite(value):
            raise ValueError(f"`{name}` must be finite, got {value!r}.")


@functools.cache
def _checkers(cls: type) -> tuple[tuple[str, Any, Callable[[Any], bool]], ...]:
    """(field, annotation, test) for each field of `cls`, read once per class."""
    hints = get_type_hints(cls)
    return tuple((f.name, hints[f.name], _matcher(hints[f.name]))
                 for f in dataclasses.fields(cls))


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, tuple):
        return all(_finite(v) for v in value)
    return True


def _matcher(kind: Any) -> Callable[[Any], bool]:
    """A test of whether a value is of the annotation `kind` (see the module docstring)."""
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return lambda v: True
    if origin in (Union, types.UnionType):
        tests = [_matcher(a) for a in args]
        return lambda v: any(t(v) for t in tests)
    if origin is Literal:
        kinds = tuple({type(a) for a in args})
        return lambda v: type(v) in kinds
    if kind is type(None) or kind is None:
        return lambda v: v is None
    if kind is bool:
        return lambda v: isinstance(v, bool)
    if kind is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if kind is float:
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            each = _matcher(args[0])
            return lambda v: isinstance(v, tuple) and all(each(x) for x in v)
        tests = [_matcher(a) for a in args]
        return lambda v: isinstance(v, tuple) and len(v) == len(tests) and all(
            t(x) for t, x in zip(tests, v, strict=True))
    if isinstance(kind, type):
        return lambda v: isinstance(v, kind)
    return lambda v: True  # a form not read here is left to the config's own checks


def describe(kind: Any) -> str:
    """What a value of the annotation `kind` is, in words ("an integer or None")."""
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_plural(args[0])}"
        return f"a tuple of {len(args)} {_plural(args[0])}" if len(set(args)) == 1 else (
            f"a tuple ({', '.join(describe(a) for a in args)})")
    names = {int: "an integer", float: "a number", bool: "True or False", str: "a string",
             type(None): "None"}
    if kind in names:
        return names[kind]
    return f"a {getattr(kind, '__name__', str(kind))}"


def _plural(kind: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "bools"}.get(
        kind, describe(kind))
