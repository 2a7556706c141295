"""mechmem: train and dissect networks on corrupted modular arithmetic.

Did this network memorize, generalize, or both? Headline names:

- data: `DatasetSpec`, `make_dataset`, `ModularDataset`
- models: `MLPConfig`, `HookedMLP`, `MLP3Config`, `HookedMLP3`, `TransformerConfig`,
  `HookedTransformer`, `analytic_solution` (the neuron-site protocol in `mechmem.models`)
- hooks: `HookPoint`, `HookedRootModule`
- checkpoints: `Checkpoint`, `load_checkpoint`, `save_checkpoint`
- training: `TrainConfig`, `train` (more in `mechmem.train`: `resume`, `preset`, `PRESETS`,
  `initial_model`)
- analysis: `analyze` (the analyzers themselves live in `mechmem.analysis`)
- counterfactual memorization: `memorization` (K models on random halves; more in
  `mechmem.memorization`)
- sweeps: `SweepConfig`, `sweep`, `load_sweep` (more in `mechmem.sweep`: `sweep_preset`,
  `SweepResult`, `train_chunk`, ...)
"""

# `mechmem.train` and `mechmem.sweep` are the subpackages, and calling one runs its headline
# function: `mechmem.train(config)`, `mechmem.train.preset(...)` (see `_callable`).
from . import sweep as sweep
from . import train as train
from .analysis import analyze as analyze
from .checkpoint import Checkpoint as Checkpoint
from .checkpoint import load_checkpoint as load_checkpoint
from .checkpoint import save_checkpoint as save_checkpoint
from .data import DatasetSpec as DatasetSpec
from .data import ModularDataset as ModularDataset
from .data import make_dataset as make_dataset
from .hooks import HookedRootModule as HookedRootModule
from .hooks import HookPoint as HookPoint

# The function shadows the subpackage: `mechmem.memorization(config, models=K)`.
from .memorization import memorization as memorization
from .models import HookedMLP as HookedMLP
from .models import HookedMLP3 as HookedMLP3
from .models import HookedTransformer as HookedTransformer
from .models import MLP3Config as MLP3Config
from .models import MLPConfig as MLPConfig
from .models import TransformerConfig as TransformerConfig
from .models import analytic_solution as analytic_solution
from .sweep import SweepConfig as SweepConfig
from .sweep import load_sweep as load_sweep
from .train import TrainConfig as TrainConfig

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # `mechmem.report` imports plotly, so `import mechmem` leaves it out until it is named.
    if name == "report":
        import importlib

        return importlib.import_module(".report", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
