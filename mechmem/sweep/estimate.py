"""What a sweep will cost before it starts, and an ETA that settles while it runs.

`estimate_plan` times a short warm-up (a few steps of a few runs of the first chunk to train, on
the sweep's device) and scales it to every chunk by a cost model: a step costs in proportion to
runs x examples per step (the chunk's largest training set, or its batch size), an evaluation in
proportion to runs x p^2 (the whole table). `Eta` turns progress in model-steps into a remaining
time: the measured seconds so far over the estimated seconds done, a cumulative ratio (so it
settles as the sweep goes on rather than swinging with each chunk's speed), starting from the
warm-up's estimate so that the bar has an ETA from its first moment.
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import train_size
from ..train.autograd import make_group
from ..train.config import TrainConfig
from .plan import Chunk

_WARM_RUNS = 4  # runs in the warm-up group: enough to time a batched step, few enough to be quick
_WARM_STEPS = 3  # timed steps (after one untimed, which pays for first-call costs)


def _examples(configs: Sequence[TrainConfig]) -> int:
    bs = configs[0].batch_size
    return bs if isinstance(bs, int) else max(train_size(c.dataset_spec()) for c in configs)


def _units(configs: Sequence[TrainConfig]) -> tuple[float, float]:
    """(step units, evaluation units) of one chunk: runs x examples x steps, runs x p^2 x
    evaluations."""
    c0, m = configs[0], len(configs)
    evals = c0.steps // c0.eval_every + 1 + (c0.steps % c0.eval_every != 0)
    return float(m * _examples(configs) * c0.steps), float(m * c0.p ** 2 * evals)


@dataclass(frozen=True)
class SweepEstimate:
    """A sweep's size and its estimated time on this device, one chunk after another.

    Attributes:
        cells, chunks, model_steps: what the sweep trains (model-steps: each run's steps, summed).
        seconds: the estimated training time of the chunks still to train.
        device: where the warm-up ran.
        warmup_seconds: what the warm-up itself took.
    """

    cells: int
    chunks: int
    model_steps: int
    seconds: float
    device: str
    warmup_seconds: float

    def describe(self) -> str:
        """One line for the user: "plan: 1,292 cells in 4 chunks, ... about 2.1 h on cpu"."""
        return (f"plan: {self.cells:,} cells in {self.chunks:,} chunk"
                f"{'s' if self.chunks != 1 else ''}, {self.model_steps:,} model-steps; "
                f"estimated {format_seconds(self.seconds)} on {self.device} (from a "
                f"{self.warmup_seconds:.1f} s warm-up; chunks one after another)")


def format_seconds(s: float) -> str:
    """2.4 h, 13 min, 45 s."""
    if not math.isfinite(s):
        return "?"
    if s >= 5400:
        return f"{s / 3600:.1f} h"
    if s >= 90:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(configs: Sequence[TrainConfig], device: torch.device) -> tuple[float, float]:
    """Seconds per step and per evaluation of a group training `configs` on `device`."""
    group = make_group(configs, device=device)
    group.advance(0)  # untimed: first-call costs
    _sync(device)
    start = time.perf_counter()
    for s in range(1, _WARM_STEPS + 1):
        group.advance(s)
    _sync(device)
    step = (time.perf_counter() - start) / _WARM_STEPS
    start = time.perf_counter()
    group.record(_WARM_STEPS + 1)
    _sync(device)
    return step, time.perf_counter() - start


@dataclass(frozen=True)
class Rates:
    """A step's cost: a fixed part (launches, the Python loop) plus a part per run.

    Attributes:
        step_fixed: seconds per step whatever the chunk's size.
        per_step_unit: seconds per run x example of a step.
        per_eval_unit: seconds per run x p^2 of an evaluation.
    """

    step_fixed: float
    per_step_unit: float
    per_eval_unit: float

    def chunk_seconds(self, configs: Sequence[TrainConfig]) -> float:
        step_units, eval_units = _units(configs)
        return (configs[0].steps * self.step_fixed + step_units * self.per_step_unit
                + eval_units * self.per_eval_unit)


def warmup_rates(configs: Sequence[TrainConfig], device: torch.device) -> Rates:
    """Measured `Rates` from a few steps of one run and of (up to `_WARM_RUNS` of) `configs`."""
    sample = list(configs[:_WARM_RUNS])
    one_step, one_eval = _time_steps(sample[:1], device)
    many_step, many_eval = _time_steps(sample, device)
    m = len(sample)
    examples, cells = _examples(sample), sample[0].p ** 2
    if m > 1:  # two points: fixed + m x per-run
        per_run = max(many_step - one_step, 0.0) / (m - 1)
        fixed = max(one_step - per_run, 0.0)
        per_eval_run = max(many_eval, one_eval) / m
    else:
        per_run, fixed, per_eval_run = one_step, 0.0, one_eval
    return Rates(fixed, per_run / examples, per_eval_run / cells)


def estimate_plan(cells: Sequence[TrainConfig], chunks: Sequence[Chunk],
                  pending: Sequence[Chunk], device: torch.device) -> SweepEstimate:
    """Time a warm-up on the first pending chunk and estimate every pending chunk from it."""
    start = time.perf_counter()
    seconds = 0.0
    if pending:
        rates = warmup_rates([cells[i] for i in pending[0].cells], device)
        seconds = sum(rates.chunk_seconds([cells[i] for i in ch.cells]) for ch in pending)
    return SweepEstimate(len(cells), len(chunks), sum(c.steps for c in cells), seconds,
                         str(device), time.perf_counter() - start)


class Eta:
    """Remaining time from model-steps done: the estimate, corrected by how fast the sweep has
    really gone so far (cumulative, so it settles).

    Args:
        total: model-steps still to train when the clock starts.
        estimate: their estimated seconds (None or 0: no prior, the measured rate alone).
    """

    # The estimate counts as this much observation: 30 s, or a tenth of the estimate if less
    # (a short sweep's own measurements soon say more than a warm-up of a few steps).
    _PRIOR_SECONDS = 30.0

    def __init__(self, total: int, estimate: float | None) -> None:
        self.total, self.estimate = total, estimate or 0.0
        self.done = 0
        self.start = time.perf_counter()

    def update(self, n: int) -> None:
        """Record `n` more model-steps."""
        self.done += n

    def remaining(self, elapsed: float | None = None) -> float:
        """Estimated seconds left (inf if unknown), `elapsed` seconds after the start (default:
        now)."""
        if elapsed is None:
            elapsed = time.perf_counter() - self.start
        left = max(self.total - self.done, 0)
        if self.total == 0 or left == 0:
            return 0.0
        if self.estimate > 0:
            # Seconds per model-step: the prior as if observed for _PRIOR_SECONDS, then the data.
            weight = min(self._PRIOR_SECONDS, self.estimate / 10)
            prior_steps = weight * self.total / self.estimate
            rate = (elapsed + weight) / (self.done + prior_steps)
        elif self.done:
            rate = elapsed / self.done
        else:
            return math.inf
        return left * rate
