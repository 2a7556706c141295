"""The paper's phase diagrams as sweep presets, at its size (p 97, width 500) and its 2,000-step
protocol, on either of its two grids.

Grids:
    "appendix" (the default): the paper's App. A, 17 alpha values 0.1..0.9 x 19 xi values
        0.0..0.9, with mechmem's seeding from seed 0 (as the paper, one seed per cell; cells of
        one width share their initial weights, as the authors' cells do).
    "scripts": the authors' released scripts (Training_scripts/phase_diagrams_*.py): 17 alpha x
        17 xi values, both 0.1..0.9, every cell seeded alike (`seeding="scripts"`: pairs shuffled
        with seed 420, labels drawn after torch.manual_seed(0), init after torch.manual_seed(1)).
"""

from types import MappingProxyType
from typing import Any

from ..train.config import TrainConfig
from .config import SweepConfig
from .grid import linspace

GRIDS = ("appendix", "scripts")
_ALPHA = linspace(0.1, 0.9, 17)
_XI = {"appendix": linspace(0.0, 0.9, 19), "scripts": linspace(0.1, 0.9, 17)}

# name -> (what it draws, base settings, the panel axis and its values, the minibatch rule)
SWEEP_PRESETS: MappingProxyType[str, tuple[str, dict[str, Any], tuple[str, tuple], bool]] = (
    MappingProxyType({
        "fig3a": ("Fig. 3a: weight decay", {}, ("weight_decay", (0.0, 5.0, 15.0, 20.0)), False),
        "fig3b": ("Fig. 3b: dropout", {}, ("dropout", (0.0, 0.3, 0.6, 0.9)), False),
        "batchnorm": ("App. F: post-activation BatchNorm over batch sizes",
                      {"norm": "batchnorm"}, ("batch_size", (8, 32, 64, 256)), True),
        "minibatch": ("App. F: minibatches without normalization", {},
                      ("batch_size", (8, 256, "full")), True),
        "mul": ("App. P: Fig. 3a on multiplication", {"op": "mul"},
                ("weight_decay", (0.0, 5.0, 15.0, 20.0)), False),
    }))


def sweep_preset(name: str, /, *, grid: str = "appendix", **overrides: Any) -> SweepConfig:
    """The `SweepConfig` of one of the paper's phase diagrams.

    Args:
        name: one of `SWEEP_PRESETS` (fig3a, fig3b, batchnorm, minibatch, mul).
        grid: "appendix" (17 x 19, the paper's App. A) or "scripts" (17 x 17, the authors'
            scripts and their seeding); see the module doc.
        **overrides: `TrainConfig` fields of the base (for example steps, width, device).

    Returns:
        The sweep: axes (panel axis, corrupt_frac, train_frac).

    Example:
        >>> len(sweep_preset("fig3a").cells())
        1292
    """
    if name not in SWEEP_PRESETS:
        raise ValueError(f"Unknown sweep preset {name!r}; choose one of "
                         f"{', '.join(SWEEP_PRESETS)}.")
    if grid not in GRIDS:
        raise ValueError(f"`grid` must be one of {', '.join(GRIDS)}, got {grid!r}.")
    _, base, (panel, values), rule = SWEEP_PRESETS[name]
    fields: dict[str, Any] = {"steps": 2000, "snapshot_every": None, **base}
    if grid == "scripts":
        fields["seeding"] = "scripts"
    fields.update(overrides)
    return SweepConfig(
        TrainConfig(**fields),
        axes=((panel, values), ("corrupt_frac", _XI[grid]), ("train_frac", _ALPHA)),
        paper_minibatch_rule=rule,
        name=f"{name} ({grid} grid)",
    )
