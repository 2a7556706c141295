"""The flags that set `TrainConfig` fields, declared once for `mechmem train` and `mechmem sweep`.

`mechmem train` takes one value per flag; `mechmem sweep` takes the same flags, each also as a
comma list or start:stop:count (`--weight-decay 0,5,15,20`, `--train-frac 0.1:0.9:17`).
"""

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import OPERATIONS
from ..models.families import FAMILIES
from ..models.mlp import ACTIVATIONS, NORMS
from ..seeding import SEEDINGS
from ..sweep.grid import parse_values
from ..train.config import DEVICES, LOSSES, OPTIMIZERS


def batch_size(text: str) -> int | str:
    if text == "full":
        return "full"
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be 'full' or a positive integer, got {text!r}")
    return int(text)


def snapshot_every(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (0 for none), got {text!r}")
    return int(text)


def _number(kind: type) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            # argparse's own wording for a bad int or float.
            raise argparse.ArgumentTypeError(
                f"invalid {kind.__name__} value: {text!r}") from None
    convert.__name__ = kind.__name__
    return convert


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(choices)})")
        return text
    return convert


@dataclass(frozen=True)
class Flag:
    """One flag that sets the `TrainConfig` field `dest`."""

    group: str
    dest: str
    convert: Callable[[str], Any]
    help: str = ""
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return "--" + self.dest.replace("_", "-")


def _c(group: str, dest: str, choices: tuple[str, ...], help: str = "") -> Flag:
    return Flag(group, dest, _choice(choices), help, "{" + ",".join(choices) + "}", choices)


FLAGS = (
    _c("task", "op", tuple(OPERATIONS)),
    Flag("task", "p", _number(int), "modulus (default 97)", "P"),
    Flag("task", "train_frac", _number(float), "fraction of all pairs used for training "
         "(default 0.5)", "ALPHA"),
    Flag("task", "corrupt_frac", _number(float), "fraction of training labels replaced at "
         "random (default 0)", "XI"),
    _c("task", "corruption", ("uniform", "exclude_true")),
    _c("model", "model", tuple(FAMILIES), "the network: the paper's 2-layer MLP (default), "
       "its 3-layer MLP or its 1-layer transformer"),
    Flag("model", "width", _number(int), "hidden neurons N (default 500; the transformer's "
         "MLP neurons, default 512)", "N"),
    Flag("model", "d_model", _number(int), "the transformer's residual width (default 128)",
         "D"),
    Flag("model", "n_heads", _number(int), "the transformer's attention heads (default 4)",
         "H"),
    _c("model", "act", ACTIVATIONS, "activation (default quad for mlp, relu for mlp3 and "
       "transformer)"),
    Flag("model", "dropout", _number(float), "dropout probability (default 0)", "RATE"),
    _c("model", "dropout_site", ("pre", "post")),
    _c("model", "norm", NORMS),
    _c("optimization", "loss", LOSSES),
    _c("optimization", "optimizer", OPTIMIZERS),
    Flag("optimization", "lr", _number(float), "learning rate (default 0.01; transformer "
         "0.001)", "LR"),
    Flag("optimization", "weight_decay", _number(float), "weight decay (default 0)", "WD"),
    Flag("optimization", "batch_size", batch_size, "examples per step (default full)",
         "full|N"),
    Flag("optimization", "steps", _number(int), "optimizer steps (default 2000; transformer "
         "3000)", "STEPS"),
    Flag("optimization", "seed", _number(int), "seeds data, init, batches, dropout "
         "(default 0)", "SEED"),
    _c("optimization", "seeding", SEEDINGS, "mechmem's own random streams (default), the "
       "paper notebook's or the paper scripts': with --seed 0, the authors' exact split, "
       "labels, init and batch order"),
    Flag("recording and output", "eval_every", _number(int), "history interval in steps "
         "(default 20)", "K"),
    Flag("recording and output", "snapshot_every", snapshot_every, "store U, V, W every K "
         "steps, 0 for none (default 200)", "K"),
    _c("recording and output", "device", DEVICES),
)
FIELDS = tuple(f.dest for f in FLAGS) + ("bias", "name", "track_examples")


def add_config_flags(parser: argparse.ArgumentParser, *, lists: bool) -> dict[str, Any]:
    """Add every config flag to `parser` in its groups; with `lists`, each flag takes a comma
    list or start:stop:count (parsed to a tuple of values). Returns the groups by name."""
    groups: dict[str, Any] = {}
    for g in ("task", "model", "optimization", "recording and output"):
        groups[g] = parser.add_argument_group(g)
    for f in FLAGS:
        kwargs: dict[str, Any] = {"help": f.help or None, "metavar": f.metavar}
        if lists:
            kwargs["type"] = _values(f.convert)
            if f.metavar:
                kwargs["metavar"] = f"{f.metavar}[,...]" if not f.choices else f.metavar
        else:
            kwargs["type"] = f.convert
        groups[f.group].add_argument(f.name, dest=f.dest, **kwargs)
    groups["model"].add_argument("--bias", action="store_true", default=None,
                                 help="biases on every layer")
    if not lists:  # a single run's record; sweeps keep one summary per cell
        groups["recording and output"].add_argument(
            "--track-examples", action="store_true", default=None,
            help="record every training example's margin at each evaluation")
    return groups


def _values(convert: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return parse_values(text, convert)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def add_threads_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--threads N`: torch's CPU thread count for this command (default 1, see _threads)."""
    parser.add_argument("--threads", type=_positive, metavar="N",
                        help="CPU threads for torch (default 1, or MECHMEM_THREADS: more "
                             "threads on a busy machine make it much slower; docs/training.md)")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def default_path(folder: str, stem: str, suffix: str = "") -> Path:
    """folder/stem+suffix in the current directory, the stem made safe for a file name and
    the folder created."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "run"
    Path(folder).mkdir(exist_ok=True)
    return Path(folder) / f"{stem}{suffix}"


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the user set (flags left out are absent)."""
    out = {f: getattr(args, f) for f in FIELDS if getattr(args, f, None) is not None}
    if "snapshot_every" in out:  # the flag's 0 is the config's None (no snapshots)
        v = out["snapshot_every"]
        out["snapshot_every"] = tuple(x or None for x in v) if isinstance(v, tuple) else (
            v or None)
    return out
