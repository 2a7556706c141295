"""TransformerLens's hook API: name activations, read them, and replace them.

A `HookPoint` is an identity module placed on an activation. A `HookedRootModule` names every
submodule by its dotted path in `setup()` and offers `run_with_hooks`, `run_with_cache`, the
`hooks()` context manager, `add_hook`, `reset_hooks` and `list_hooks`, with TransformerLens's
names, defaults and semantics (docs/hooks.md lists the few deliberate differences). Hook
functions have the signature ``fn(tensor, *, hook) -> Tensor | None``; a returned tensor replaces
the activation (in a backward hook: the gradient).
"""

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence, ValuesView
from typing import Any

import torch
from torch import Tensor, nn

from .cache import ActivationCache, Slice
from .hook_point import _DIRECTIONS, HookFn, _check_direction
from .hook_point import HookPoint as HookPoint
from .hook_point import LensHandle as LensHandle

HookTarget = str | Callable[[str], bool]
NamesFilter = None | str | Sequence[str] | Callable[[str], bool]


def _names_filter_fn(names_filter: NamesFilter) -> Callable[[str], bool]:
    """TransformerLens's names_filter: None, a name, a list of names, or a predicate on names."""
    if names_filter is None:
        return lambda name: True
    if isinstance(names_filter, str):
        return lambda name: name == names_filter
    if isinstance(names_filter, list):
        return lambda name: name in names_filter
    if callable(names_filter):
        return names_filter
    raise ValueError(
        "names_filter must be a string, list of strings, or function, "
        f"got {type(names_filter).__name__}: {names_filter!r}."
    )


class HookedRootModule(nn.Module):
    """Base class of every hooked model; call `self.setup()` at the end of `__init__`.

    Example:
        >>> logits = model.run_with_hooks(pairs, fwd_hooks=[("hook_post", lambda x, hook: 0 * x)])
        >>> logits, cache = model.run_with_cache(pairs, names_filter="hook_post")
    """

    name: str | None
    mod_dict: dict[str, nn.Module]
    hook_dict: dict[str, HookPoint]

    def __init__(self, *args: Any) -> None:
        super().__init__()
        self.is_caching = False
        self.context_level = 0
        self.mod_dict = {}
        self.hook_dict = {}

    def setup(self) -> None:
        """Name every submodule by its dotted path (``module.name``) and index the hook points."""
        self.mod_dict = {}
        self.hook_dict = {}
        for name, module in self.named_modules():
            if name == "":
                continue
            module.name = name
            self.mod_dict[name] = module
            if isinstance(module, HookPoint):
                self.hook_dict[name] = module

    @property
    def hook_names(self) -> tuple[str, ...]:
        return tuple(self.hook_dict)

    def hook_points(self) -> ValuesView[HookPoint]:
        """Every hook point, in `hook_dict` order."""
        return self.hook_dict.values()

    def remove_all_hook_fns(
        self, direction: str = "both", including_permanent: bool = False, level: int | None = None
    ) -> None:
        """`HookPoint.remove_hooks` on every hook point."""
        for hp in self.hook_points():
            hp.remove_hooks(direction, including_permanent=including_permanent, level=level)

    def clear_contexts(self) -> None:
        """`HookPoint.clear_context` on every hook point."""
        for hp in self.hook_points():
            hp.clear_context()

    def reset_hooks(
        self,
        clear_contexts: bool = True,
        direction: str = "both",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """Remove hooks (temporary ones unless `including_permanent`) and, by default, contexts."""
        if clear_contexts:
            self.clear_contexts()
        self.remove_all_hook_fns(direction, including_permanent, level=level)
        self.is_caching = False

    def check_hooks_to_add(
        self,
        hook_point: HookPoint,
        hook_point_name: str,
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        prepend: bool = False,
    ) -> None:
        """Override to refuse hooks (by raising); called for every hook a user adds through the
        root (`add_hook`, `hooks()`, `run_with_hooks`), not for the caching hooks of
        `run_with_cache` and `add_caching_hooks`, which only read."""

    def check_and_add_hook(
        self,
        hook_point: HookPoint,
        hook_point_name: str,
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> None:
        """Run `check_hooks_to_add`, then attach the hook."""
        self.check_hooks_to_add(
            hook_point, hook_point_name, hook, dir=dir, is_permanent=is_permanent, prepend=prepend
        )
        hook_point.add_hook(hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend)

    def _attach(self, name: HookTarget, hook: HookFn, dir: str, level: int | None,
                check: bool) -> None:
        """`add_hook`, or for caching hooks (`check=False`) the same without the model's check:
        a model refusing hooks it does not compute still caches every activation it has."""
        for hp_name, hp in self._targets(name):
            if check:
                self.check_and_add_hook(hp, hp_name, hook, dir, False, level)
            else:
                hp.add_hook(hook, dir=dir, level=level)

    def _targets(self, name: HookTarget) -> list[tuple[str, HookPoint]]:
        if isinstance(name, str):
            if name not in self.hook_dict:
                what = (f"{name!r} is a {type(self.mod_dict[name]).__name__}, not a hook point"
                        if name in self.mod_dict else f"No hook point named {name!r}")
                raise KeyError(f"{what}; this model has: {', '.join(self.hook_dict)}.")
            return [(name, self.hook_dict[name])]
        if callable(name):
            return [(n, hp) for n, hp in self.hook_dict.items() if name(n)]
        raise TypeError(
            f"A hook target must be a hook name or a predicate on names, got {type(name).__name__}."
        )

    def add_hook(
        self,
        name: HookTarget,
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> None:
        """Attach `hook` to the named hook point, or to every hook point the predicate accepts."""
        for hp_name, hp in self._targets(name):
            self.check_and_add_hook(hp, hp_name, hook, dir, is_permanent, level, prepend)

    def add_perma_hook(self, name: HookTarget, hook: HookFn, dir: str = "fwd") -> None:
        """`add_hook(..., is_permanent=True)`: kept by `reset_hooks()` and by `hooks()` exits."""
        self.add_hook(name, hook, dir=dir, is_permanent=True)

    @contextlib.contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[tuple[HookTarget, HookFn]] = (),
        bwd_hooks: Sequence[tuple[HookTarget, HookFn]] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator["HookedRootModule"]:
        """Attach hooks for the body of a `with` block; exactly these are removed on exit.

        Args:
            fwd_hooks: (name or predicate on names, hook) pairs for the forward pass.
            bwd_hooks: the same for the backward pass.
            reset_hooks_end: remove this block's hooks on exit (also on an exception).
            clear_contexts: also clear every hook point's `ctx` on exit.

        Example:
            >>> with model.hooks([("hook_post", lambda x, hook: x * 0)]):
            ...     logits = model(pairs)
        """
        with self._hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts, check=True):
            yield self

    @contextlib.contextmanager
    def _hooks(
        self,
        fwd_hooks: Sequence[tuple[HookTarget, HookFn]],
        bwd_hooks: Sequence[tuple[HookTarget, HookFn]],
        reset_hooks_end: bool,
        clear_contexts: bool,
        *,
        check: bool,
    ) -> Iterator[None]:
        try:
            self.context_level += 1
            for name, hook in fwd_hooks:
                self._attach(name, hook, "fwd", self.context_level, check)
            for name, hook in bwd_hooks:
                self._attach(name, hook, "bwd", self.context_level, check)
            yield
        finally:
            if reset_hooks_end:
                level = self.context_level
                self.reset_hooks(clear_contexts, including_permanent=False, level=level)
            self.context_level -= 1

    def run_with_hooks(
        self,
        *model_args: Any,
        fwd_hooks: Sequence[tuple[HookTarget, HookFn]] = (),
        bwd_hooks: Sequence[tuple[HookTarget, HookFn]] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **model_kwargs: Any,
    ) -> Any:
        """The forward pass with temporary hooks (see `hooks()`).

        Backward hooks stay tied to this pass's graph: a later ``.backward()`` through the output
        runs them once even after `reset_hooks_end` removed them from the model.

        Example:
            >>> ablated = model.run_with_hooks(pairs, fwd_hooks=[("hook_normed", zero)])
        """
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts):
            return self(*model_args, **model_kwargs)

    def _save_hook(
        self,
        cache: dict[str, Tensor],
        device: str | torch.device | None,
        remove_batch_dim: bool,
        pos_slice: Slice,
        is_backward: bool,
    ) -> HookFn:
        def save(tensor: Tensor, *, hook: HookPoint) -> None:
            assert hook.name is not None
            name = hook.name + ("_grad" if is_backward else "")
            act = tensor.detach()
            if remove_batch_dim:
                if act.size(0) != 1:
                    raise ValueError(
                        f"remove_batch_dim=True needs a batch of one; {name} has shape "
                        f"{tuple(act.shape)}."
                    )
                act = act[0]
            # TransformerLens's layout: position is dim -3 for per-head vectors, else dim -2.
            per_head = hook.name.endswith(("hook_q", "hook_k", "hook_v", "hook_z", "hook_result"))
            pos_dim = -3 if per_head else -2
            if pos_slice.mode != "identity" and act.dim() >= -pos_dim:
                act = pos_slice.apply(act, dim=pos_dim)
            # A copy, so later in-place edits of the activation cannot change the cache.
            cache[name] = act.clone() if device is None else act.to(device, copy=True)

        return save

    def get_caching_hooks(
        self,
        names_filter: NamesFilter = None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        cache: dict[str, Tensor] | None = None,
        pos_slice: Any = None,
    ) -> tuple[dict[str, Tensor], list[tuple[str, HookFn]], list[tuple[str, HookFn]]]:
        """Hooks that store activations (and, with `incl_bwd`, gradients as ``name + "_grad"``)
        in `cache`; returns ``(cache, fwd_hooks, bwd_hooks)`` without attaching them."""
        accept = _names_filter_fn(names_filter)
        cache = {} if cache is None else cache
        sl = Slice.unwrap(pos_slice)
        self.is_caching = True
        names = [name for name in self.hook_dict if accept(name)]
        fwd = [(n, self._save_hook(cache, device, remove_batch_dim, sl, False)) for n in names]
        bwd = [(n, self._save_hook(cache, device, remove_batch_dim, sl, True)) for n in names]
        return cache, fwd, bwd if incl_bwd else []

    def add_caching_hooks(
        self,
        names_filter: NamesFilter = None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        cache: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Attach caching hooks (removed by `reset_hooks()`); returns the dict they fill."""
        cache, fwd, bwd = self.get_caching_hooks(
            names_filter, incl_bwd, device, remove_batch_dim, cache
        )
        for name, hook in fwd:
            self._attach(name, hook, "fwd", None, check=False)
        for name, hook in bwd:
            self._attach(name, hook, "bwd", None, check=False)
        return cache

    def run_with_cache(
        self,
        *model_args: Any,
        names_filter: NamesFilter = None,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        pos_slice: Any = None,
        return_cache_object: bool = True,
        **model_kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """Run the forward pass and return ``(output, cache)``.

        Args:
            names_filter: None (all), a hook name, a list of names, or a predicate on names.
            device: where to store the activations (default: where they are).
            remove_batch_dim: drop the batch axis (the batch must be of one).
            incl_bwd: also call ``output.backward()`` (the output must be a scalar) and cache
                gradients as ``name + "_grad"``.
            reset_hooks_end: remove the caching hooks afterwards.
            clear_contexts: clear hook contexts when the hooks are removed.
            pos_slice: a `Slice` of the position axis (TransformerLens's layout, for sequences).
            return_cache_object: accepted for TransformerLens code; the cache is an
                `ActivationCache`, which is a dict, either way.

        Example:
            >>> logits, cache = model.run_with_cache(pairs, names_filter="hook_post")
            >>> cache["hook_post"].shape
            torch.Size([2, 500])
        """
        cache = ActivationCache({}, self, has_batch_dim=not remove_batch_dim)
        _, fwd, bwd = self.get_caching_hooks(
            names_filter, incl_bwd, device, remove_batch_dim, cache, pos_slice
        )
        with self._hooks(fwd, bwd, reset_hooks_end, clear_contexts, check=False):
            out = self(*model_args, **model_kwargs)
            if incl_bwd:
                if not isinstance(out, Tensor) or out.numel() != 1:
                    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                    raise ValueError(
                        "incl_bwd=True calls .backward() on the output, which must be a scalar "
                        f"(a loss); got {shape}."
                    )
                out.backward()
        return out, cache

    def cache_all(
        self,
        cache: dict[str, Tensor] | None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
    ) -> dict[str, Tensor]:
        """Deprecated (as in TransformerLens): `add_caching_hooks()` for every hook point."""
        warnings.warn("cache_all is deprecated; use add_caching_hooks or run_with_cache.",
                      DeprecationWarning, stacklevel=2)
        return self.add_caching_hooks(None, incl_bwd, device, remove_batch_dim, cache)

    def cache_some(
        self,
        cache: dict[str, Tensor] | None,
        names: Callable[[str], bool],
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
    ) -> dict[str, Tensor]:
        """Deprecated (as in TransformerLens): `add_caching_hooks(names, ...)`."""
        warnings.warn("cache_some is deprecated; use add_caching_hooks or run_with_cache.",
                      DeprecationWarning, stacklevel=2)
        return self.add_caching_hooks(names, incl_bwd, device, remove_batch_dim, cache)

    def list_hooks(
        self, name_filter: Any = None, dir: str = "both", including_permanent: bool = True
    ) -> dict[str, list[LensHandle]]:
        """Attached hooks by hook name, forward before backward; hook points without any are left
        out. `name_filter`: None, a name, names, or a predicate on names."""
        _check_direction(dir, _DIRECTIONS)
        if name_filter is None or isinstance(name_filter, str) or callable(name_filter):
            accept = _names_filter_fn(name_filter)
        else:
            wanted = set(name_filter)
            accept = lambda name: name in wanted
        out: dict[str, list[LensHandle]] = {}
        for name, hp in self.hook_dict.items():
            if not accept(name):
                continue
            handles = [h for h in hp._handles(dir) if including_permanent or not h.is_permanent]
            if handles:
                out[name] = handles
        return out


def hook_names_with_shapes(model: HookedRootModule, x: Tensor) -> dict[str, tuple[int, ...]]:
    """The shape each hook point sees for input `x` (useful for docs and exploration)."""
    with torch.no_grad():
        _, cache = model.run_with_cache(x)
    return {name: tuple(t.shape) for name, t in cache.items()}
