"""Subpackages that can be called: `mechmem.train(config)` trains, `mechmem.train.preset` is there.

`mechmem.train` and `mechmem.sweep` are each a subpackage and the headline function of that
subpackage. Rather than let the function hide the subpackage (so that `mechmem.train.preset`
failed) or rename either, the subpackage's module object is made callable: its class becomes a
`types.ModuleType` subclass whose `__call__` delegates to the function. The module stays a real
module (in `sys.modules`, picklable by name, `isinstance(m, types.ModuleType)`).
"""

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Make the module `module_name` callable as `function` (done once, in its `__init__`)."""

    class CallableModule(types.ModuleType):
        __call__ = staticmethod(function)

    CallableModule.__name__ = CallableModule.__qualname__ = f"callable module {module_name}"
    sys.modules[module_name].__class__ = CallableModule
