"""`TrainConfig`: every setting that determines a training run, with the paper's defaults."""

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._check import check_fields
from ..data import MAX_SEED, DatasetSpec
from ..losses import LOSSES as LOSSES
from ..models.families import FAMILIES, ModelConfig, check_family, model_config
from ..seeding import check_seeding

Loss = Literal["mse", "ce"]
Optimizer = Literal["adamw", "adam", "sgd"]
Device = Literal["auto", "cpu", "cuda"]

OPTIMIZERS = ("adamw", "adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")

# The batch size the paper's minibatch rule is anchored at (PAPER.md: "batch 256 for 2000 steps").
PAPER_REFERENCE_BATCH = 256

# The optimization defaults of each family (PAPER.md: the MLP's App. A, 2000 steps at lr 0.01; the
# transformer's Sec. 2.2, 3000 steps at lr 1e-3). The 3-layer MLP: the paper gives no settings;
# a halved lr was measured to train it (docs/training.md), where lr 0.01 stalls.
_OPTIM_DEFAULTS = {"mlp": {"lr": 0.01, "steps": 2000}, "mlp3": {"lr": 0.005, "steps": 2000},
                   "transformer": {"lr": 1e-3, "steps": 3000}}


def _family_defaults() -> dict[str, dict[str, Any]]:
    """Each family's defaults for the fields left None: the model's from its config class (one
    place for them), the optimizer's from `_OPTIM_DEFAULTS`."""
    out = {}
    for family, (config_cls, _) in FAMILIES.items():
        cfg = config_cls()
        fields: dict[str, Any] = {"width": cfg.width, "act": cfg.act, "init": cfg.init}
        if family == "transformer":
            fields |= {"d_model": cfg.d_model, "n_heads": cfg.n_heads}
        out[family] = fields | _OPTIM_DEFAULTS[family]
    return out


FAMILY_DEFAULTS: dict[str, dict[str, Any]] = _family_defaults()
_TRANSFORMER_ONLY = ("d_model", "n_heads")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run: same config, same seed, same result (on CPU).

    Defaults are the paper's (Doshi et al. 2024, App. A): addition mod 97, half the pairs for
    training, no corruption, width 500, x^2, full-batch AdamW lr 0.01, MSE, 2000 steps.

    The fields `width`, `act`, `init`, `lr`, `steps`, `d_model` and `n_heads` default to None,
    which means "the model family's default" (`FAMILY_DEFAULTS`): a config always holds the
    resolved values, so `to_dict` and checkpoints store concrete numbers. `replace(model=...)`
    re-derives the family defaults of those fields unless they are given too.

    Attributes:
        op, p, train_frac, corrupt_frac, corruption: the task (see `mechmem.DatasetSpec`).
        model: the network: "mlp" (the paper's 2-layer MLP, `mechmem.MLPConfig`), "mlp3" (its
            3-layer MLP, `MLP3Config`) or "transformer" (its 1-layer transformer,
            `TransformerConfig`; `width` is its d_mlp).
        width, act, bias, dropout, dropout_site, norm, init, init_scale: the model's settings
            (see its config class; the transformer takes norm "none" or "layernorm").
        d_model, n_heads: the transformer's residual width and heads (None for the MLPs).
        loss: "mse" against one-hot targets (mean over examples and classes) or "ce".
        optimizer: "adamw" (decoupled weight decay), "adam" (L2 added to the gradient) or
            "sgd" (plain, no momentum).
        lr, betas, eps: optimizer settings (betas and eps are unused by sgd).
        weight_decay: the regularization strength; the paper's panels use 0, 5, 15, 20.
        batch_size: "full" (the whole training set every step) or an example count; minibatches
            walk a fresh seeded permutation each epoch. See `with_paper_minibatch_rule`.
        steps: optimizer steps.
        seed: seeds the split, the corruption, the init, the minibatch order and dropout.
        seeding: how `seed` becomes random draws: "mechmem" (its own seeded generators) or
            "paper" (the random calls of the authors' notebook: with seed 0, their exact split,
            corrupted labels, initial weights and CPU minibatch order) or "scripts" (those of
            their phase-diagram scripts); see `mechmem.seeding`.
        eval_every: record `history` every this many steps (and at step 0 and the end).
        snapshot_every: store U, V, W every this many steps (and at step 0 and the end), or None
            for no snapshots.
        track_examples: record each training example's margins at every evaluation (history
            keys "example_margin" and "example_true_margin", one (train,) tensor per evaluation;
            read by `mechmem.analysis.example_dynamics`).
        name: free text stored with the checkpoint.
        device: "auto" picks CUDA when available, else the CPU.
    """

    op: str = "add"
    p: int = 97
    train_frac: float = 0.5
    corrupt_frac: float = 0.0
    corruption: str = "uniform"
    model: str = "mlp"
    width: int | None = None
    act: str | None = None
    bias: bool = False
    dropout: float = 0.0
    dropout_site: str = "pre"  # the paper's code drops pre-activations
    norm: str = "none"
    init: str | None = None
    init_scale: float = 1.0
    d_model: int | None = None
    n_heads: int | None = None
    loss: Loss = "mse"
    optimizer: Optimizer = "adamw"
    lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.0
    batch_size: int | Literal["full"] = "full"
    steps: int | None = None
    seed: int = 0
    seeding: str = "mechmem"
    # An evaluation (test forward, metrics, IPR) costs ~9 ms, about 0.7 steps at the defaults:
    # every 20 steps keeps history under 5% of the run (benchmarks/bench_train_speed.py).
    eval_every: int = 20
    snapshot_every: int | None = 200  # 11 snapshots, ~6 MB at width 500
    # 8 bytes per training example per evaluation: ~3.8 MB for the paper's 2000 steps.
    track_examples: bool = False
    name: str = ""
    device: Device = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):  # as JSON and YAML give it
            object.__setattr__(self, "betas", tuple(self.betas))
        check_fields(self)
        check_family(self.model)
        for field, value in FAMILY_DEFAULTS[self.model].items():
            if getattr(self, field) is None:
                object.__setattr__(self, field, value)
        if self.model != "transformer":
            for field in _TRANSFORMER_ONLY:
                if getattr(self, field) is not None:
                    raise ValueError(f"`{field}` applies to the transformer only (model="
                                     f"'transformer'), not to model={self.model!r}.")
        else:
            if self.dropout_site != "pre":
                raise ValueError("The transformer drops its attention and MLP outputs: "
                                 "`dropout_site` applies to the MLPs only.")
        if self.model != "mlp" and self.seeding != "mechmem":
            raise ValueError(f"seeding={self.seeding!r} replays the authors' MLP code; "
                             f"model={self.model!r} takes seeding='mechmem'.")
        # Building the parts validates their fields with their own messages.
        self.dataset_spec()
        self.model_config()
        if self.loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {', '.join(LOSSES)}, got {self.loss!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"`optimizer` must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}."
            )
        check_seeding(self.seeding)
        if self.device not in DEVICES:
            raise ValueError(f"`device` must be one of {', '.join(DEVICES)}, got {self.device!r}.")
        for field in ("lr", "eps", "weight_decay"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"`{field}` must be a number, got {value!r}.")
            if not math.isfinite(value) or value < 0 or (field != "weight_decay" and value == 0):
                bound = ">= 0" if field == "weight_decay" else "> 0"
                raise ValueError(f"`{field}` must be finite and {bound}, got {value!r}.")
        betas = self.betas
        if (
            not isinstance(betas, tuple | list)
            or len(betas) != 2
            or not all(isinstance(b, int | float) and 0.0 <= b < 1.0 for b in betas)
        ):
            raise ValueError(f"`betas` must be two numbers in [0, 1), got {betas!r}.")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        if self.batch_size != "full" and not (_is_int(self.batch_size) and self.batch_size >= 1):
            raise ValueError(
                f"`batch_size` must be 'full' or a positive integer, got {self.batch_size!r}."
            )
        if not _is_int(self.steps) or self.steps < 0:
            raise ValueError(f"`steps` must be a non-negative integer, got {self.steps!r}.")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"`seed` must be an integer in [0, {MAX_SEED}], got {self.seed!r}.")
        if not _is_int(self.eval_every) or self.eval_every < 1:
            raise ValueError(f"`eval_every` must be a positive integer, got {self.eval_every!r}.")
        if self.snapshot_every is not None and (
            not _is_int(self.snapshot_every) or self.snapshot_every < 1
        ):
            raise ValueError(
                f"`snapshot_every` must be a positive integer or None (no snapshots), "
                f"got {self.snapshot_every!r}."
            )
        if not isinstance(self.track_examples, bool):
            raise ValueError(f"`track_examples` must be True or False, got "
                             f"{self.track_examples!r}.")
        if not isinstance(self.name, str):
            raise ValueError(f"`name` must be a string, got {self.name!r}.")

    def dataset_spec(self) -> DatasetSpec:
        """The `DatasetSpec` of the run (seeded by `seed`)."""
        return DatasetSpec(
            op=self.op,
            p=self.p,
            train_frac=self.train_frac,
            corrupt_frac=self.corrupt_frac,
            seed=self.seed,
            corruption=self.corruption,
            seeding=self.seeding,
        )

    def model_config(self) -> ModelConfig:
        """The model config of the run: an `MLPConfig`, `MLP3Config` or `TransformerConfig`."""
        shared = {"p": self.p, "act": self.act, "bias": self.bias, "dropout": self.dropout,
                  "norm": self.norm, "init": self.init, "init_scale": self.init_scale}
        if self.model == "transformer":
            return model_config(self.model, shared | {
                "d_model": self.d_model, "n_heads": self.n_heads, "d_mlp": self.width})
        return model_config(self.model, shared | {"width": self.width,
                                                  "dropout_site": self.dropout_site})

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed (validated again). Changing `model` re-derives the
        family defaults (width, act, init, lr, steps, d_model, n_heads) not given with it."""
        if "model" in changes and changes["model"] != self.model:
            family_fields = {f for d in FAMILY_DEFAULTS.values() for f in d}
            changes = {f: None for f in family_fields} | changes
        return dataclasses.replace(self, **changes)

    def with_paper_minibatch_rule(self, batch_size: int) -> "TrainConfig":
        """The paper's minibatch scaling: steps x 256/bs and lr x sqrt(bs/256), from this config.

        Args:
            batch_size: the new batch size.

        Returns:
            A copy with `batch_size`, `steps` and `lr` scaled (steps rounded to an integer).

        Example:
            >>> TrainConfig().with_paper_minibatch_rule(64).steps, TrainConfig(
            ...     ).with_paper_minibatch_rule(64).lr
            (8000, 0.005)
        """
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        ratio = PAPER_REFERENCE_BATCH / batch_size
        return self.replace(
            batch_size=batch_size,
            steps=max(1, round(self.steps * ratio)),
            lr=self.lr / math.sqrt(ratio),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only, as stored in checkpoints."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        if not self.track_examples:
            # Left out when off, so that configs, checkpoints and sweep cell ids written before
            # the field existed stay the same.
            del d["track_examples"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild a config stored by `to_dict`; unknown fields are an error."""
        if not isinstance(d, Mapping) or not all(isinstance(k, str) for k in d):
            raise TypeError(f"A TrainConfig is rebuilt from a mapping of field names, got "
                            f"{type(d).__name__} {d!r:.60}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown TrainConfig fields {unknown}; written by a newer mechmem?")
        d = dict(d)
        if "betas" in d and isinstance(d["betas"], list):
            d["betas"] = tuple(d["betas"])
        return cls(**d)
