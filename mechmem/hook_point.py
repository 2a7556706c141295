"""The hook point: an identity module whose activation (and gradient) hooks can read or replace.

`HookPoint` and its `LensHandle` follow TransformerLens's `hook_points.py`; the root module that
names hook points and runs models with hooks is in `mechmem.hooks`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

HookFn = Callable[..., Any]

_DIRECTIONS = ("fwd", "bwd", "both")


def _check_direction(dir: str, allowed: tuple[str, ...]) -> None:
    # Directions are annotated as str, not Literal, so that a wrong one reaches this message.
    if dir not in allowed:
        *rest, last = (repr(d) for d in allowed)
        raise ValueError(f"Hook direction must be {', '.join(rest)} or {last}, got {dir!r}.")


@dataclass
class LensHandle:
    """One hook on a hook point: the torch handle and how the hook was added."""

    hook: RemovableHandle
    is_permanent: bool = False
    context_level: int | None = None
    user_hook: HookFn | None = None


def _grad_tuple(result: Any, hook: HookFn) -> tuple[Tensor] | None:
    """A backward hook's return value as torch's full backward hooks want it: None or (grad,)."""
    if result is None:
        return None
    if isinstance(result, Tensor):
        return (result,)
    if isinstance(result, tuple) and len(result) == 1 and isinstance(result[0], Tensor):
        return result
    what = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
    raise TypeError(
        f"A backward hook must return None, a tensor or a one-tuple (grad,); {hook!r} "
        f"returned {what}."
    )


class HookPoint(nn.Module):
    """An identity module whose forward (and backward) pass hook functions can read or rewrite.

    Example:
        >>> hp = HookPoint()
        >>> hp.add_hook(lambda x, hook: x * 2)
        >>> hp(torch.ones(2))
        tensor([2., 2.])
    """

    def __init__(self) -> None:
        super().__init__()
        self.fwd_hooks: list[LensHandle] = []
        self.bwd_hooks: list[LensHandle] = []
        self.ctx: dict[Any, Any] = {}
        self.name: str | None = None  # set by the root module's setup()

    def add_perma_hook(self, hook: HookFn, dir: str = "fwd") -> None:
        """Add a hook that `remove_hooks` keeps unless asked for `including_permanent`."""
        self.add_hook(hook, dir=dir, is_permanent=True)

    def add_hook(
        self,
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> LensHandle:
        """Attach ``hook(tensor, hook=self)``; returns its handle (as TransformerLens 4 does).

        Args:
            hook: called with the activation ("fwd") or its gradient ("bwd"); a returned tensor
                (or, backward, a one-tuple ``(grad,)``) replaces it, None leaves it.
            dir: "fwd" or "bwd".
            is_permanent: survive `remove_hooks` unless `including_permanent=True`.
            level: the `hooks()` context level the hook belongs to (None: no context).
            prepend: run before the hooks already here.
        """
        _check_direction(dir, ("fwd", "bwd"))
        if not callable(hook):
            raise TypeError(f"A hook function must be callable, got {type(hook).__name__}.")

        if dir == "fwd":

            def full_hook(module: nn.Module, args: Any, output: Tensor) -> Any:
                return hook(output, hook=self)

            handle = self.register_forward_hook(full_hook, prepend=prepend)
            handles = self.fwd_hooks
        else:

            def full_hook(module: nn.Module, grad_input: Any, grad_output: Any) -> Any:
                return _grad_tuple(hook(grad_output[0], hook=self), hook)

            # A full backward hook sees the gradient of the output after all forward hooks ran,
            # as in TransformerLens; torch ties it to each forward pass's graph.
            handle = self.register_full_backward_hook(full_hook, prepend=prepend)
            handles = self.bwd_hooks
        lens_handle = LensHandle(handle, is_permanent, level, user_hook=hook)
        if prepend:
            handles.insert(0, lens_handle)
        else:
            handles.append(lens_handle)
        return lens_handle

    def has_hooks(
        self, dir: str = "both", including_permanent: bool = True, level: int | None = None
    ) -> bool:
        """Whether any hook of direction `dir` (and of context `level`, if given) is attached."""
        _check_direction(dir, _DIRECTIONS)
        return any(
            (including_permanent or not h.is_permanent)
            and (level is None or h.context_level == level)
            for h in self._handles(dir)
        )

    def remove_hooks(
        self, dir: str = "fwd", including_permanent: bool = False, level: int | None = None
    ) -> None:
        """Remove hooks of direction `dir` ("fwd" by default, as in TransformerLens).

        The hooks of context `level` go (any level if None): the non-permanent ones, and with
        `including_permanent` the permanent ones too (TransformerLens 4's rule; 3.x removed
        permanent hooks of every level).
        """
        _check_direction(dir, _DIRECTIONS)

        def keep(handles: list[LensHandle]) -> list[LensHandle]:
            kept = []
            for h in handles:
                if (including_permanent or not h.is_permanent) and (
                    level is None or h.context_level == level
                ):
                    h.hook.remove()
                else:
                    kept.append(h)
            return kept

        if dir in ("fwd", "both"):
            self.fwd_hooks = keep(self.fwd_hooks)
        if dir in ("bwd", "both"):
            self.bwd_hooks = keep(self.bwd_hooks)

    def _handles(self, dir: str = "both") -> list[LensHandle]:
        """The handles of direction `dir`, forward before backward."""
        _check_direction(dir, _DIRECTIONS)
        return (self.fwd_hooks if dir != "bwd" else []) + (self.bwd_hooks if dir != "fwd" else [])

    def clear_context(self) -> None:
        """Replace `ctx`, the dict hooks may use to pass values between calls, by a new one."""
        self.ctx = {}

    def forward(self, x: Tensor) -> Tensor:
        return x

    def layer(self) -> int:
        """The layer index L of a hook point named ``blocks.{L}.…``."""
        if self.name is None:
            raise ValueError("This hook point has no name yet; the root module's setup() sets it.")
        parts = self.name.split(".")
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError(f"{self.name!r} is not in a layer: layer() needs 'blocks.{{L}}.…'.")
        return int(parts[1])

    def __repr__(self) -> str:
        bits = [f"name={self.name!r}"] if self.name is not None else []
        bits += [f"{len(hs)} {d}" for d, hs in (("fwd", self.fwd_hooks), ("bwd", self.bwd_hooks))
                 if hs]
        return f"HookPoint({', '.join(bits)})"
