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

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._files import check_destination
from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..data import ModularDataset, make_dataset, paper_init_stream
from ..models.mlp import HookedMLP
from ..seeding import paper_init
from .config import TrainConfig
from .engine import (
    Batch,
    Step,
    buffers_from_model,
    eval_logits,
    load_into_model,
    params_from_model,
)
from .metrics import HISTORY_KEYS, Evaluator
from .optim import Optimizer

_TRAIN_STATE_VERSION = 1


class TrainingInterrupted(KeyboardInterrupt):
    """Raised when SIGINT or SIGTERM stopped a run; it was saved first when it had a path.

    Attributes:
        checkpoint: the run as it stood (resumable), also written to `checkpoint.path` if set.
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__(f"training interrupted at step {checkpoint.step}")
        self.checkpoint = checkpoint


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use cpu.")
    return torch.device(device)


def _seed(seed: int, stream: int, index: int) -> int:
    # Distinct streams for dropout masks and batch orders, decorrelated across seeds.
    return (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9 + index) % (2**63)


@contextmanager
def _catch_signals() -> Iterator[list[bool]]:
    """Turn SIGINT/SIGTERM into a flag checked between steps (state never half-updated)."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag[0]:  # a second signal: stop now
            raise KeyboardInterrupt
        flag[0] = True

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train(
    config: TrainConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    progress: bool = False,
) -> Checkpoint:
    """Train the MLP of `config` on its dataset and return the checkpoint.

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
    out = _check_out(out, overwrite, checkpoint_every)
    dataset = make_dataset(config.dataset_spec())
    model = initial_model(config)
    meta = {"name": config.name, "checkpoint_every": checkpoint_every or 0}
    return _run(config, dataset, model, {k: [] for k in HISTORY_KEYS}, {}, 0, None, meta,
                out, checkpoint_every, progress)


def initial_model(config: TrainConfig) -> HookedMLP:
    """The network a run of `config` starts from (step 0), in training mode.

    Example:
        >>> initial_model(TrainConfig(width=64)).U.shape
        torch.Size([64, 97])
    """
    model = HookedMLP(config.model_config(), seed=config.seed)
    if config.seeding == "paper":
        weights, _ = _paper_init(config)
        with torch.no_grad():
            for w, value in zip((model.U, model.V, model.W), weights, strict=True):
                w.copy_(value)
    return model


def _paper_init(config: TrainConfig) -> tuple[tuple[torch.Tensor, ...], torch.Generator]:
    """The authors' initial U, V, W for `config`, and their torch stream after drawing them
    (where their minibatch permutations come from)."""
    cfg = config.model_config()
    stream = paper_init_stream(config.dataset_spec())
    std = cfg.paper_init_std if cfg.init == "paper" else None
    return paper_init(cfg.width, cfg.p, stream, std=std, scale=cfg.init_scale), stream


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
    history = {k: list(ckpt.history.get(k, [])) for k in HISTORY_KEYS}
    snapshots = {k: list(v.unbind(0)) for k, v in ckpt.snapshots.items()}
    meta = {**ckpt.meta, "checkpoint_every": every or 0}
    return _run(config, ckpt.dataset, ckpt.model, history, snapshots, ckpt.step,
                state["optimizer"], meta, target, every, progress)


def _check_out(out: Any, overwrite: bool, every: int | None) -> Path | None:
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"`checkpoint_every` must be a positive integer, got {every!r}.")
    if out is None:
        if every is not None:
            raise ValueError("`checkpoint_every` needs an output path to write to.")
        return None
    # Checked before training starts, so that a bad path costs no training time.
    return check_destination(out, overwrite=overwrite, what="checkpoint")


class _Batches:
    """Full batch, or minibatches: each epoch walks a fresh permutation of the training set in
    batches of the same size, the remainder dropped (as the paper's code does).

    The permutation of epoch e is drawn from a generator seeded by (seed, e); under the "paper"
    seeding the permutations continue the authors' torch stream after the init, one per epoch.
    """

    def __init__(self, config: TrainConfig, dataset: ModularDataset, device: torch.device):
        pairs = dataset.train_pairs.to(device)
        labels = dataset.train_labels.to(device)
        target = F.one_hot(labels, config.p).to(torch.get_default_dtype())
        self.full = Batch(pairs[:, 0].contiguous(), pairs[:, 1].contiguous(), labels, target)
        self.size = dataset.n_train if config.batch_size == "full" else min(
            config.batch_size, dataset.n_train)
        self.per_epoch = dataset.n_train // self.size
        self.is_full = self.size == dataset.n_train
        self.config, self.device = config, device
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.int64)
        self._stream: torch.Generator | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        n = self.full.m.shape[0]
        if self.config.seeding != "paper":
            gen = torch.Generator().manual_seed(_seed(self.config.seed, 1, epoch))
            return torch.randperm(n, generator=gen)
        if self._stream is None or epoch <= self._epoch:
            # Replay from the start: the stream after the init, then epochs 0..epoch.
            self._stream, self._epoch = _paper_init(self.config)[1], -1
        for _ in range(epoch - self._epoch):
            perm = torch.randperm(n, generator=self._stream)
        return perm

    def __call__(self, step: int) -> Batch:
        if self.is_full:
            return self.full
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._perm = self._permutation(epoch).to(self.device)
            self._epoch = epoch
        idx = self._perm[k * self.size:(k + 1) * self.size]
        f = self.full
        return Batch(f.m[idx], f.n[idx], f.labels[idx], f.target[idx])


def _run(config: TrainConfig, dataset: ModularDataset, model: HookedMLP,
         history: dict[str, list], snaps: dict[str, list], start: int,
         opt_state: dict | None, meta: dict, out: Path | None, every: int | None,
         progress: bool) -> Checkpoint:
    device = resolve_device(config.device)
    cfg = model.cfg
    params = params_from_model(model, device)
    buffers = buffers_from_model(model, device)
    step = Step(cfg, config.loss, params)
    # The step writes gradients in place; the optimizer reads them there.
    opt = Optimizer(config.optimizer, list(params.values()), list(step.grads.values()),
                    lr=config.lr, betas=config.betas, eps=config.eps,
                    weight_decay=config.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    batches = _Batches(config, dataset, device)
    evaluate = Evaluator(dataset, config.loss, device)
    test_pairs = dataset.test_pairs.to(device)
    tm, tn = test_pairs[:, 0].contiguous(), test_pairs[:, 1].contiguous()
    # Exact reuse: with full batch, no dropout and no BatchNorm, the training forward of step s
    # is the evaluation-mode forward of state s on the training set.
    reuse = batches.is_full and cfg.dropout == 0 and cfg.norm != "batchnorm"
    mask_gen = torch.Generator(device=device) if cfg.dropout > 0 else None
    snap_every = config.snapshot_every

    def checkpoint(at: int) -> Checkpoint:
        load_into_model(model, params, buffers)
        model.eval()
        return Checkpoint(
            model=model, dataset=dataset, train_config=config.to_dict(),
            history={k: list(v) for k, v in history.items()},
            snapshots={k: torch.stack(v) for k, v in snaps.items()},
            step=at, meta=dict(meta), path=out,
            train_state={"version": _TRAIN_STATE_VERSION, "optimizer": opt.state_dict()},
        )

    bar = tqdm(total=config.steps, initial=start, disable=not progress, unit="step",
               dynamic_ncols=True, leave=True)
    try:
        with _catch_signals() as interrupted:
            for s in range(start, config.steps + 1):
                fresh = s > start or start == 0  # state `start` of a resumed run is recorded
                batch = batches(s) if s < config.steps else None
                logits = None
                if reuse and batch is not None:
                    logits = step(params, buffers, batch)  # pure: no state changes
                if fresh and (s % config.eval_every == 0 or s == config.steps):
                    if logits is None:
                        train_logits = eval_logits(cfg, params, buffers, batches.full.m,
                                                   batches.full.n)
                    else:
                        train_logits = logits
                    test_logits = eval_logits(cfg, params, buffers, tm, tn)
                    load_into_model(model, params, buffers)
                    entry = evaluate(s, train_logits, test_logits, params, model)
                    for k in HISTORY_KEYS:
                        history[k].append(entry[k])
                    bar.set_postfix(train=f"{entry['train_acc']:.3f}",
                                    test=f"{entry['test_acc']:.3f}", refresh=False)
                if fresh and snap_every is not None and (s % snap_every == 0
                                                         or s == config.steps):
                    snaps.setdefault("step", []).append(torch.tensor(s))
                    for name in ("U", "V", "W"):
                        t = params[name]
                        snaps.setdefault(name, []).append((t.T if name != "W" else t).cpu()
                                                          .clone().contiguous())
                if batch is None:
                    break
                if interrupted[0]:
                    ckpt = checkpoint(s)
                    if out is not None:
                        save_checkpoint(ckpt, out, overwrite=True)
                    raise TrainingInterrupted(ckpt)
                if every is not None and out is not None and fresh and s > 0 and s % every == 0:
                    save_checkpoint(checkpoint(s), out, overwrite=True)
                if logits is None:
                    if mask_gen is not None:
                        mask_gen.manual_seed(_seed(config.seed, 2, s))
                    step(params, buffers, batch, mask_gen)
                opt.step()
                bar.update(1)
    finally:
        bar.close()
    ckpt = checkpoint(config.steps)
    if out is not None:
        save_checkpoint(ckpt, out, overwrite=True)
    return ckpt


