"""TransformerLens-style hook points: name activations, read them, and replace them.

A `HookPoint` is an identity module placed on an activation. A `HookedRootModule` names every
hook point by its dotted path in `setup()` and offers `run_with_hooks`, `run_with_cache`, the
`hooks()` context manager, `add_hook` and `reset_hooks`, with the semantics TransformerLens users
know. Hook functions have the signature ``fn(tensor, *, hook) -> Tensor | None``; a returned
tensor replaces the activation.
"""

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

HookFn = Callable[..., Tensor | None]
NameFilter = None | str | Sequence[str] | Callable[[str], bool]
Direction = Literal["fwd", "bwd"]


@dataclass(frozen=True)
class HookInfo:
    """One hook attached to a hook point, as listed by `HookedRootModule.list_hooks()`."""

    name: str
    direction: Direction
    fn: HookFn
    is_permanent: bool
    level: int | None


@dataclass
class _Entry:
    fn: HookFn
    handle: RemovableHandle
    direction: Direction
    is_permanent: bool
    level: int | None


class HookPoint(nn.Module):
    """An identity module whose forward pass can be read or rewritten by hook functions."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        self._entries: list[_Entry] = []

    def add_hook(
        self,
        fn: HookFn,
        dir: str = "fwd",
        *,
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> None:
        """Attach `fn(tensor, hook=self)`; in "bwd" it sees the gradient of the activation."""
        if dir not in ("fwd", "bwd"):
            raise ValueError(f"Hook direction must be 'fwd' or 'bwd', got {dir!r}.")
        if not callable(fn):
            raise TypeError(f"A hook function must be callable, got {type(fn).__name__}.")

        if dir == "fwd":

            def module_hook(module: nn.Module, args: Any, output: Tensor) -> Tensor | None:
                return fn(output, hook=self)

        else:

            def module_hook(module: nn.Module, args: Any, output: Tensor) -> None:
                if output.requires_grad:
                    # Attached per forward pass, so removing the module hook stops it for good.
                    output.register_hook(lambda grad: fn(grad, hook=self))

        handle = self.register_forward_hook(module_hook, prepend=prepend)
        entry = _Entry(fn, handle, dir, is_permanent, level)
        if prepend:
            self._entries.insert(0, entry)
        else:
            self._entries.append(entry)

    def remove_hooks(
        self,
        dir: Direction | Literal["both"] = "both",
        *,
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """Remove hooks of a direction; permanent ones only if asked, one context level if given."""
        keep = []
        for e in self._entries:
            hit = (dir == "both" or e.direction == dir)
            hit = hit and (including_permanent or not e.is_permanent)
            hit = hit and (level is None or e.level == level)
            if hit:
                e.handle.remove()
            else:
                keep.append(e)
        self._entries = keep

    @property
    def entries(self) -> tuple[HookInfo, ...]:
        return tuple(
            HookInfo(self.name or "", e.direction, e.fn, e.is_permanent, e.level)
            for e in self._entries
        )

    def forward(self, x: Tensor) -> Tensor:
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def _resolve_filter(names_filter: NameFilter) -> Callable[[str], bool]:
    if names_filter is None:
        return lambda name: True
    if isinstance(names_filter, str):
        return lambda name: name == names_filter
    if callable(names_filter):
        return names_filter
    if isinstance(names_filter, Sequence):
        wanted = frozenset(names_filter)
        return lambda name: name in wanted
    raise TypeError(
        "names_filter must be None, a hook name, a list of names or a predicate, "
        f"got {type(names_filter).__name__}."
    )


class HookedRootModule(nn.Module):
    """Base class of every hooked model; call `self.setup()` at the end of `__init__`."""

    hook_dict: dict[str, HookPoint]
    mod_dict: dict[str, nn.Module]

    def setup(self) -> None:
        """Name every submodule by its dotted path and index the hook points."""
        self.mod_dict = {}
        self.hook_dict = {}
        self._context_level = 0
        for name, module in self.named_modules():
            if name == "":
                continue
            self.mod_dict[name] = module
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    @property
    def hook_names(self) -> tuple[str, ...]:
        return tuple(self.hook_dict)

    def _hook_points(self, name_or_filter: str | Callable[[str], bool]) -> list[HookPoint]:
        if isinstance(name_or_filter, str):
            if name_or_filter not in self.hook_dict:
                raise KeyError(
                    f"No hook point named {name_or_filter!r}; "
                    f"this model has: {', '.join(self.hook_dict)}."
                )
            return [self.hook_dict[name_or_filter]]
        if callable(name_or_filter):
            return [hp for name, hp in self.hook_dict.items() if name_or_filter(name)]
        raise TypeError(
            "A hook target must be a hook name or a predicate on names, "
            f"got {type(name_or_filter).__name__}."
        )

    def add_hook(
        self,
        name: str | Callable[[str], bool],
        hook: HookFn,
        dir: str = "fwd",
        *,
        is_permanent: bool = False,
        prepend: bool = False,
        level: int | None = None,
    ) -> None:
        """Attach `hook` to the named hook point, or to every hook point the predicate accepts."""
        for hp in self._hook_points(name):
            hp.add_hook(hook, dir, is_permanent=is_permanent, level=level, prepend=prepend)

    def reset_hooks(
        self, *, including_permanent: bool = False, direction: Direction | Literal["both"] = "both"
    ) -> None:
        """Remove every temporary hook (and the permanent ones too, if asked)."""
        for hp in self.hook_dict.values():
            hp.remove_hooks(direction, including_permanent=including_permanent)

    def list_hooks(self) -> list[HookInfo]:
        """Every hook now attached, in hook-point order."""
        return [info for hp in self.hook_dict.values() for info in hp.entries]

    @contextlib.contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
        bwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
        *,
        reset_hooks_end: bool = True,
    ) -> Iterator["HookedRootModule"]:
        """Attach hooks for the body of a `with` block; exactly these are removed on exit.

        Example:
            >>> with model.hooks([("hook_post", lambda x, hook: x * 0)]):
            ...     logits = model(pairs)
        """
        self._context_level += 1
        level = self._context_level
        try:
            for name, fn in fwd_hooks:
                self.add_hook(name, fn, "fwd", level=level)
            for name, fn in bwd_hooks:
                self.add_hook(name, fn, "bwd", level=level)
            yield self
        finally:
            if reset_hooks_end:
                for hp in self.hook_dict.values():
                    hp.remove_hooks("both", including_permanent=False, level=level)
            self._context_level -= 1

    def run_with_hooks(
        self,
        *args: Any,
        fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
        bwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
        reset_hooks_end: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Run the forward pass with temporary hooks.

        With `bwd_hooks` and `reset_hooks_end=True` the backward hooks are gone before a later
        `.backward()` could fire them; pass `reset_hooks_end=False` (and call `reset_hooks()`
        afterwards) to keep them, as in TransformerLens.
        """
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end=reset_hooks_end):
            return self(*args, **kwargs)

    def run_with_cache(
        self, *args: Any, names_filter: NameFilter = None, **kwargs: Any
    ) -> tuple[Any, dict[str, Tensor]]:
        """Run the forward pass and return `(output, cache)`, the cache mapping hook names to
        detached copies of their activations."""
        accept = _resolve_filter(names_filter)
        cache: dict[str, Tensor] = {}

        def save(t: Tensor, *, hook: HookPoint) -> None:
            assert hook.name is not None
            cache[hook.name] = t.detach().clone()

        names = [name for name in self.hook_dict if accept(name)]
        with self.hooks([(name, save) for name in names]):
            out = self(*args, **kwargs)
        return out, cache


def hook_names_with_shapes(model: HookedRootModule, x: Tensor) -> dict[str, tuple[int, ...]]:
    """The shape each hook point sees for input `x` (useful for docs and exploration)."""
    with torch.no_grad():
        _, cache = model.run_with_cache(x)
    return {name: tuple(t.shape) for name, t in cache.items()}
