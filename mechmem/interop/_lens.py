"""The installed TransformerLens line, and its models built, recognised and loaded on both lines.

TransformerLens 3.x models are `HookedTransformer(HookedTransformerConfig(...))`, whose state
dict uses property names (`blocks.0.attn.W_Q`, per-head shapes). TransformerLens 4 removed both;
its models are `TransformerBridge.boot_native(TransformerBridgeConfig(...))`, whose state dict
uses module names (`blocks.0.attn.q.weight`, flat `nn.Linear` shapes), and it converts 3.x state
dicts with `convert_tl_checkpoint`. The line is read from the package's metadata: probing a name
4.x removed raises, with an error type that changed between 4.x releases.
"""

import importlib.metadata
import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

import einops
import torch
from torch import Tensor, nn

INSTALL = 'pip install "mechmem[tl]"'
MODEL_CLASSES = ("HookedTransformer", "TransformerBridge")


def major_version() -> int:
    """The installed transformer-lens's major version (3 or 4), from its package metadata."""
    try:
        version = importlib.metadata.version("transformer-lens")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"This needs the transformer-lens package: {INSTALL}.") from None
    found = re.match(r"(\d+)\.", version)
    major = int(found.group(1)) if found else 0
    if major not in (3, 4):
        raise ImportError(f"mechmem.interop works with TransformerLens 3.9 to 4.x; this is "
                          f"{version}: {INSTALL}.")
    return major


def transformer_lens() -> Any:
    """The `transformer_lens` package, or an ImportError saying how to install it."""
    major_version()
    try:
        import transformer_lens
    except ImportError:
        raise ImportError(f"This needs the transformer-lens package: {INSTALL}.") from None
    return transformer_lens


def is_transformer_lens_model(obj: object) -> bool:
    """Whether `obj` is a TransformerLens model: 3.x's `HookedTransformer` or a `TransformerBridge`
    (read from its class's names, so nothing is imported or probed)."""
    return any(cls.__name__ in MODEL_CLASSES and cls.__module__.startswith("transformer_lens.")
               for cls in type(obj).__mro__)


def is_bridge(model: object) -> bool:
    """Whether a TransformerLens model is a `TransformerBridge` (its state dict in module names)."""
    return any(cls.__name__ == "TransformerBridge" for cls in type(model).__mro__)


def config_class() -> type:
    """The config class a model is built from: `TransformerBridgeConfig` on 4.x,
    `HookedTransformerConfig` on 3.x."""
    tl = transformer_lens()
    if major_version() >= 4:
        from transformer_lens.config import TransformerBridgeConfig

        return TransformerBridgeConfig
    return tl.HookedTransformerConfig


def build_config(fields: Mapping[str, Any]) -> Any:
    """A config of the installed line from plain fields (either line's; 4.x drops the 3.x-only
    ones, which describe devices and names, not the computation)."""
    cls = config_class()
    if major_version() >= 4:
        return cls.from_dict(dict(fields))
    return cls(**fields)


def build_model(cfg: Any) -> nn.Module:
    """A model of the installed line from its config, on the config's device, without touching
    the global random generators (the caller loads its weights).

    mechmem builds 3.x's HookedTransformer on purpose (docs/transformer-lens.md); the 3.x
    deprecation notice is for code choosing between it and TransformerBridge.
    """
    tl = transformer_lens()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated",
                                category=DeprecationWarning)
        if major_version() >= 4:
            from transformer_lens.model_bridge import TransformerBridge

            # On the CPU (the default) without the device argument, which prints a line.
            device = None if str(cfg.device or "cpu") == "cpu" else str(cfg.device)
            return TransformerBridge.boot_native(cfg, device=device)
        return tl.HookedTransformer(cfg)


def attention_scale(cfg: Any, bridge: bool) -> float:
    """What the model divides attention scores by (4.x's -1 means sqrt(d_head))."""
    if bridge:
        ok = cfg.use_attn_scale and cfg.attn_scale > 0
        return float(cfg.attn_scale) if ok else math.sqrt(cfg.d_head)
    return float(cfg.attn_scale) if cfg.use_attn_scale else 1.0


# Module-name suffix (4.x) -> property-name suffix (3.x) and the tensor's layout in each: the
# inverse of TransformerLens 4's convert_tl_checkpoint, for the parameters these models have.
_TO_PROPERTY = [
    (r"\.attn\.([qkv])\.weight$", lambda m: f".attn.W_{m.group(1).upper()}",
     "(h d) m -> h m d"),
    (r"\.attn\.([qkv])\.bias$", lambda m: f".attn.b_{m.group(1).upper()}", "(h d) -> h d"),
    (r"\.attn\.o\.weight$", lambda m: ".attn.W_O", "m (h d) -> h d m"),
    (r"\.attn\.o\.bias$", lambda m: ".attn.b_O", None),
    (r"\.mlp\.(in|out)\.weight$", lambda m: f".mlp.W_{m.group(1)}", "T"),
    (r"\.mlp\.(in|out)\.bias$", lambda m: f".mlp.b_{m.group(1)}", None),
    (r"^unembed\.weight$", lambda m: "unembed.W_U", "T"),
    (r"^unembed\.bias$", lambda m: "unembed.b_U", None),
    (r"^embed\.weight$", lambda m: "embed.W_E", None),
    (r"^pos_embed\.weight$", lambda m: "pos_embed.W_pos", None),
    (r"(ln1|ln2|ln_final)\.weight$", lambda m: f"{m.group(1)}.w", None),
    (r"(ln1|ln2|ln_final)\.bias$", lambda m: f"{m.group(1)}.b", None),
]


def is_module_format(state: Mapping[str, Any]) -> bool:
    """Whether a state dict is in TransformerLens 4's module names (else 3.x's property names)."""
    return "embed.weight" in state and "embed.W_E" not in state


def to_property_format(state: Mapping[str, Tensor], cfg: Any) -> dict[str, Tensor]:
    """A TransformerLens 4 (module-name) state dict in 3.x's property names and shapes."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for pattern, rename, layout in _TO_PROPERTY:
            found = re.search(pattern, key)
            if found:
                new = key[: found.start()] + rename(found)
                if layout == "T":
                    value = value.T.contiguous()
                elif layout is not None:
                    value = einops.rearrange(value, layout, h=cfg.n_heads).contiguous()
                out[new] = value
                break
        else:
            raise ValueError(f"state_dict key {key!r} is not a parameter of TransformerLens's "
                             "transformers")
    return out


def to_model_format(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """A state dict of either line's naming, in `model`'s own (4.x: `convert_tl_checkpoint`)."""
    state = dict(state)
    if is_bridge(model):
        if is_module_format(state):
            return state
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

        return convert_tl_checkpoint(state, model.cfg)
    if is_module_format(state):
        state = to_property_format(state, model.cfg)
        # 3.x's attention keeps its masks as state; the file (4.x) does not carry them.
        for key, value in model.state_dict().items():
            if key.endswith((".mask", ".IGNORE")):
                state.setdefault(key, value)
    return state


def parameter_names(model: nn.Module) -> dict[str, str]:
    """State-dict key -> the parameter's module path (what a module holding `model` names it,
    `nn.Module.named_parameters`; a bridge's own `named_parameters` and state dict rename it)."""
    by_id = {id(p): name for name, p in nn.Module.named_parameters(model)}
    return {key: by_id[id(t)] for key, t in model.state_dict(keep_vars=True).items()
            if id(t) in by_id}
