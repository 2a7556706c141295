"""`SweepConfig`: a base `TrainConfig` plus axes, and the grid of cells it spans."""

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._check import check_fields
from ..train.config import TrainConfig

# Fields an axis may not sweep: they name or place the run, they do not change it (a sweep's
# cells record no per-example margins).
_NOT_AXES = ("name", "device", "track_examples")
AXIS_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in _NOT_AXES)
# More cells than a sweep can sensibly hold (the paper's largest grid has a few hundred):
# refused with the count before any is validated (100,000 validate in about 7 s on a CPU core).
MAX_CELLS = 100_000
# Fields that pick the panels of a phase diagram, in order of preference.
_PANEL_PREFERENCE = ("weight_decay", "dropout", "batch_size", "norm", "op", "lr", "width", "seed")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# Fields that did not exist before the model families, left out of the 2-layer MLP's cell ids
# so that sweeps started before them keep their ids (and resume).
_MLP_ONLY_ABSENT = ("model", "d_model", "n_heads")


def cell_id(config: TrainConfig) -> str:
    """A stable identity of a run: a hash of every setting that changes its result."""
    skip = _NOT_AXES + (_MLP_ONLY_ABSENT if config.model == "mlp" else ())
    d = {k: _plain(v) for k, v in config.to_dict().items() if k not in skip}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepConfig:
    """A grid of training runs: every combination of the axes' values over a base config.

    Attributes:
        base: the settings every cell starts from.
        axes: (field, values) pairs; any `TrainConfig` field but name and device. The cells are
            the product of the axes, the last axis varying fastest.
        paper_minibatch_rule: give each cell with an integer batch size the paper's scaling
            from the base (steps x 256/bs, lr x sqrt(bs/256)); full-batch cells are unchanged.
        name: free text stored with the sweep.
        chunk_size: at most this many runs train together (default: as many as fit in memory).

    Example:
        >>> sc = SweepConfig(TrainConfig(p=31, width=64, steps=300),
        ...                  axes=(("weight_decay", (0.0, 5.0)), ("corrupt_frac", (0.1, 0.5))))
        >>> len(sc.cells())
        4
    """

    base: TrainConfig = TrainConfig()
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    paper_minibatch_rule: bool = False
    name: str = ""
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.base, TrainConfig):
            raise TypeError(f"`base` must be a TrainConfig, got {type(self.base).__name__}.")
        check_fields(self, skip=("axes",))
        if isinstance(self.axes, str | bytes) or not isinstance(self.axes, Sequence):
            raise TypeError(f"`axes` must be a sequence of (field, values) pairs, got "
                            f"{type(self.axes).__name__} {self.axes!r:.60}.")
        if self.base.track_examples:
            raise ValueError("A sweep keeps one record per cell, not per-example margins: "
                             "`track_examples` applies to single runs (mechmem.train).")
        axes = []
        for item in self.axes:
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise ValueError(f"Each axis is a (field, values) pair, got {item!r}.")
            field, values = item
            if not isinstance(field, str) or field not in AXIS_FIELDS:
                raise ValueError(
                    f"Unknown sweep axis {field!r}; an axis is a TrainConfig field: "
                    f"{', '.join(AXIS_FIELDS)}.")
            if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
                raise ValueError(f"Axis {field!r} needs a non-empty list of values, got "
                                 f"{values!r}.")
            values = tuple(tuple(v) if isinstance(v, list) else v for v in values)
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"Axis {field!r} repeats a value: {list(values)}.")
            axes.append((field, values))
        names = [f for f, _ in axes]
        if len(set(names)) != len(names):
            raise ValueError(f"An axis appears twice: {names}.")
        object.__setattr__(self, "axes", tuple(axes))
        n = self.n_cells
        if n > MAX_CELLS:
            sizes = " x ".join(str(len(v)) for _, v in axes)
            raise ValueError(f"The grid has {n:,} cells ({sizes}), more than a sweep takes (at "
                             f"most {MAX_CELLS:,}); use fewer axis values.")
        if self.chunk_size is not None and (
            isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int)
            or self.chunk_size < 1
        ):
            raise ValueError(f"`chunk_size` must be a positive integer, got {self.chunk_size!r}.")
        self.cells()  # every cell must be a valid run: refused here, before any training

    @property
    def n_cells(self) -> int:
        """How many cells the grid has (counted, not built)."""
        return math.prod(len(v) for _, v in self.axes)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(f for f, _ in self.axes)

    def settings(self) -> list[dict[str, Any]]:
        """The axis values of every cell, in grid order."""
        names = self.axis_names
        return [dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(v for _, v in self.axes))]

    def cells(self) -> list[TrainConfig]:
        """The run of every cell, in grid order (each validated as a `TrainConfig`).

        Raises:
            ValueError: naming the first cell that is not a valid run and why.
        """
        out = []
        for k, s in enumerate(self.settings()):
            try:
                cell = self.base.replace(**s)
                if self.paper_minibatch_rule and cell.batch_size != "full":
                    cell = cell.with_paper_minibatch_rule(cell.batch_size)
            except (ValueError, TypeError) as e:
                where = ", ".join(f"{k}={v!r}" for k, v in s.items())
                raise ValueError(f"Sweep cell {where}: {e} (cell {k + 1} of {self.n_cells})"
                                 ) from None
            out.append(cell)
        return out

    def panel_axis(self) -> str | None:
        """The axis a phase diagram draws one panel per value of (None: a single panel)."""
        names = [f for f in self.axis_names if f not in ("train_frac", "corrupt_frac")]
        for f in _PANEL_PREFERENCE:
            if f in names:
                return f
        return names[0] if names else None

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (as written to sweep.json)."""
        return {
            "base": self.base.to_dict(),
            "axes": [[f, [_plain(v) for v in values]] for f, values in self.axes],
            "paper_minibatch_rule": self.paper_minibatch_rule,
            "name": self.name,
            "chunk_size": self.chunk_size,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SweepConfig":
        """Rebuild a config written by `to_dict`."""
        if not isinstance(d, Mapping) or not all(isinstance(k, str) for k in d):
            raise TypeError(f"A SweepConfig is rebuilt from a mapping of field names, got "
                            f"{type(d).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown SweepConfig fields {unknown}; written by a newer mechmem?")
        d = dict(d)
        d["base"] = TrainConfig.from_dict(d.get("base", {}))
        axes = d.get("axes", ())
        if not isinstance(axes, list | tuple) or not all(
                isinstance(a, list | tuple) and len(a) == 2 and isinstance(a[1], list | tuple)
                for a in axes):
            raise ValueError(f"`axes` must be a list of [field, values] pairs, got {axes!r:.60}.")
        d["axes"] = tuple((f, tuple(tuple(v) if isinstance(v, list) else v for v in values))
                          for f, values in axes)
        return cls(**d)
