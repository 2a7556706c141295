"""Sweeps: grids of training runs, trained many at a time, and their phase diagrams.

Files: grid (axis value syntax), config (`SweepConfig`: a base run plus axes), presets (the
paper's figures), plan (cells grouped by what can share a step, cut into chunks that fit),
cell (train one chunk; each run's cell record), folder (sweep.json, cells.jsonl, weights/),
partial (a chunk's state while it trains), run (`sweep`: the resumable local backend),
ray_backend (each chunk a Ray task), result (`load_sweep`, `SweepResult`, `Grid`).

This subpackage can be called: `mechmem.sweep(config, out=...)` is `mechmem.sweep.sweep(...)`
(see `mechmem._callable`).
"""

from .._callable import make_callable
from .cell import train_chunk as train_chunk
from .config import SweepConfig as SweepConfig
from .config import cell_id as cell_id
from .plan import Chunk as Chunk
from .plan import plan_chunks as plan_chunks
from .presets import SWEEP_PRESETS as SWEEP_PRESETS
from .presets import sweep_preset as sweep_preset
from .result import Grid as Grid
from .result import SweepResult as SweepResult
from .result import load_sweep as load_sweep
from .run import SweepInterrupted as SweepInterrupted
from .run import sweep as sweep

make_callable(__name__, sweep)
