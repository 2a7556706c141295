"""`memorization`: K models on random halves of a training set, in stacked chunks, resumable."""

import json
import os
from pathlib import Path
from typing import Any

import torch

from .._files import write_atomically
from .._progress import progress_bar
from ..data import make_dataset
from ..metrics import predict
from ..train.config import TrainConfig
from ..train.group import resolve_device
from ..train.memory import check_fits, models_per_chunk
from ._result import MemorizationResult
from ._subsets import train_subsets

FORMAT = "mechmem.memorization"
HEADER = "memorization.json"


def memorization(
    config: TrainConfig | None = None,
    *,
    models: int = 64,
    subset: float = 0.5,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    chunk: int | None = None,
    progress: bool = False,
) -> MemorizationResult:
    """Counterfactual memorization (Feldman and Zhang 2020) of every training example of
    `config`'s run: K models of the same config, each trained on an independent random half of
    its training set, many at a time through the trainer's stacked groups.

    Args:
        config: the run (its dataset is the one halved); None means the paper's defaults.
        models: K, at least 2 (64 gives each example about 32 models in and 32 out).
        subset: the fraction of the training set each model trains on (Feldman and Zhang's
            halves by default; they also used 0.7). The models must still generalize on that
            fraction for the held-out predictions to mean anything.
        out: a folder keeping each finished chunk of models, so that an interrupted run
            resumes; None keeps everything in memory.
        resume: continue the run in `out`, training only its missing chunks.
        overwrite: replace a run already in `out`.
        chunk: models trained together (default: as many as fit in memory, at most K).
        progress: a progress bar over model-steps.

    Returns:
        A `MemorizationResult`.

    Example:
        >>> res = memorization(TrainConfig(p=31, width=128, corrupt_frac=0.3, steps=500),
        ...                    models=64)
        >>> res.score[res.dataset.mislabelled].mean()
    """
    config = TrainConfig() if config is None else config
    if isinstance(models, bool) or not isinstance(models, int) or models < 2:
        raise ValueError(f"`models` must be an integer >= 2 (models in and out of each "
                         f"example's subset), got {models!r}.")
    if isinstance(subset, bool) or not isinstance(subset, int | float) or not 0 < subset < 1:
        raise ValueError(f"`subset` must be a fraction in (0, 1), got {subset!r}.")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int)
                              or chunk < 1):
        raise ValueError(f"`chunk` must be a positive integer, got {chunk!r}.")
    check_fits([config])
    device = resolve_device(config.device)
    dataset = make_dataset(config.dataset_spec())
    size = chunk or min(models, models_per_chunk(config, device))
    header: dict[str, Any] = {"format": FORMAT, "version": 1, "config": config.to_dict(),
                              "models": models, "subset": float(subset), "chunk": size}
    folder = None if out is None else _open_folder(Path(out), header, resume, overwrite)
    if folder is not None:
        size = json.loads((folder / HEADER).read_text())["chunk"]
    starts = list(range(0, models, size))
    n, p = dataset.n_train, dataset.p
    in_subset = torch.zeros(models, n, dtype=torch.bool)
    prediction = torch.zeros(models, n, dtype=torch.long)
    logit_sum = torch.zeros(n, p, dtype=torch.float64)
    bar = progress_bar(total=models * config.steps, disable=not progress, unit="model-step",
                       dynamic_ncols=True, leave=True)
    inputs = dataset.model_inputs(dataset.train_pairs)
    try:
        for start in starts:
            ks = list(range(start, min(models, start + size)))
            part = None if folder is None else _read_chunk(folder, start, ks)
            if part is None:
                masks, nets = train_subsets(config, dataset, ks, fraction=subset,
                                            device=device, on_step=bar.update)
                logits = []
                with torch.no_grad():
                    for net in nets:
                        logits.append(net(inputs).double())
                logits_t = torch.stack(logits)  # (chunk, train, p)
                part = {"models": ks, "in": masks, "prediction": predict(logits_t),
                        "out_logit_sum": (logits_t * (~masks)[..., None]).sum(0)}
                if folder is not None:
                    _write_chunk(folder, start, part)
            else:
                bar.update(len(ks) * config.steps)
            in_subset[ks] = part["in"]
            prediction[ks] = part["prediction"]
            logit_sum += part["out_logit_sum"]
    finally:
        bar.close()
    n_out = (~in_subset).sum(0)
    out_logits = logit_sum / n_out[:, None].clamp_min(1)
    out_logits[n_out == 0] = torch.nan
    return MemorizationResult(config=config, dataset=dataset, models=models, subset=subset,
                              in_subset=in_subset, prediction=prediction,
                              out_logits=out_logits, path=folder)


def _open_folder(folder: Path, header: dict[str, Any], resume: bool, overwrite: bool) -> Path:
    """The run's folder, created or checked: a resumed run must be the same run."""
    path = folder / HEADER
    if path.exists():
        old = json.loads(path.read_text())
        if resume:
            mine = {k: v for k, v in header.items() if k != "chunk"}
            theirs = {k: v for k, v in old.items() if k != "chunk"}
            if mine != theirs:
                raise ValueError(f"{folder} holds a different memorization run (config or "
                                 "model count differ): resume it with its own settings, or "
                                 "pass overwrite=True (--force) to replace it.")
            return folder
        if not overwrite:
            raise FileExistsError(f"{folder} already holds a memorization run; pass "
                                  "resume=True (--resume) to continue it or overwrite=True "
                                  "(--force) to replace it.")
        for f in folder.glob("chunk-*.pt"):
            f.unlink()
    elif resume:
        raise FileNotFoundError(f"{folder} holds no memorization run to resume "
                                f"(no {HEADER}).")
    elif folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} exists and is not a memorization run folder; choose "
                              "an empty or new folder.")
    folder.mkdir(exist_ok=True)
    write_atomically(path, lambda f: f.write(json.dumps(header, indent=1).encode()))
    return folder


def _chunk_path(folder: Path, start: int) -> Path:
    return folder / f"chunk-{start:05d}.pt"


def _read_chunk(folder: Path, start: int, ks: list[int]) -> dict[str, Any] | None:
    path = _chunk_path(folder, start)
    if not path.exists():
        return None
    part = torch.load(path, weights_only=True)
    if part.get("models") != ks:
        raise ValueError(f"{path} holds models {part.get('models')}, expected {ks}: the "
                         "folder is damaged; pass overwrite=True (--force) to start again.")
    return part


def _write_chunk(folder: Path, start: int, part: dict[str, Any]) -> None:
    write_atomically(_chunk_path(folder, start), lambda f: torch.save(part, f))
