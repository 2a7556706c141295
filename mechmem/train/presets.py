"""The paper's named runs as `TrainConfig` presets (alpha 0.5, xi 0.35 unless stated)."""

from types import MappingProxyType
from typing import Any

from .config import TrainConfig

_CORRUPTED = {"train_frac": 0.5, "corrupt_frac": 0.35}

PRESETS: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType({
    name: MappingProxyType(fields)
    for name, fields in {
        # Paper Table / Fig. 2: final train / test 97.8 / 98.3.
        "coexistence": {**_CORRUPTED, "weight_decay": 0.0},
        # 78.6 / 100: the network predicts the true rule on part of the corrupted examples.
        "partial-inversion": {**_CORRUPTED, "weight_decay": 5.0},
        # 65.4 / 100 = 1 - xi + xi/p: every corrupted example is answered with the true rule.
        "full-inversion": {**_CORRUPTED, "weight_decay": 15.0},
        # Grokking (test ~100% by step 200), then the weights shrink and collapse: both
        # accuracies fall below 5% near step 2300 and the norms reach ~0 by 2900 (measured).
        "forgetting": {**_CORRUPTED, "weight_decay": 20.0, "steps": 3000,
                       "snapshot_every": 300},  # 11 snapshots, as at the default 2000 / 200
        # Fig. 5: post-activation BatchNorm, batch 64 with the paper's minibatch rule from the
        # defaults (lr 0.01 x sqrt(64/256) = 0.005, 2000 x 256/64 = 8000 steps).
        "batchnorm": {
            "train_frac": 0.65,
            "corrupt_frac": 0.2,
            "norm": "batchnorm",
            "batch_size": 64,
            "lr": 0.005,
            "steps": 8000,
            "snapshot_every": 800,
        },
    }.items()
})


def preset(name: str, /, **overrides: Any) -> TrainConfig:
    """The `TrainConfig` of a named run of the paper, with some fields overridden.

    Args:
        name: one of `PRESETS` (coexistence, partial-inversion, full-inversion, forgetting,
            batchnorm).
        **overrides: `TrainConfig` fields that replace the preset's.

    Returns:
        The config; `name` defaults to the preset's name.

    Example:
        >>> preset("full-inversion", steps=500).weight_decay
        15.0
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    fields: dict[str, Any] = {"name": name, **PRESETS[name], **overrides}
    return TrainConfig(**fields)
