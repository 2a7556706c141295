"""The model families mechmem trains and analyzes, by name: their configs and classes.

"mlp" is the paper's 2-layer network (`HookedMLP`), "mlp3" its 3-layer MLP (`HookedMLP3`),
"transformer" its 1-layer encoder-only transformer (`HookedTransformer`).
"""

from collections.abc import Mapping
from typing import Any

from torch import nn

from .mlp import HookedMLP, MLPConfig
from .mlp3 import HookedMLP3, MLP3Config
from .transformer import HookedTransformer, TransformerConfig

ModelConfig = MLPConfig | MLP3Config | TransformerConfig
FAMILIES: dict[str, tuple[type, type]] = {
    "mlp": (MLPConfig, HookedMLP),
    "mlp3": (MLP3Config, HookedMLP3),
    "transformer": (TransformerConfig, HookedTransformer),
}


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"`model` must be one of {', '.join(FAMILIES)}, got {family!r}.")
    return family


def model_config(family: str, fields: Mapping[str, Any]) -> ModelConfig:
    """The family's config from plain fields (as `to_dict` wrote them)."""
    return FAMILIES[check_family(family)][0](**fields)


def build_model(cfg: ModelConfig, *, seed: int = 0) -> nn.Module:
    """A fresh model of the config's family, weights drawn from `seed`."""
    for config_cls, model_cls in FAMILIES.values():
        if type(cfg) is config_cls:
            return model_cls(cfg, seed=seed)
    raise TypeError(f"Not a model config: {type(cfg).__name__}.")


def family_of(model: nn.Module) -> str:
    """The family name of a mechmem model ("mlp", "mlp3", "transformer")."""
    family = getattr(type(model), "family", None)
    if family not in FAMILIES or not isinstance(model, FAMILIES[family][1]):
        raise TypeError(f"{type(model).__name__} is not one of mechmem's model families "
                        f"({', '.join(FAMILIES)}).")
    return family


def weight_names(model: nn.Module) -> tuple[str, ...]:
    """The model's weight matrices by state_dict name (U, V and every W_*; no biases or norm
    factors): what snapshots store and what the history's weight norms measure."""
    return tuple(name for name, _ in model.named_parameters()
                 if (leaf := name.rsplit(".", 1)[-1]) in ("U", "V") or leaf.startswith("W"))


def norm_key(name: str) -> str:
    """The history key of a weight's norm: "norm_" + its leaf name (blocks share one key)."""
    return "norm_" + name.rsplit(".", 1)[-1]
