"""`train` and `resume`: the training loop with history, snapshots, checkpoints and interruption.

Step s takes the weights after s optimizer steps (state s) to state s + 1. At state s the loop
records history (every `eval_every` steps, at 0 and at the end), snapshots, and writes the
periodic checkpoint, in that order and before anything mutates state s, so a checkpoint at s
holds exactly the record of states 0..s and resuming from it replays steps s, s + 1, ... with
the same operations: on CPU the result is bit-identical to an uninterrupted run.

All randomness derives from `config.seed` and the step or epoch number (dropout masks, minibatch
order; under the "paper" seeding the minibatch order replays the authors' stream from its seed),
so resuming needs only the weights and the optimizer state.
"""

import contextlib
import dataclasses
import os
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._files import check_destination, exclusive, lock_path
from .._progress import progress_bar
from .._signals import signals_as_flag
from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..data import ModularDataset, make_dataset
from ..models.families import weight_names
from .autograd import AutogradGroup, make_group
from .config import TrainConfig
from .group import ModelGroup, initial_model
from .memory import check_fits
from .metrics import EXAMPLE_KEYS

_TRAIN_STATE_VERSION = 1


class TrainingInterrupted(KeyboardInterrupt):
    """Raised when SIGINT or SIGTERM stopped a run; it was saved first when it had a path.

    Attributes:
        checkpoint: the run as it stood (resumable), also written to `checkpoint.path` if set.
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__(f"training interrupted at step {checkpoint.step}")
        self.checkpoint = checkpoint


def train(
    config: TrainConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    progress: bool = False,
) -> Checkpoint:
    """Train the network of `config` (any model family) on its dataset; return the checkpoint.

    Args:
        config: the run; None means the paper's defaults.
        out: write the checkpoint here (atomically) at the end and every `checkpoint_every`
            steps; None keeps it in memory only.
        overwrite: allow replacing an existing `out`.
        checkpoint_every: periodic checkpoint interval in steps (needs `out`).
        progress: show a tqdm progress bar with live train/test accuracy.

    Returns:
        The same kind of `Checkpoint` that `load_checkpoint` returns, model in eval mode.

    Raises:
        TrainingInterrupted: on SIGINT/SIGTERM, after saving to `out` (resume with `resume`).

    Example:
        >>> ckpt = train(TrainConfig(p=23, width=64, corrupt_frac=0.2, steps=200))
        >>> ckpt.history["test_acc"][-1]
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig (or None for the paper's defaults), got "
                        f"{type(config).__name__} {config!r:.60}; build one with TrainConfig("
                        "p=..., ...) or TrainConfig.from_dict(d).")
    out = _check_out(out, overwrite, checkpoint_every)
    check_fits([config])
    with _lock(out):
        if out is not None and not overwrite and out.exists():  # written while we checked
            check_destination(out, overwrite=False, what="checkpoint")
        dataset = make_dataset(config.dataset_spec())
        run = _Run(config=config, dataset=dataset, model=initial_model(config),
                   meta={"name": config.name, "checkpoint_every": checkpoint_every or 0},
                   out=out, every=checkpoint_every)
        return _train(run, progress)


def resume(
    path: str | os.PathLike,
    *,
    steps: int | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    progress: bool = False,
) -> Checkpoint:
    """Continue a run from a checkpoint written by `train` (periodic, interrupted or final).

    Args:
        path: the checkpoint.
        steps: a new total step count to extend a run (default: the run's own).
        out: where to write (default: back into `path`).
        overwrite: allow replacing an existing `out` (writing back into `path` always may).
        checkpoint_every: periodic interval (default: the one the run was started with).
        progress: show a progress bar.

    Returns:
        The finished checkpoint; on CPU identical to an uninterrupted run of the same config.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a checkpoint path (a string or a path), got "
                        f"{type(path).__name__} {path!r:.60}.")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)):
        raise TypeError(f"`steps` must be an integer or None, got {steps!r}.")
    ckpt = load_checkpoint(path)
    if ckpt.train_config is None or ckpt.train_state is None:
        raise ValueError(f"{path}: has no training state to resume from (not written by train).")
    state = ckpt.train_state
    if state.get("version") != _TRAIN_STATE_VERSION:
        raise ValueError(f"{path}: unknown training-state version {state.get('version')!r}.")
    config = ckpt.config
    if steps is not None:
        if steps < ckpt.step:
            raise ValueError(f"`steps`={steps} is below the {ckpt.step} steps already taken.")
        config = config.replace(steps=steps)
    every = checkpoint_every if checkpoint_every is not None else (
        int(ckpt.meta.get("checkpoint_every", 0)) or None)
    target = _check_out(Path(path) if out is None else out, out is None or overwrite, every)
    run = _Run(config=config, dataset=ckpt.dataset, model=ckpt.model,
               meta={**ckpt.meta, "checkpoint_every": every or 0}, out=target, every=every,
               history={k: list(v) for k, v in ckpt.history.items()},
               snapshots={k: list(v.unbind(0)) for k, v in ckpt.snapshots.items()},
               start=ckpt.step, optimizer=state["optimizer"], source=Path(path))
    with _lock(target):
        return _train(run, progress)


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _lock(out: Path | None) -> contextlib.AbstractContextManager:
    """The lock of the checkpoint path `out` (nothing to lock for a run kept in memory)."""
    return contextlib.nullcontext() if out is None else exclusive(lock_path(out), f"{out}")


def _check_out(out: Any, overwrite: bool, every: int | None) -> Path | None:
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"`checkpoint_every` must be a positive integer, got {every!r}.")
    if out is None:
        if every is not None:
            raise ValueError("`checkpoint_every` needs an output path to write to.")
        return None
    # Checked before training starts, so that a bad path costs no training time.
    return check_destination(out, overwrite=overwrite, what="checkpoint")


@dataclass
class _Run:
    """One run as it stands: what it trains, what it has recorded, where it is written."""

    config: TrainConfig
    dataset: ModularDataset
    model: torch.nn.Module
    meta: dict
    out: Path | None
    every: int | None
    history: dict[str, list] = field(default_factory=dict)
    snapshots: dict[str, list] = field(default_factory=dict)
    start: int = 0
    optimizer: dict | None = None
    source: Path | None = None  # the checkpoint a resumed run was read from

    def record(self, entry: dict[str, float], keys: tuple[str, ...]) -> None:
        for k in keys:
            self.history.setdefault(k, []).append(entry[k])

    def snapshot(self, s: int, group: ModelGroup | AutogradGroup) -> None:
        self.snapshots.setdefault("step", []).append(torch.tensor(s))
        for name in weight_names(self.model):
            self.snapshots.setdefault(name, []).append(group.weights(name)[0])

    def checkpoint(self, at: int, group: ModelGroup | AutogradGroup) -> Checkpoint:
        group.load_into(self.model, 0)
        return Checkpoint(
            model=self.model, dataset=self.dataset, train_config=self.config.to_dict(),
            history={k: list(v) for k, v in self.history.items()},
            snapshots={k: torch.stack(v) for k, v in self.snapshots.items()},
            step=at, meta=dict(self.meta), path=self.out,
            train_state={"version": _TRAIN_STATE_VERSION,
                         "optimizer": group.optimizer_state(0)},
        )

    def save(self, at: int, group: ModelGroup | AutogradGroup) -> Checkpoint:
        ckpt = self.checkpoint(at, group)
        if self.out is not None:
            try:
                save_checkpoint(ckpt, self.out, overwrite=True)
            except OSError as e:
                raise OSError(self._rescue(ckpt, e)) from None
        return ckpt

    def _rescue(self, ckpt: Checkpoint, error: OSError) -> str:
        """Write `ckpt` to the temporary folder when its destination failed; say where."""
        reason = error.strerror or str(error) or type(error).__name__
        spare = Path(tempfile.gettempdir()) / f"mechmem-{self.out.stem}-{os.getpid()}.pt"
        try:
            save_checkpoint(dataclasses.replace(ckpt, path=spare), spare, overwrite=True)
        except Exception:  # noqa: BLE001  (the first error is the one to report)
            return f"Could not write {self.out} at step {ckpt.step} ({reason}); the run is lost."
        return (f"Could not write {self.out} at step {ckpt.step} ({reason}); the run is saved "
                f"in {spare}: move it where you want it (mechmem train --resume {spare} "
                "continues it).")


def _train(run: _Run, progress: bool) -> Checkpoint:
    """The loop of one run: at each state s, record, snapshot, checkpoint, then step."""
    config = run.config
    group = make_group([config], models=[run.model], datasets=[run.dataset])
    if run.optimizer is not None:
        try:
            group.load_optimizer_state([run.optimizer])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"{run.source}: damaged mechmem checkpoint: its train_state optimizer "
                             f"does not fit the model ({_first_line(e)}).") from None
    start, steps, snap_every = run.start, config.steps, config.snapshot_every
    bar = progress_bar(total=steps, initial=start, disable=not progress, unit="step",
                       dynamic_ncols=True, leave=True)
    try:
        with signals_as_flag([signal.SIGINT, signal.SIGTERM]) as interrupted:
            for s in range(start, steps + 1):
                fresh = s > start or start == 0  # state `start` of a resumed run is recorded
                last = s == steps
                if fresh and (s % config.eval_every == 0 or last):
                    entry = group.record(s)[0]
                    run.record(entry, group.history_keys + (
                        EXAMPLE_KEYS if config.track_examples else ()))
                    bar.set_postfix(train=f"{entry['train_acc']:.3f}",
                                    test=f"{entry['test_acc']:.3f}", refresh=False)
                if fresh and snap_every is not None and (s % snap_every == 0 or last):
                    run.snapshot(s, group)
                if last:
                    break
                if interrupted[0]:
                    raise TrainingInterrupted(run.save(s, group))
                if run.every is not None and run.out is not None and fresh and s > 0 and (
                        s % run.every == 0):
                    run.save(s, group)
                group.advance(s)
                bar.update(1)
    finally:
        bar.close()
    return run.save(steps, group)
