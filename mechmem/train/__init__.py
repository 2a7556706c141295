"""Training: `TrainConfig` (the paper's defaults), `train`, `resume` and the paper's presets.

This subpackage can be called: `mechmem.train(config, ...)` is `mechmem.train.train(config, ...)`
(see `mechmem._callable`), so `from mechmem import train` gives both.

Files: config (the frozen settings), presets (the paper's named runs), engine (the fused
forward/backward step of a stack of models), optim (the optimizers), stack (per-model data and
minibatch orders), group (M runs sharing one step), metrics (what each evaluation records),
memory (what a run needs), loop (history, snapshots, checkpoints, interruption).
"""

from .._callable import make_callable
from .config import TrainConfig as TrainConfig
from .group import ModelGroup as ModelGroup
from .group import initial_model as initial_model
from .loop import TrainingInterrupted as TrainingInterrupted
from .loop import resume as resume
from .loop import train as train
from .metrics import HISTORY_KEYS as HISTORY_KEYS
from .presets import PRESETS as PRESETS
from .presets import preset as preset

make_callable(__name__, train)
