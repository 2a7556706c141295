"""The activation cache returned by `run_with_cache`: a dict of hook name -> tensor, with
TransformerLens's `ActivationCache` methods, its `get_act_name` shorthand and its `Slice`."""

import re
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

SliceInput = (
    None | int | tuple[int] | tuple[int, int] | tuple[int, int, int] | list[int] | Tensor
    | np.ndarray
)

_ATTN_NAMES = ("k", "v", "q", "z", "rot_k", "rot_q", "result", "pattern", "attn_scores")
_MLP_NAMES = ("pre", "post", "mid", "pre_linear")
_LAYER_TYPE_ALIASES = {
    "a": "attn", "m": "mlp", "b": "", "block": "", "blocks": "", "attention": "attn",
}
_ACT_NAME_ALIASES = {
    "attn": "pattern", "attn_logits": "attn_scores", "key": "k", "query": "q", "value": "v",
    "mlp_pre": "pre", "mlp_mid": "mid", "mlp_post": "post",
}
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def get_act_name(name: str, layer: int | str | None = None, layer_type: str | None = None) -> str:
    """The full hook name for a TransformerLens shorthand, with TransformerLens's exact mapping.

    A name that already contains a dot or starts with ``hook_`` is returned as is (when no layer
    or layer type is given). Otherwise the first run of digits in `name` is the layer and what
    follows it the layer type; attention names go under ``attn.``, MLP names under ``mlp.``.

    Args:
        name: the shorthand, e.g. "post", "k6", "scale4ln1", or a full hook name.
        layer: the block index, for activations inside ``blocks.{layer}``.
        layer_type: the sub-module, e.g. "ln1" or "a" (attn) / "m" (mlp).

    Returns:
        The hook name, e.g. "blocks.0.mlp.hook_post".

    Example:
        >>> get_act_name("post", 0), get_act_name("k6"), get_act_name("embed")
        ('blocks.0.mlp.hook_post', 'blocks.6.attn.hook_k', 'hook_embed')
    """
    if ("." in name or name.startswith("hook_")) and layer is None and layer_type is None:
        return name
    match = re.match(r"([a-z]+)(\d+)([a-z]?.*)", name)
    if match is not None:
        name, layer, layer_type = match.groups()
    name = _ACT_NAME_ALIASES.get(name, name)
    if name in _ATTN_NAMES:
        layer_type = "attn"
    elif name in _MLP_NAMES:
        layer_type = "mlp"
    elif layer_type in _LAYER_TYPE_ALIASES:
        layer_type = _LAYER_TYPE_ALIASES[layer_type]
    full = f"blocks.{layer}." if layer is not None else ""
    full += f"{layer_type}." if layer_type else ""
    full += f"hook_{name}"
    if name in ("scale", "normalized") and layer is None:
        full = f"ln_final.{full}"
    return full


class Slice:
    """One index along one axis, in TransformerLens's slice syntax.

    Modes: an int indexes (and drops the axis); a tuple is ``slice(*t)`` ((k,) is :k, (a, b) is
    a:b, (a, b, s) is a:b:s); a list, tensor or array picks those indices; None leaves the axis.

    Example:
        >>> Slice((1, 3)).apply(torch.arange(5))
        tensor([1, 2])
    """

    slice: int | slice | np.ndarray
    mode: str

    def __init__(self, input_slice: Any = None) -> None:
        if isinstance(input_slice, tuple):
            self.slice, self.mode = slice(*input_slice), "slice"
        elif isinstance(input_slice, int):
            self.slice, self.mode = input_slice, "int"
        elif isinstance(input_slice, slice):
            self.slice, self.mode = input_slice, "slice"
        elif type(input_slice) in (list, Tensor, np.ndarray):
            if isinstance(input_slice, Tensor):
                input_slice = input_slice.detach().cpu().numpy()
            self.slice, self.mode = np.asarray(input_slice), "array"
        elif input_slice is None:
            self.slice, self.mode = slice(None), "identity"
        else:
            raise ValueError(
                "A slice must be None, an int, a tuple, a slice, a list, a tensor or an array, "
                f"got {type(input_slice).__name__}: {input_slice!r}."
            )

    def apply(self, tensor: Tensor, dim: int = 0) -> Tensor:
        """`tensor` sliced along `dim` (negative dims count from the end)."""
        index: list[Any] = [slice(None)] * tensor.ndim
        index[dim] = self.slice
        return tensor[tuple(index)]

    def indices(self, max_ctx: int | None = None) -> np.ndarray:
        """The indices this slice selects from an axis of length `max_ctx`."""
        if self.mode == "int":
            return np.array([self.slice], dtype=np.int64)
        if max_ctx is None:
            raise ValueError("max_ctx must be given for a slice that is not a single int.")
        return np.arange(max_ctx, dtype=np.int64)[self.slice]

    def __repr__(self) -> str:
        return f"Slice: {self.slice} Mode: {self.mode} "

    @classmethod
    def unwrap(cls, slice_input: Any) -> "Slice":
        """`slice_input` as a Slice; a bare int becomes ``[int]`` so the axis is kept."""
        if isinstance(slice_input, Slice):
            return slice_input
        if isinstance(slice_input, int):
            slice_input = [slice_input]
        return Slice(slice_input)


class ActivationCache(dict[str, Tensor]):
    """Activations of one forward pass by hook name; a plain dict with TransformerLens's extras.

    Code written for TransformerLens's ``ActivationCache`` (``cache["post", 0]``, ``.to()``,
    ``remove_batch_dim()``) and code that treats the cache as a dict both work.

    Keys that are not hook names go through `get_act_name`: ``cache["post", 0]`` is
    ``cache["blocks.0.mlp.hook_post"]`` and a negative layer counts from the last block. For a
    model without blocks (HookedMLP), a short name without a layer is its root hook:
    ``cache["post"]`` is ``cache["hook_post"]``, ``cache["embed_U"]`` is ``cache["hook_embed_U"]``.

    Args:
        cache_dict: hook name -> activation.
        model: the model that produced them (for the number of layers), or None.
        has_batch_dim: whether the activations still have their batch axis.

    Example:
        >>> _, cache = model.run_with_cache(pairs, names_filter="hook_post")
        >>> cache["post"] is cache["hook_post"]
        True
    """

    def __init__(
        self, cache_dict: Mapping[str, Tensor], model: nn.Module | None, has_batch_dim: bool = True
    ) -> None:
        super().__init__(cache_dict)
        self.model = model
        self.has_batch_dim = has_batch_dim

    @property
    def cache_dict(self) -> dict[str, Tensor]:
        """The cache itself (TransformerLens keeps its dict under this name)."""
        return self

    @property
    def has_embed(self) -> bool:
        return "hook_embed" in self

    @property
    def has_pos_embed(self) -> bool:
        return "hook_pos_embed" in self

    def __repr__(self) -> str:
        return f"ActivationCache with keys {list(self.keys())}"

    def __getitem__(self, key: Any) -> Tensor:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        if isinstance(key, str):
            name, layer, layer_type = key, None, None
        elif isinstance(key, tuple) and 1 <= len(key) <= 3:
            name, layer, layer_type = (*key, None, None)[:3]
            if isinstance(layer, int) and layer < 0:
                layer += self._n_layers()
        else:
            raise KeyError(f"No activation {key!r}: use a hook name or (name, layer, layer_type).")
        candidates = [get_act_name(name, layer, layer_type)]
        if layer is None and layer_type is None and not name.startswith("hook_"):
            candidates.append(f"hook_{name}")  # a root hook point, e.g. HookedMLP's hook_post
        for candidate in candidates:
            if dict.__contains__(self, candidate):
                return dict.__getitem__(self, candidate)
        raise KeyError(
            f"No activation {key!r} in this cache (looked for {' or '.join(candidates)}); "
            f"it holds: {', '.join(self.keys()) or 'nothing'}."
        )

    def _n_layers(self) -> int:
        names = getattr(self.model, "hook_dict", None) or self.keys()
        layers = [int(m.group(1)) for n in names if (m := _BLOCK.match(n))]
        if not layers:
            raise ValueError(
                "This cache's model has no layers (no hook names of the form 'blocks.{L}.…'), "
                "so a layer cannot be counted from the end."
            )
        return max(layers) + 1

    def to(self, device: str | torch.device) -> "ActivationCache":
        """Move every activation to `device`, in place; returns the cache."""
        for name, value in list(self.items()):
            dict.__setitem__(self, name, value.to(device))
        return self

    def _batch_size(self) -> int:
        """The batch size: the most common first axis among the activations (a cache may also
        hold broadcast entries, first axis 1, or position-indexed ones, first axis seq)."""
        counts = Counter(v.size(0) for v in self.values() if v.ndim > 0)
        return counts.most_common(1)[0][0] if counts else 1

    def remove_batch_dim(self, batch_size: int | None = None) -> "ActivationCache":
        """Drop the batch axis of a batch of one, in place; returns the cache.

        Args:
            batch_size: the batch size if known; default: the most common first axis of the
                activations. Activations whose first axis is not 1 are left as they are (they
                have no batch axis).
        """
        if not self.has_batch_dim:
            warnings.warn("Tried removing batch dimension after already having removed it.",
                          stacklevel=2)
            return self
        size = self._batch_size() if batch_size is None else batch_size
        if size != 1:
            shapes = {k: tuple(v.shape) for k, v in self.items()}
            raise ValueError(f"Cannot remove the batch dimension of a cache with batch size "
                             f"{size} (larger than one); shapes: {shapes}.")
        for name, value in list(self.items()):
            if value.ndim > 0 and value.size(0) == 1:
                dict.__setitem__(self, name, value[0])
        self.has_batch_dim = False
        return self

    def toggle_autodiff(self, mode: bool = False) -> None:
        """Set torch's global autograd switch (`torch.set_grad_enabled(mode)`), with a warning.

        This changes global state for all of torch; `torch.inference_mode()` as a context
        manager is the local alternative.
        """
        warnings.warn(f"Changed the global state, set autodiff to {mode}.", stacklevel=2)
        torch.set_grad_enabled(mode)

    def apply_slice_to_batch_dim(
        self, batch_slice: "Slice | SliceInput | slice"
    ) -> "ActivationCache":
        """A new cache with `batch_slice` applied to every activation's batch axis.

        An int slice removes the batch axis (`has_batch_dim` becomes False).

        Example:
            >>> cache.apply_slice_to_batch_dim((0, 2))["hook_post"].shape[0]
            2
        """
        batch_slice = batch_slice if isinstance(batch_slice, Slice) else Slice(batch_slice)
        if not self.has_batch_dim and batch_slice.mode != "identity":
            raise ValueError(f"Cannot index the batch axis of a cache without one: {batch_slice}.")
        # Broadcast entries (first axis 1 in a larger batch) have no batch axis to slice.
        size = self._batch_size()
        sliced = {name: batch_slice.apply(value, dim=0)
                  if value.ndim > 0 and value.size(0) == size else value
                  for name, value in self.items()}
        keeps_batch = self.has_batch_dim and batch_slice.mode != "int"
        return ActivationCache(sliced, self.model, has_batch_dim=keeps_batch)

    def stack_activation(
        self, activation_name: str, layer: int | None = -1, sublayer_type: str | None = None
    ) -> Float[Tensor, "layers_covered ..."]:
        """One activation of every block before `layer`, stacked on a new leading axis.

        Args:
            activation_name: a `get_act_name` shorthand, e.g. "post" or "resid_pre".
            layer: stack blocks 0 .. layer-1; -1 or None means all blocks.
            sublayer_type: passed to `get_act_name` (e.g. "ln1"); usually inferred.

        Example:
            ``cache.stack_activation("post")`` has shape (n_layers, batch, d_mlp).
        """
        n_layers = self._n_layers()
        if layer is None or layer == -1:
            layer = n_layers
        if not 1 <= layer <= n_layers:
            raise ValueError(
                f"layer must be between 1 and {n_layers} (or -1 / None for all), got {layer}."
            )
        return torch.stack([self[activation_name, lay, sublayer_type] for lay in range(layer)])
