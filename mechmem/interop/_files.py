"""TransformerLens model files: opened safely when they hold plain data, refused when pickled.

A TransformerLens-style file is a `torch.save`d dict with the model's `state_dict` under "model"
and its config under "config". The state dict may be in either line's names (TransformerLens 4's
`TransformerBridge`, 3.x's `HookedTransformer`): it is converted to the installed line's
(`convert_tl_checkpoint` on 4.x), so files of both lines open on both. Written as plain data
(numbers, strings, None, torch dtypes, lists and dicts: what `save_transformer_lens` writes) it
opens with `torch.load(weights_only=True)`.
TransformerLens's grokking demo pickles the `HookedTransformerConfig` object itself; unpickling an
object can run any code, so such a file is refused unless the caller says it trusts it
(`trust_pickled_code=True`), and even then it may pickle nothing else (`TRUSTED_GLOBALS`: the
config class is rebuilt from its fields, no other code runs). Optional entries: "dataset"
(mechmem's dataset dict: the exact split and labels), or the demo's "train_indices" (indices
into the row-major a * p + b pairs, addition), its "train_losses" / "test_losses" (one per step),
read as the training history, and its "checkpoints" (state_dicts) with "checkpoint_epochs"
(their steps), read as weight snapshots.
"""

import dataclasses
import importlib
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._files import check_destination, write_atomically
from ..checkpoint import (
    Checkpoint,
    _check_plain,
    _read,
    checkpoint_from_payload,
    is_checkpoint_payload,
)
from ..data import DatasetSpec, ModularDataset, all_pairs
from ._adapter import lens_config
from ._lens import (
    build_config,
    build_model,
    is_module_format,
    major_version,
    parameter_names,
    to_model_format,
    transformer_lens,
)

# numpy scalars (TransformerLens's attn_scale is one) rebuild a number from its bytes and dtype
# and run no code, so plain-data files may hold them.
# The reconstructor is read off a scalar's own pickle recipe: numpy moved its module in 2.0.
_NUMPY_SCALARS = [np.float64(0.0).__reduce__()[0], np.dtype, type(np.dtype(np.float64)),
                  type(np.dtype(np.float32)), type(np.dtype(np.int64))]


@dataclass(frozen=True, eq=False)
class TransformerLensRun:
    """A TransformerLens model read from a file, with what the file says about its training.

    Attributes:
        model: the TransformerLens model of the installed line (4.x: a `TransformerBridge`;
            3.x: a `HookedTransformer`), on the CPU, in eval mode.
        dataset: its task and split (from the file's "dataset" or "train_indices"), or None
            where the file records neither.
        history: {"step", "train_loss", "test_loss"} from the file's losses, or empty.
        snapshots: the file's "checkpoints" at its "checkpoint_epochs", in a checkpoint's
            snapshot layout ("step", and each parameter stacked over the snapshots, named as
            in the `TransformerLensModel` that wraps the model: "model." + its state_dict name),
            or empty.
        name: the file's name without its suffix.
        path: where it was read from.
    """

    model: nn.Module
    dataset: ModularDataset | None
    history: Mapping[str, list[float]] = field(default_factory=dict)
    snapshots: Mapping[str, Tensor] = field(default_factory=dict)
    name: str = ""
    path: Path | None = None


def plain_config(cfg: Any) -> dict[str, Any]:
    """A TransformerLens config (4.x's `TransformerBridgeConfig`, 3.x's
    `HookedTransformerConfig`) as plain data: its fields, numpy numbers as Python numbers, the
    dtype by name."""
    if "__dataclass_fields__" in type(cfg).__dict__:  # 3.x; 4.x's subclass adds fields
        items = [(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init]
    else:
        items = [(k, v) for k, v in cfg.to_dict().items() if not k.startswith("_")]
    out: dict[str, Any] = {}
    for name, v in items:
        if isinstance(v, torch.dtype):
            v = str(v).removeprefix("torch.")
        elif isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, tuple):
            v = list(v)
        out[name] = v
    return out


def dataset_from_split(
    train_indices: Tensor, p: int, *, op: str = "add", tokens: str = "equals"
) -> ModularDataset:
    """The dataset of a run trained on the pairs `train_indices` (indices into the row-major
    pairs a * p + b, as TransformerLens's grokking demo draws them), with true labels.

    Args:
        train_indices: the training pairs' indices (any order, no repeats).
        p: the modulus.
        op: the operation (the demo's is "add").
        tokens: the model's token format (the demo's is "equals": a b =).

    Returns:
        A `ModularDataset` whose test set is every other pair.
    """
    idx = torch.as_tensor(train_indices).detach().cpu().to(torch.int64).reshape(-1)
    pairs, labels = all_pairs(op, p)
    n = pairs.shape[0]
    if idx.numel() == 0 or idx.numel() >= n:
        raise ValueError(f"`train_indices` must hold between 1 and {n - 1} of the {n} pairs, "
                         f"got {idx.numel()}.")
    spec = DatasetSpec(op=op, p=p, train_frac=idx.numel() / n, tokens=tokens)
    # from_dict checks the indices; clamping only keeps the label lookup in range until then.
    return ModularDataset.from_dict({"spec": spec.to_dict(), "train_idx": idx,
                                     "train_labels": labels[idx.clamp(0, n - 1)],
                                     "corrupted": torch.zeros(idx.numel(), dtype=torch.bool)})


def save_transformer_lens(
    model: nn.Module, path: str | os.PathLike, *, dataset: ModularDataset | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a TransformerLens model as plain data (its state_dict and `plain_config`), with
    its dataset if given, atomically; `load_transformer_lens` and `mechmem analyze` open it.

    Args:
        model: a TransformerLens `TransformerBridge` (4.x) or `HookedTransformer` (3.x).
        path: the destination file.
        dataset: the model's task and split (its tokens must be the model's format).
        overwrite: replace an existing file.

    Returns:
        The path written.
    """
    path = check_destination(path, overwrite=overwrite, what="model file")
    payload: dict[str, Any] = {
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": plain_config(model.cfg),
    }
    if dataset is not None:
        lens = lens_config(model.cfg, dataset.spec.tokens)
        if lens.p != dataset.p:
            raise ValueError(f"Model p={lens.p} does not match dataset p={dataset.p}.")
        payload["dataset"] = dataset.to_dict()
    _check_plain(payload, "file")
    return write_atomically(path, lambda f: torch.save(payload, f))


def _refusal(path: Path, name: str) -> str:
    return (f"{path}: refused to load: it pickles TransformerLens's {name.rsplit('.', 1)[-1]} "
            "object, and unpickling objects can run any code, so mechmem opens only plain data "
            "(weights_only=True); if you trust the file, open it once with "
            "load_transformer_lens(path, trust_pickled_code=True) (the CLI's "
            "--trust-pickled-code) and re-save it as plain data with save_transformer_lens.")


# What `trust_pickled_code` lets a file hold beyond plain data: TransformerLens's config class,
# under its module path since transformer-lens 3 and the one before (where the grokking demo's
# files name it). That is all a HookedTransformer save pickles besides tensors, torch dtypes and
# numpy scalars (listed from a real transformer-lens 3.9 save). The unpickler stays
# weights_only: it makes the config with `__new__` and sets its fields, and runs no other code.
TRUSTED_GLOBALS = (
    "transformer_lens.config.hooked_transformer_config.HookedTransformerConfig",
    "transformer_lens.HookedTransformerConfig.HookedTransformerConfig",
)


def _trusted(path: Path, name: str) -> list[Any]:
    """The config class, registered under every name in `TRUSTED_GLOBALS`."""
    transformer_lens()  # says how to install it if missing
    for full in TRUSTED_GLOBALS:
        module, _, attr = full.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
        return [(cls, n) for n in TRUSTED_GLOBALS]
    raise ValueError(
        f"{path}: it pickles TransformerLens's {name.rsplit('.', 1)[-1]}, which the installed "
        f"TransformerLens {major_version()}.x no longer has: open it once where "
        "TransformerLens 3.x is installed "
        '(pip install "transformer-lens>=3.9,<4") and re-save it with save_transformer_lens; the '
        "plain-data file opens on both lines.")


def _load(path: Path, allowed: list[Any]) -> Any:
    with warnings.catch_warnings(), torch.serialization.safe_globals(allowed):
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def _refused_global(error: Exception) -> str | None:
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if isinstance(error, pickle.UnpicklingError) and found else None


def read_model_file(path: Path, *, trust_pickled_code: bool = False) -> Any:
    """What `path` holds, read with weights_only (numpy scalars allowed); a file pickling
    TransformerLens's config object only with `trust_pickled_code` (and then nothing else
    beyond plain data). Errors as `load_checkpoint`'s."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file.")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a checkpoint file.")
    try:
        return _load(path, _NUMPY_SCALARS)
    except Exception as e:  # noqa: BLE001  (answered below with the checkpoint reader's sentence)
        name = _refused_global(e)
    if name in TRUSTED_GLOBALS:
        if not trust_pickled_code:
            raise ValueError(_refusal(path, name))
        allowed = _NUMPY_SCALARS + _trusted(path, name)
        try:
            return _load(path, allowed)
        except Exception as e:  # noqa: BLE001
            other = _refused_global(e)
            if other is not None:
                raise ValueError(
                    f"{path}: refused to load, even trusting TransformerLens's pickled config: "
                    f"it also asks for the Python object {other}, which no TransformerLens "
                    "save holds; nothing in it was run.") from None
    return _read(path)  # not readable as plain data: raises its one-sentence error


def is_transformer_lens_payload(obj: Any) -> bool:
    """Whether what a file held looks like a TransformerLens model file."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("model"), Mapping):
        return False
    cfg = obj.get("config")
    return (isinstance(cfg, Mapping) and "d_model" in cfg) or hasattr(cfg, "d_model")


def _config(raw: Any, *, foreign: bool = False) -> Any:
    """The installed line's config from a file's; `foreign`: the file was written by the other
    line, whose extra fields (names, bookkeeping, features these models leave off) are dropped."""
    transformer_lens()
    fields = dict(raw) if isinstance(raw, Mapping) else plain_config(raw)
    if isinstance(fields.get("dtype"), str):
        dtype = getattr(torch, fields["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"config dtype {fields['dtype']!r} is not a torch dtype")
        fields["dtype"] = dtype
    # The weights come from the file: no random init, no reseeding of the global RNGs, CPU.
    fields.update(init_weights=False, seed=None, device="cpu", n_devices=1)
    if major_version() >= 4:
        # 4.x's config drops the fields it does not know (3.x's names and bookkeeping); those
        # that shape the computation are checked against the model by loading its weights.
        return build_config(fields)
    from transformer_lens import HookedTransformerConfig

    known = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    unknown = sorted(set(fields) - known)
    if foreign:
        fields = {k: v for k, v in fields.items() if k in known}
    elif unknown:
        raise ValueError(f"config fields unknown to this transformer-lens: {', '.join(unknown)}")
    return build_config(fields)


def _history(obj: Mapping[str, Any]) -> dict[str, list[float]]:
    train, test = obj.get("train_losses"), obj.get("test_losses")
    if not isinstance(train, list | tuple) or not isinstance(test, list | tuple):
        return {}
    if len(train) != len(test) or not train:
        return {}
    try:
        values = [[float(v) for v in train], [float(v) for v in test]]
    except (TypeError, ValueError):
        return {}
    return {"step": [float(i) for i in range(len(train))], "train_loss": values[0],
            "test_loss": values[1]}


def _snapshots(obj: Mapping[str, Any], model: nn.Module, path: Path) -> dict[str, Tensor]:
    states, steps = obj.get("checkpoints"), obj.get("checkpoint_epochs")
    if states is None and steps is None:
        return {}
    if (not isinstance(states, list | tuple) or not isinstance(steps, list | tuple | Tensor)
            or len(states) != len(steps) or not all(isinstance(s, Mapping) for s in states)):
        raise ValueError(f"{path}: its \"checkpoints\" and \"checkpoint_epochs\" must be lists "
                         "of state_dicts and of steps, of one length.")
    if not states:
        return {}
    out: dict[str, Tensor] = {"step": torch.as_tensor([int(s) for s in steps], dtype=torch.int64)}
    try:  # each in the installed line's names (the demo saves 3.x's)
        states = [to_model_format({k: torch.as_tensor(v) for k, v in s.items()}, model)
                  for s in states]
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: a state_dict of its \"checkpoints\" is no TransformerLens "
                         f"state_dict ({str(e).splitlines()[0]}).") from None
    params = dict(nn.Module.named_parameters(model))
    for key, name in parameter_names(model).items():
        param = params[name]
        try:
            stacked = torch.stack([torch.as_tensor(s[key]).detach().to(param.dtype)
                                   for s in states])
        except (KeyError, RuntimeError):
            raise ValueError(f"{path}: a state_dict of its \"checkpoints\" lacks {key!r} or "
                             f"holds it in another shape than {tuple(param.shape)}.") from None
        if stacked.shape[1:] != param.shape:
            raise ValueError(f"{path}: \"checkpoints\" hold {key!r} of shape "
                             f"{tuple(stacked.shape[1:])}, the model {tuple(param.shape)}.")
        out["model." + name] = stacked
    return out


def run_from_payload(obj: Mapping[str, Any], path: Path, *, op: str = "add") -> TransformerLensRun:
    """The `TransformerLensRun` of what a TransformerLens-style file held."""
    try:
        cfg = _config(obj["config"], foreign=is_module_format(obj["model"]))
        lens = lens_config(cfg)
        model = build_model(cfg)
        model.load_state_dict(to_model_format(obj["model"], model), strict=True)
        model.eval()
        if isinstance(obj.get("dataset"), Mapping):
            dataset = ModularDataset.from_dict(dict(obj["dataset"]))
        elif isinstance(obj.get("train_indices"), Tensor):
            dataset = dataset_from_split(obj["train_indices"], lens.p, op=op, tokens=lens.tokens)
        else:
            dataset = None
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: damaged TransformerLens model file ({first}).") from None
    if dataset is not None and dataset.p != lens.p:
        raise ValueError(f"{path}: dataset p={dataset.p} differs from model p={lens.p}.")
    return TransformerLensRun(model=model, dataset=dataset, history=_history(obj),
                              snapshots=_snapshots(obj, model, path), name=path.stem, path=path)


def load_transformer_lens(
    path: str | os.PathLike, *, trust_pickled_code: bool = False, op: str = "add"
) -> TransformerLensRun:
    """Open a TransformerLens model file (see the module docstring for what it may hold).

    Args:
        path: the file.
        trust_pickled_code: also open a file that pickles TransformerLens's config object (as
            its grokking demo saves it); the file may pickle nothing else (a file that names
            any other Python object is refused). Re-save such files with
            `save_transformer_lens`.
        op: the task's operation where the file gives only "train_indices" (the demo's: "add").

    Returns:
        A `TransformerLensRun`.

    Raises:
        ValueError: a pickled file without `trust_pickled_code`, a file that is no
            TransformerLens model file, or inconsistent contents (one sentence naming the file).

    Example:
        >>> run = load_transformer_lens("grokking.pth")
        >>> mechmem.analyze(run).summary()
    """
    path = Path(path)
    obj = read_model_file(path, trust_pickled_code=trust_pickled_code)
    if not is_transformer_lens_payload(obj):
        raise ValueError(f"{path}: not a TransformerLens model file: it holds no 'model' "
                         "state_dict with a 'config'.")
    return run_from_payload(obj, path, op=op)


def load_any(path: str | os.PathLike, *, trust_pickled_code: bool = False
             ) -> Checkpoint | TransformerLensRun:
    """A mechmem checkpoint or a TransformerLens model file, whichever `path` holds."""
    path = Path(path)
    obj = read_model_file(path, trust_pickled_code=trust_pickled_code)
    if not is_checkpoint_payload(obj) and is_transformer_lens_payload(obj):
        return run_from_payload(obj, path)
    return checkpoint_from_payload(obj, path)
