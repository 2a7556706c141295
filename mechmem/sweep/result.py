"""`SweepResult`: the cells of a sweep folder, looked up by settings, laid out as grids."""

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._display import sweep_html
from ..checkpoint import Checkpoint
from ..data import make_dataset
from ..models.families import build_model
from ..train.config import TrainConfig
from .config import SweepConfig
from .folder import load_weights, read_cells, read_grid

# What a grid can show: the phase, an accuracy, a loss, the mean IPR, the test-accuracy peak.
GRID_METRICS = ("phase", "train", "test", "clean_train", "corrupted_memorized", "corrupted_true",
                "train_loss", "test_loss", "ipr", "test_acc_peak")


def _value(cell: Mapping[str, Any], metric: str) -> Any:
    if metric == "phase":
        return cell["phase"]
    if metric in ("train_loss", "test_loss"):
        v = cell["loss"][metric[:-5]]
    elif metric == "ipr":
        v = cell["ipr"]["mean"]
    elif metric == "test_acc_peak":
        v = cell["test_acc_peak"]
    else:
        v = cell["accuracy"][metric]
    return math.nan if v is None else float(v)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b or (isinstance(a, list | tuple) and list(a) == list(b))


@dataclass(frozen=True, eq=False)
class Grid:
    """One metric of a sweep laid out for plotting: panels x rows (y) x columns (x).

    Attributes:
        metric: what `values` holds (see `GRID_METRICS`).
        x, y, panel: the axes along columns, rows and panels (panel None: one panel).
        x_values, y_values, panel_values: their values in order (panel_values is (None,) for
            one panel).
        values: (panels, len(y_values), len(x_values)); phases as str (None for a missing
            cell), numbers as float (NaN for a missing cell).
        ids: the cell id at each position ("" for a missing cell).
    """

    metric: str
    x: str
    y: str
    panel: str | None
    x_values: tuple[Any, ...]
    y_values: tuple[Any, ...]
    panel_values: tuple[Any, ...]
    values: np.ndarray
    ids: np.ndarray


@dataclass(frozen=True, eq=False)
class SweepResult:
    """A sweep folder, read: its config, its finished cells and where their weights are.

    Attributes:
        path: the folder.
        config: the `SweepConfig` it was run with.
        cells: the finished cells, in grid order (plain JSON objects; see docs/sweeps.md).
        n_cells: how many cells the grid has (finished or not).
        header: the contents of sweep.json.
    """

    path: Path
    config: SweepConfig
    cells: tuple[dict[str, Any], ...]
    n_cells: int
    header: dict[str, Any]

    @property
    def complete(self) -> bool:
        return len(self.cells) == self.n_cells

    def phase_counts(self) -> dict[str, int]:
        """How many finished cells ended in each phase, most frequent first."""
        counts: dict[str, int] = {}
        for c in self.cells:
            counts[c["phase"]] = counts.get(c["phase"], 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.phase_counts().items())
        return (f"SweepResult({str(self.path)!r}: {len(self.cells)}/{self.n_cells} cells"
                f"{'; ' + counts if counts else ''})")

    def _repr_html_(self) -> str:
        """Jupyter's display: a small table of the sweep (escaped, no scripts)."""
        return sweep_html(self)

    def find(self, **settings: Any) -> list[dict[str, Any]]:
        """Every finished cell whose config has these settings (TrainConfig field=value)."""
        known = set(self.config.base.to_dict())
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"Unknown setting(s) {unknown}; settings are TrainConfig fields.")
        return [c for c in self.cells
                if all(_same(c["config"][k], v) for k, v in settings.items())]

    def cell(self, **settings: Any) -> dict[str, Any]:
        """The one finished cell with these settings.

        Example:
            >>> result.cell(train_frac=0.5, corrupt_frac=0.3, weight_decay=5.0)["phase"]
            'partial_inversion'
        """
        found = self.find(**settings)
        if len(found) == 1:
            return found[0]
        where = ", ".join(f"{k}={v!r}" for k, v in settings.items()) or "no settings"
        if not found:
            raise KeyError(f"No finished cell has {where}.")
        varying = [f for f in self.config.axis_names if f not in settings and
                   len({repr(c["config"][f]) for c in found}) > 1]
        raise ValueError(f"{len(found)} cells have {where}; name {', '.join(varying)} too.")

    def grid(self, metric: str = "phase", *, x: str = "train_frac", y: str = "corrupt_frac",
             panel: str | None = "auto", **fixed: Any) -> Grid:
        """`metric` of every cell laid out on x (columns), y (rows) and panels.

        Args:
            metric: one of `GRID_METRICS`.
            x, y: axes along columns and rows.
            panel: the axis with one panel per value; "auto" picks the regularization axis
                (`SweepConfig.panel_axis`), None draws one panel.
            **fixed: values for the other axes, where they have more than one.

        Returns:
            A `Grid`.
        """
        if metric not in GRID_METRICS:
            raise ValueError(f"Unknown grid metric {metric!r}; choose one of "
                             f"{', '.join(GRID_METRICS)}.")
        if panel == "auto":
            panel = self.config.panel_axis()
        axes = dict(self.config.axes)
        base = self.config.base.to_dict()

        def values_of(name: str | None) -> tuple[Any, ...]:
            if name is None:
                return (None,)
            if name not in base:
                raise ValueError(f"Unknown axis {name!r}; axes are TrainConfig fields.")
            return tuple(axes.get(name, (base[name],)))

        xs, ys, ps = values_of(x), values_of(y), values_of(panel)
        free = [f for f, v in axes.items() if f not in (x, y, panel) and f not in fixed
                and len(v) > 1]
        if free:
            raise ValueError(f"The sweep also varies {', '.join(free)}: pass a value for each "
                             f"(for example {free[0]}={axes[free[0]][0]!r}).")
        shape = (len(ps), len(ys), len(xs))
        numeric = metric != "phase"
        values = np.full(shape, np.nan if numeric else None, dtype=float if numeric else object)
        ids = np.full(shape, "", dtype=object)
        cells = self.find(**fixed) if fixed else list(self.cells)
        for c in cells:
            cfg = c["config"]
            try:
                k = 0 if panel is None else _index(ps, cfg[panel])
                j, i = _index(ys, cfg[y]), _index(xs, cfg[x])
            except LookupError:
                continue
            values[k, j, i] = _value(c, metric)
            ids[k, j, i] = c["id"]
        return Grid(metric, x, y, panel, xs, ys, ps, values, ids)

    def phase_grid(self, **kwargs: Any) -> Grid:
        """The phase of every cell as a `Grid` (see `grid`)."""
        return self.grid("phase", **kwargs)

    def to_pandas(self):
        """One row per finished cell: its settings, phase, accuracies, losses, IPR and norms
        (needs pandas, which mechmem does not install)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install pandas") from None
        rows = []
        for c in self.cells:
            row = {"id": c["id"], **c["config"], "phase": c["phase"]}
            row.update({f"acc_{k}": v for k, v in c["accuracy"].items()})
            row.update({f"loss_{k}": v for k, v in c["loss"].items()})
            row.update({"ipr_mean": c["ipr"]["mean"], "test_acc_peak": c["test_acc_peak"],
                        "test_acc_peak_step": c["test_acc_peak_step"]})
            row.update({f"norm_{k}": v for k, v in c["weight_norms"].items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def checkpoint(self, **settings: Any) -> Checkpoint:
        """The final network of one cell as a `Checkpoint` that `analyze` and `mechmem report`
        take like any other (needs a sweep run with --save-weights).

        Example:
            >>> a = analyze(result.checkpoint(train_frac=0.5, corrupt_frac=0.3, weight_decay=5.0))
        """
        cell = self.cell(**settings)
        config = TrainConfig.from_dict(cell["config"])
        payload = load_weights(self.path, int(cell["chunk"]))
        try:
            i = payload["ids"].index(cell["id"])
        except ValueError:
            raise ValueError(f"The weights of chunk {cell['chunk']} do not hold cell "
                             f"{cell['id']}; the folder is inconsistent.") from None
        model = build_model(config.model_config())
        state = {k: v[i] for k, v in payload["state"].items()}
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"Weights of cell {cell['id']} do not fit its model: "
                             f"{str(e).splitlines()[0]}") from None
        model.eval()
        history = {k: [math.nan if x is None else x for x in v] if k != "step" else list(v)
                   for k, v in cell["history"].items()}
        return Checkpoint(model=model, dataset=make_dataset(config.dataset_spec()),
                          train_config=config.to_dict(), history=history, snapshots={},
                          step=config.steps,
                          meta={"name": config.name, "sweep": str(self.path),
                                "cell": cell["id"]})


def _index(values: tuple[Any, ...], v: Any) -> int:
    for k, w in enumerate(values):
        if _same(w, v):
            return k
    raise LookupError(v)


def load_sweep(path: str | os.PathLike) -> SweepResult:
    """Open a sweep folder (finished or not).

    Args:
        path: the folder `mechmem.sweep` or `mechmem sweep` wrote.

    Returns:
        A `SweepResult`.

    Example:
        >>> result = load_sweep("sweeps/fig3a")
        >>> result.phase_grid().values.shape
        (4, 19, 17)
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a sweep folder path (a string or a path), got "
                        f"{type(path).__name__} {path!r:.60}.")
    folder = Path(path)
    plan = read_grid(folder)  # the checks `sweep(resume=True)` makes, so both read alike
    header, config = plan.header, plan.config
    order = {cid: k for k, cid in enumerate(header["cells"])}
    # A cell trained twice (its chunk's weights were lost and retrained) counts once.
    by_id = {c["id"]: c for c in read_cells(folder) if c["id"] in order}
    cells = sorted(by_id.values(), key=lambda c: order[c["id"]])
    return SweepResult(folder, config, tuple(cells), len(header["cells"]), header)
