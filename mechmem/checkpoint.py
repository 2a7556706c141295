"""One-file checkpoints: safe to open (never unpickles code), written atomically.

A checkpoint is a `torch.save`d dict of tensors, plain containers, numbers and strings:

    format: "mechmem.checkpoint", version: 2,
    model_family: "mlp" | "mlp3" | "transformer" (absent in version 1: "mlp"),
    model_config: the family's config fields, weights: the model's state_dict,
    dataset: DatasetSpec fields + exact train indices, trained-on labels, corruption mask,
    train_config: the trainer's settings or None,  step: optimizer steps taken,
    history: {metric: [value per evaluation]},
    snapshots: {"step": (S,), weight name: (S, ...) for each weight matrix},
    train_state: what resuming needs (optimizer state, RNG state) or None,
    meta: {"name": str, "mechmem_version": str, ...}.

See docs/checkpoint.md for every field.
"""

import dataclasses
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._display import checkpoint_html, checkpoint_repr
from ._files import check_destination, write_atomically
from .data import ModularDataset
from .models.families import build_model, family_of, model_config

FORMAT = "mechmem.checkpoint"
# Version 2 records the model family; version 1 files (all "mlp") still load.
VERSION = 2


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A trained (or built) model together with the exact data it saw and how it got there.

    Attributes:
        model: the network (`HookedMLP`, `HookedMLP3` or `HookedTransformer`), in eval mode.
        dataset: the `ModularDataset` it was trained on, split and corruption included.
        train_config: the trainer's settings as a plain dict, or None for a model not trained
            by mechmem (`.config` rebuilds the `TrainConfig`).
        history: metric name -> one value per evaluation (`history["step"]` gives the steps).
        snapshots: {"step": (S,), name: (S, ...)} snapshots of every weight matrix (for
            `HookedMLP`: "U" (S, N, p), "V" (S, N, p), "W" (S, p, N)) taken during training,
            or empty.
        step: optimizer steps taken.
        train_state: optimizer and RNG state for resuming, or None.
        meta: free-form strings and numbers (run name, versions).
        path: where it was loaded from or saved to, if anywhere.
    """

    model: torch.nn.Module
    dataset: ModularDataset
    train_config: dict[str, Any] | None = None
    history: Mapping[str, list[float]] = field(default_factory=dict)
    snapshots: Mapping[str, Tensor] = field(default_factory=dict)
    step: int = 0
    train_state: dict[str, Any] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def config(self) -> Any:
        """The `TrainConfig` of the run, or None for a model not trained by mechmem."""
        if self.train_config is None:
            return None
        from .train.config import TrainConfig

        return TrainConfig.from_dict(self.train_config)

    @property
    def name(self) -> str:
        return str(self.meta.get("name", ""))

    @property
    def family(self) -> str:
        """The model family: "mlp", "mlp3" or "transformer"."""
        return family_of(self.model)

    def __repr__(self) -> str:
        return checkpoint_repr(self)

    def _repr_html_(self) -> str:
        """Jupyter's display: a small table of the headline facts (escaped, no scripts)."""
        return checkpoint_html(self)

    def to_dict(self) -> dict[str, Any]:
        """The plain dict that `save_checkpoint` writes."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_family": family_of(self.model),
            "model_config": self.model.cfg.to_dict(),
            "weights": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "dataset": self.dataset.to_dict(),
            "train_config": self.train_config,
            "step": int(self.step),
            "history": {k: list(v) for k, v in self.history.items()},
            "snapshots": {k: v.detach().cpu() for k, v in self.snapshots.items()},
            "train_state": self.train_state,
            "meta": dict(self.meta),
        }


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(obj: Any, where: str) -> None:
    """Only tensors, numbers, strings, None and lists/tuples/dicts of them may be written, so
    that `weights_only=True` can read everything back."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise TypeError(f"Checkpoint key {k!r} at {where} is not a string or integer.")
            _check_plain(v, f"{where}.{k}")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise TypeError(
            f"Checkpoint field {where} holds a {type(obj).__name__}; only tensors, numbers, "
            "strings, None and lists or dicts of them can be stored."
        )


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `ckpt` to `path` atomically (temporary file in the same folder, then rename).

    Args:
        ckpt: what to write.
        path: the destination `.pt` file.
        overwrite: replace an existing file; without it an existing file is an error.

    Returns:
        The path written.
    """
    if not isinstance(ckpt, Checkpoint):
        raise TypeError(f"`ckpt` must be a Checkpoint, got {type(ckpt).__name__} {ckpt!r:.60}.")
    path = check_destination(path, overwrite=overwrite, what="checkpoint")
    payload = ckpt.to_dict()
    _check_plain(payload, "checkpoint")
    return write_atomically(path, lambda f: torch.save(payload, f))


def _read(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols of foreign files; they get a clear error below.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:  # the pickle asks to import something: the mark of code it would run
            raise ValueError(
                f"{path}: refused to load: it asks for the Python object {found.group(1)}, "
                "beyond tensors and plain containers, and mechmem never unpickles code "
                "(weights_only=True)."
            ) from None
        head = _head(path)
        if head is not None and head != _ZIP_MAGIC and _ZIP_MAGIC.startswith(head):
            # less than the archive's first bytes: torch tried it as a legacy pickle
            raise ValueError(f"{path}: truncated or corrupt checkpoint file ({_first(e)}); "
                             "nothing in it was run.") from None
        raise ValueError(
            f"{path}: not a mechmem checkpoint: its contents are not tensors and plain "
            "containers written by torch.save; nothing in it was run."
        ) from None
    except Exception as e:  # anything else the reader trips on
        if _truncated_or_corrupt(path, e):
            raise ValueError(f"{path}: truncated or corrupt checkpoint file ({_first(e)}); "
                             "nothing in it was run.") from None
        raise ValueError(f"{path}: not a readable checkpoint ({_first(e)}).") from None


# torch.save writes a zip archive; a file that starts as one but cannot be read was cut short
# (a copy that stopped, a full disk) or damaged, whatever error torch's reader gives for it.
_ZIP_MAGIC = b"PK\x03\x04"


def _head(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(len(_ZIP_MAGIC))
    except OSError:
        return None


def _truncated_or_corrupt(path: Path, error: Exception) -> bool:
    if isinstance(error, EOFError | zipfile.BadZipFile):
        return True
    head = _head(path)
    return head is not None and _ZIP_MAGIC.startswith(head)  # the archive's start, or less


def _first(error: Exception) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}"[:160] if first else type(error).__name__


def _describe_foreign(obj: Any) -> str:
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping) and "config" in obj:
        return ("it looks like a TransformerLens model file: open it with "
                "mechmem.interop.load_transformer_lens (mechmem analyze and report take it too)")
    if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        return "it looks like a plain state_dict from another tool, not a mechmem checkpoint"
    return f"it holds a {type(obj).__name__} without mechmem's format marker"


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Open a checkpoint written by mechmem, rebuilding its model and dataset exactly.

    Never runs code from the file: loading uses `torch.load(weights_only=True)`, and anything
    that is not a mechmem checkpoint of a known version is refused with a one-line error.

    Raises:
        FileNotFoundError: no such file.
        ValueError: hostile, truncated, foreign, newer-format or inconsistent file.

    Example:
        >>> ckpt = load_checkpoint("runs/default.pt")
        >>> logits = ckpt.model(ckpt.dataset.test_pairs)
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a checkpoint path (a string or a path), got "
                        f"{type(path).__name__} {path!r:.60}.")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file.")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a checkpoint file.")
    return checkpoint_from_payload(_read(path), path)


def is_checkpoint_payload(obj: Any) -> bool:
    """Whether what a file held carries mechmem's checkpoint format marker."""
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


def checkpoint_from_payload(obj: Any, path: Path) -> Checkpoint:
    """The `Checkpoint` from what `path` held (read safely), checked as `load_checkpoint` does."""
    if not is_checkpoint_payload(obj):
        raise ValueError(f"{path}: not a mechmem checkpoint: {_describe_foreign(obj)}.")
    version = obj.get("version")
    if not isinstance(version, int):
        raise ValueError(f"{path}: checkpoint has no valid format version.")
    if version > VERSION:
        raise ValueError(
            f"{path}: written by a newer mechmem (format version {version}; this version reads "
            f"up to {VERSION}); upgrade mechmem to open it."
        )
    try:
        return _build(obj, path)
    except _Damaged as e:
        raise ValueError(f"{path}: damaged mechmem checkpoint: {e}.") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: damaged mechmem checkpoint ({first}).") from None


class _Damaged(ValueError):
    """A part of a checkpoint that does not fit the rest (its message names the part)."""


def _build(obj: Mapping[str, Any], path: Path) -> Checkpoint:
    family = obj.get("model_family", "mlp") if obj["version"] >= 2 else "mlp"
    if not isinstance(family, str):
        raise ValueError("model_family must be a string")
    model_cfg = model_config(family, obj["model_config"])
    dataset = ModularDataset.from_dict(obj["dataset"])
    if dataset.p != model_cfg.p:
        raise ValueError(f"dataset p={dataset.p} differs from model p={model_cfg.p}")
    if dataset.spec.tokens != "operands":
        raise ValueError(f"dataset tokens {dataset.spec.tokens!r}: mechmem's models read "
                         "'operands'")
    model = build_model(model_cfg)
    model.load_state_dict(obj["weights"], strict=True)
    model.eval()
    history = _history(obj.get("history"))
    snapshots = _snapshots(obj.get("snapshots"), model)
    train_config = _train_config(obj.get("train_config"), model, dataset)
    step = obj.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise _Damaged(f"its step is {step!r}, not a non-negative integer")
    meta = obj.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise _Damaged(f"its meta is a {type(meta).__name__}, not a mapping")
    return Checkpoint(
        model=model,
        dataset=dataset,
        train_config=train_config,
        history=history,
        snapshots=snapshots,
        step=step,
        train_state=_train_state(obj.get("train_state"), model),
        meta=dict(meta),
        path=path,
    )


def _history(history: Any) -> dict[str, list[float]]:
    if history is None:
        return {}
    if not isinstance(history, Mapping):
        raise _Damaged(f"its history is a {type(history).__name__}, not a mapping of metric "
                       "name to values")
    out = {}
    for k, v in history.items():
        # one entry per evaluation: a number (or None), or one per example (a list, or the
        # 1-D tensor that TrainConfig(track_examples=True) records)
        if not isinstance(v, list | tuple) or not all(
                x is None or isinstance(x, int | float | list)
                or (isinstance(x, torch.Tensor) and x.dim() == 1 and x.is_floating_point())
                for x in v):
            raise _Damaged(f"its history[{k!r}] is {_show(v)}, not a list of numbers")
        out[str(k)] = list(v)
    return out


def _snapshots(snapshots: Any, model: torch.nn.Module) -> dict[str, Tensor]:
    if snapshots is None:
        return {}
    if not isinstance(snapshots, Mapping):
        raise _Damaged(f"its snapshots are a {type(snapshots).__name__}, not a mapping of "
                       "weight name to stacked tensor")
    if not snapshots:
        return {}
    steps = snapshots.get("step")
    if not isinstance(steps, Tensor) or steps.ndim != 1 or steps.is_floating_point():
        raise _Damaged(f"its snapshots[\"step\"] is {_show(steps)}, not a 1-d integer tensor")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for k, v in snapshots.items():
        if k == "step":
            continue
        if k not in shapes:  # another per-snapshot record: one row per snapshot
            if not isinstance(v, Tensor) or v.ndim == 0 or len(v) != steps.numel():
                raise _Damaged(f"its snapshots[{k!r}] is {_show(v)}, not a tensor with one row "
                               f"per snapshot ({steps.numel()})")
            continue
        want = (steps.numel(), *shapes[k])
        if not isinstance(v, Tensor) or tuple(v.shape) != want:
            raise _Damaged(f"its snapshots[{k!r}] is {_show(v)}, not a tensor of shape {want} "
                           "(snapshots x the weight's shape)")
    return dict(snapshots)


def _train_config(train_config: Any, model: torch.nn.Module, dataset: ModularDataset
                  ) -> dict[str, Any] | None:
    if train_config is None:
        return None
    if not isinstance(train_config, Mapping):
        raise _Damaged(f"its train_config is a {type(train_config).__name__}, not a mapping")
    from .train.config import TrainConfig  # the trainer's settings: a layer above checkpoints

    try:
        config = TrainConfig.from_dict(dict(train_config))
    except (TypeError, ValueError) as e:
        raise _Damaged(f"its train_config is not valid: {e}") from None
    for what, theirs, ours in (("model", config.model_config().to_dict(), model.cfg.to_dict()),
                               ("dataset", config.dataset_spec().to_dict(),
                                dataset.spec.to_dict())):
        differ = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
        if differ:
            k = differ[0]
            raise _Damaged(f"its train_config gives the {what} {k}={theirs.get(k)!r}, but the "
                           f"{what} stored has {k}={ours.get(k)!r}")
    return dict(train_config)


def _train_state(state: Any, model: torch.nn.Module) -> dict[str, Any] | None:
    if state is None:
        return None
    if not isinstance(state, Mapping):
        raise _Damaged(f"its train_state is {_show(state)}, not a mapping")
    opt = state.get("optimizer")
    if not isinstance(state.get("version"), int):
        raise _Damaged("its train_state lacks an integer version")
    if not isinstance(opt, Mapping):
        raise _Damaged(f"its train_state optimizer is {_show(opt)}, not a mapping")
    # mechmem's optimizer (every family): its kind, step count and moments per parameter
    n = len(list(model.parameters()))
    if not isinstance(opt.get("kind"), str) or isinstance(opt.get("steps"), bool) or (
            not isinstance(opt.get("steps"), int)):
        raise _Damaged("its train_state optimizer lacks its kind or step count")
    for k in ("exp_avg", "exp_avg_sq"):
        v = opt.get(k)
        if not isinstance(v, list) or not all(isinstance(t, Tensor) for t in v) or (
                v and len(v) != n):
            raise _Damaged(f"its train_state optimizer {k} is {_show(v)}, not a list of "
                           f"{n} tensors")
    return dict(state)


def _show(v: Any) -> str:
    if isinstance(v, Tensor):
        return f"a tensor of shape {tuple(v.shape)}"
    return f"a {type(v).__name__} {v!r:.40}" if isinstance(v, str) else f"a {type(v).__name__}"


def replace(ckpt: Checkpoint, **changes: Any) -> Checkpoint:
    """A copy of `ckpt` with some fields changed (a thin `dataclasses.replace`)."""
    return dataclasses.replace(ckpt, **changes)
