"""Nanda et al.'s progress measures for grokking: restricted and excluded loss over the key
frequencies, with train and test loss, for one model and over a checkpoint's snapshots.

The key frequencies are read from the model (the Fourier power of its token embedding W_E over
the residues); the logits over every pair of the task are split, separately for each output
class, into a constant, their components along cos(w_k (a + b)) and sin(w_k (a + b)) for the
key frequencies w_k = 2 pi k / P, and the rest. Restricted logits keep the constant and the
key-frequency part, excluded logits remove the key-frequency part, both scored on the training
set (definition "logits", mechmem's). Definition "mlp" is the one of TransformerLens's grokking
demo (Nanda et al.'s code): the same split is made of the MLP neurons' activations at the last
position, restricted loss is scored on the test set and excluded loss on the training set. See
docs/analyzers.md.
"""

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ..data import ModularDataset, task_coordinates
from ..interop._adapter import adapt_model
from ..losses import LOSSES, loss_value
from ..models.sites import find_site
from ._common import evaluating, hidden_activations
from .progress_phases import NandaPhases, nanda_phases

KEY_GAP = 3.0  # key frequencies hold >= 3x the embedding power of the strongest other one
DEFINITIONS = ("logits", "mlp")  # mechmem's, and TransformerLens's grokking demo's


@dataclass(frozen=True)
class ProgressMeasures:
    """The progress measures of one model (all losses on its training set unless named test).

    Attributes:
        key_freqs: the key frequencies k (w_k = 2 pi k / P), ascending.
        freq_share: (P//2 + 1,) share of the embedding's non-constant Fourier power at each
            frequency (index = k; index 0 unused, 0); what `key_freqs` were read from (all 0
            when the frequencies were given).
        loss: "mse" (against one-hot targets, mean over examples and classes) or "ce".
        train_loss: the loss on the training set, against the labels trained on (corrupted
            labels included): the trainer's train loss.
        test_loss: the loss on the test set (true labels).
        restricted_loss: definition "logits": train loss of the logits restricted to the
            constant and the key frequencies; "mlp": test loss of the logits read from the MLP
            activations restricted to their mean and the key frequencies (plus the constant
            that gives them the true logits' mean over the pairs).
        excluded_loss: definition "logits": train loss of the logits with the key frequencies
            removed; "mlp": train loss of the logits with the key frequencies removed from the
            MLP activations (the other paths to the logits kept).
        definition: "logits" (mechmem's) or "mlp" (TransformerLens's grokking demo's).
    """

    key_freqs: tuple[int, ...]
    freq_share: Float[Tensor, " freqs"]
    loss: str
    train_loss: float
    test_loss: float
    restricted_loss: float
    excluded_loss: float
    definition: str = "logits"


@dataclass(frozen=True)
class ProgressCurves:
    """The progress measures at every snapshot of a run, and Nanda's phases found from them.

    Attributes:
        steps: the snapshot steps.
        train_loss, test_loss, restricted_loss, excluded_loss: as in `ProgressMeasures`, one
            per snapshot, all over the same key frequencies.
        key_freqs: the key frequencies (read from the final model unless given).
        loss: the loss the curves use.
        phases: Nanda's memorization, circuit formation and cleanup (see `nanda_phases`).
        definition: "logits" or "mlp", as in `ProgressMeasures`.
        unsnapshotted: parameters the snapshots do not hold (biases, LayerNorm factors); they
            keep their final values in every rebuilt model, so the curves are exact only when
            this is empty.
    """

    steps: Float[Tensor, " snapshots"]
    train_loss: Float[Tensor, " snapshots"]
    test_loss: Float[Tensor, " snapshots"]
    restricted_loss: Float[Tensor, " snapshots"]
    excluded_loss: Float[Tensor, " snapshots"]
    key_freqs: tuple[int, ...]
    loss: str
    phases: NandaPhases
    unsnapshotted: tuple[str, ...] = ()
    definition: str = "logits"


@dataclass(frozen=True)
class LogitComponents:
    """Logits over every pair split, per output class, into three orthogonal parts that sum to
    them: over the pairs, `constant` is the mean, `key` lies along the key frequencies'
    cos(w_k (a + b)) and sin(w_k (a + b)) (made orthogonal to the constant), `rest` is what
    is left."""

    constant: Float[Tensor, "pairs p"]
    key: Float[Tensor, "pairs p"]
    rest: Float[Tensor, "pairs p"]

    @property
    def restricted(self) -> Float[Tensor, "pairs p"]:
        """The logits with every non-key-frequency component removed."""
        return self.constant + self.key

    @property
    def excluded(self) -> Float[Tensor, "pairs p"]:
        """The logits with the key-frequency components removed."""
        return self.constant + self.rest


def _all_logits(model: nn.Module, dataset: ModularDataset) -> Float[Tensor, "pairs p"]:
    """The model's logits on every pair of the task, in `dataset.pairs` order (eval mode).

    The one place where the model is run: the dataset writes the pairs in its token format
    (`ModularDataset.model_inputs`), and a TransformerLens model is read through its adapter,
    which returns the last position's logits over the p residues."""
    model = adapt_model(model)
    with evaluating(model):
        logits = model(dataset.model_inputs().to(_device(model)))
    return logits.detach().to("cpu", torch.float64)


def _embedding(model: nn.Module, p: int) -> Float[Tensor, "p d_model"]:
    """The token embedding's rows for the p residues (extra tokens such as `=` dropped)."""
    W_E = getattr(model, "W_E", None)
    if not isinstance(W_E, Tensor) or W_E.ndim != 2 or W_E.shape[0] < p:
        raise ValueError(
            f"{type(model).__name__} has no token embedding W_E of shape (>= {p}, d_model) to "
            "read key frequencies from; pass `key_freqs=` explicitly.")
    return W_E.detach()[:p].to("cpu", torch.float64)


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def embedding_frequency_share(
    W_E: Float[Tensor, "p d_model"], op: str
) -> Float[Tensor, " freqs"]:
    """Share of an embedding's non-constant Fourier power at each frequency k = 0..P//2 (0 at
    k = 0): the DFT of every embedding dimension over the operand's task coordinate (the
    residue for addition, its discrete log for multiplication), |X_k|^2 + |X_{P-k}|^2 (its cos
    and sin parts) summed over the dimensions, divided by the total."""
    p = W_E.shape[0]
    coords = task_coordinates(op, p)
    P = coords.period
    keep = coords.a >= 0
    E = W_E.to(torch.float64)[keep]
    cell = coords.a[keep]
    grid = torch.zeros(P, E.shape[1], dtype=torch.float64).index_add_(0, cell, E)
    count = torch.zeros(P, dtype=torch.float64).index_add_(0, cell, torch.ones(len(cell),
                                                                              dtype=torch.float64))
    grid = grid / count.clamp_min(1)[:, None]  # mean where residues share a coordinate
    power = torch.fft.fft(grid, dim=0).abs().square().sum(1)  # (P,)
    half = P // 2
    share = torch.zeros(half + 1, dtype=torch.float64)
    for k in range(1, half + 1):
        share[k] = power[k] + (power[P - k] if P - k != k else 0.0)
    total = share.sum()
    return share / total if total > 0 else share


def key_frequencies(
    W_E: Float[Tensor, "p d_model"], op: str, *, gap: float = KEY_GAP
) -> tuple[tuple[int, ...], Float[Tensor, " freqs"]]:
    """The embedding's key frequencies: sorted by their share of the embedding's non-constant
    Fourier power, the frequencies above the largest drop between consecutive shares within
    the top half, when that drop is at least a factor `gap` (none otherwise: no frequency
    stands out).

    Returns:
        (key frequencies ascending, the share of every frequency, index = k).
    """
    if not gap > 1.0:
        raise ValueError(f"`gap` must be above 1, got {gap}.")
    share = embedding_frequency_share(W_E, op)
    if share.numel() < 2 or not bool(torch.isfinite(share).all()) or float(share.sum()) == 0:
        return (), share
    order = torch.argsort(share[1:], descending=True, stable=True) + 1
    ranked = share[order]
    if ranked.numel() == 1:
        return (int(order[0]),), share
    # Ratio of each share to the next one down, over the top half only: key frequencies are
    # a sparse few, and the smallest shares of a sparse spectrum can differ by any factor.
    top = max(1, ranked.numel() // 2)
    drops = ranked[:top] / ranked[1:top + 1].clamp_min(1e-300)
    n = int(drops.argmax()) + 1
    if float(drops[n - 1]) < gap:
        return (), share
    return tuple(sorted(int(k) for k in order[:n])), share


def _pair_phase(dataset: ModularDataset) -> tuple[Int[Tensor, " pairs"], Tensor, int]:
    """Each pair's coordinate sum (c(a) + c(b)) mod P, whether it has one, and P."""
    coords = task_coordinates(dataset.spec.op, dataset.p)
    ca, cb = coords.a[dataset.pairs[:, 0]], coords.b[dataset.pairs[:, 1]]
    valid = (ca >= 0) & (cb >= 0)
    return (ca + cb) % coords.period, valid, coords.period


def key_directions(
    dataset: ModularDataset, key_freqs: Sequence[int]
) -> Float[Tensor, "pairs dirs"]:
    """Orthonormal columns over the task's pairs spanning cos(w_k s) and sin(w_k s), s the
    pair's coordinate sum (a + b for addition), for the key frequencies, made orthogonal to
    the constant; 0 on pairs with no coordinate (an operand 0 in multiplication)."""
    s, valid, P = _pair_phase(dataset)
    for k in key_freqs:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= P // 2:
            raise ValueError(f"Key frequencies must be integers in 1..{P // 2}, got {k!r}.")
    cols = []
    for k in sorted(set(key_freqs)):
        angle = 2 * math.pi * k * s.to(torch.float64) / P
        cols += [torch.cos(angle), torch.sin(angle)]
    n = dataset.pairs.shape[0]
    if not cols:
        return torch.zeros(n, 0, dtype=torch.float64)
    B = torch.where(valid[:, None], torch.stack(cols, 1), 0.0)
    B = B - B.mean(0, keepdim=True)  # orthogonal to the constant
    U, S, _ = torch.linalg.svd(B, full_matrices=False)
    # sin(pi s) vanishes when P is even, and coordinates that repeat (sq_sum) can make
    # directions dependent: keep only the independent ones.
    return U[:, S > S.max() * 1e-9]


def decompose_logits(
    logits: Float[Tensor, "pairs p"], dataset: ModularDataset, key_freqs: Sequence[int]
) -> LogitComponents:
    """Split logits over every pair of the task (in `dataset.pairs` order) into the constant,
    the key-frequency part and the rest (see `LogitComponents`)."""
    if logits.ndim != 2 or logits.shape[0] != dataset.pairs.shape[0]:
        raise ValueError(f"`logits` must be (pairs, p) = ({dataset.pairs.shape[0]}, "
                         f"{dataset.p}) over every pair, got {tuple(logits.shape)}.")
    L = logits.to(torch.float64)
    Q = key_directions(dataset, key_freqs)
    constant = L.mean(0, keepdim=True).expand_as(L)
    key = Q @ (Q.T @ L)
    return LogitComponents(constant=constant, key=key, rest=L - constant - key)


def _check_loss(loss: str, definition: str = "logits") -> None:
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {', '.join(LOSSES)}, got {loss!r}.")
    if definition not in DEFINITIONS:
        raise ValueError(f"`definition` must be one of {', '.join(DEFINITIONS)}, got "
                         f"{definition!r}.")


def _mlp_measures(
    model: nn.Module, dataset: ModularDataset, key_freqs: tuple[int, ...], loss: str,
) -> tuple[float, float, float, float]:
    """(train, test, restricted, excluded) loss by TransformerLens's grokking demo: the last
    MLP's activations at the last position split over the pairs into their mean, their
    key-frequency part and the rest; restricted logits read mean + key part through the
    neurons' output weights, shifted to the true logits' mean over the pairs, scored on the
    test set; excluded logits are the true ones less the key part's contribution, scored on
    the training set."""
    model = adapt_model(model)
    site = find_site(model)
    if site.output is None or not site.linear:
        raise ValueError(f"Definition 'mlp' needs neurons whose output weights write the logits "
                         f"linearly; the {site.name} neurons of {type(model).__name__} do not.")
    acts, logits = hidden_activations(model, dataset.model_inputs().to(_device(model)), site)
    acts = acts.detach().to("cpu", torch.float64)  # (pairs, neurons)
    logits = logits.detach().to("cpu", torch.float64)
    out = site.output.detach().to("cpu", torch.float64)  # (p, neurons)
    Q = key_directions(dataset, key_freqs)
    key = Q @ (Q.T @ acts)  # the activations' key-frequency part, over the pairs
    restricted = (acts.mean(0, keepdim=True) + key) @ out.T
    restricted = restricted + logits.mean(0, keepdim=True) - restricted.mean(0, keepdim=True)
    excluded = logits - key @ out.T
    tr, te = dataset.train_idx, dataset.test_idx

    def value(table: Tensor, rows: Tensor, y: Tensor) -> float:
        return float(loss_value(loss, table[rows], y)) if rows.numel() else math.nan

    return (value(logits, tr, dataset.train_labels), value(logits, te, dataset.test_labels),
            value(restricted, te, dataset.test_labels),
            value(excluded, tr, dataset.train_labels))


def _measures(
    logits: Float[Tensor, "pairs p"], dataset: ModularDataset, key_freqs: tuple[int, ...],
    loss: str,
) -> tuple[float, float, float, float]:
    """(train, test, restricted, excluded) loss of one logits table."""
    parts = decompose_logits(logits, dataset, key_freqs)
    tr, te = dataset.train_idx, dataset.test_idx
    labels = dataset.train_labels

    def value(table: Tensor, rows: Tensor, y: Tensor) -> float:
        return float(loss_value(loss, table[rows], y)) if rows.numel() else math.nan

    return (value(logits, tr, labels), value(logits, te, dataset.test_labels),
            value(parts.restricted, tr, labels), value(parts.excluded, tr, labels))


def _resolve_freqs(
    model: nn.Module, dataset: ModularDataset, key_freqs: Sequence[int] | None, gap: float
) -> tuple[tuple[int, ...], Tensor]:
    if key_freqs is not None:
        freqs = tuple(sorted(set(key_freqs)))
        key_directions(dataset, freqs)  # validates them
        P = task_coordinates(dataset.spec.op, dataset.p).period
        return freqs, torch.zeros(P // 2 + 1, dtype=torch.float64)
    return key_frequencies(_embedding(model, dataset.p), dataset.spec.op, gap=gap)


def progress_measures(
    model: nn.Module, dataset: ModularDataset, *, loss: str = "mse",
    key_freqs: Sequence[int] | None = None, gap: float = KEY_GAP, definition: str = "logits",
) -> ProgressMeasures:
    """Train, test, restricted and excluded loss of one model.

    Args:
        model: any model whose forward takes (batch, 2) operand pairs and returns (batch, p)
            logits, with a token embedding `W_E` unless `key_freqs` is given.
        dataset: its task and split; the training set is evaluated against the labels trained
            on, corrupted ones included.
        loss: "mse" (mechmem's training objective) or "ce" (Nanda et al.'s).
        key_freqs: the key frequencies; default: read from the embedding (`key_frequencies`).
        gap: the least drop in embedding power from the key frequencies to the others.
        definition: "logits" (mechmem's: restrict the logits, score both on the training
            set) or "mlp" (TransformerLens's grokking demo's: restrict the last MLP's
            activations, score restricted loss on the test set and excluded loss on the
            training set).

    Returns:
        A `ProgressMeasures`.

    Example:
        >>> m = progress_measures(model, dataset)
        >>> m.key_freqs, m.restricted_loss, m.excluded_loss
    """
    _check_loss(loss, definition)
    freqs, share = _resolve_freqs(model, dataset, key_freqs, gap)
    train, test, restricted, excluded = _table(model, dataset, freqs, loss, definition)
    return ProgressMeasures(key_freqs=freqs, freq_share=share, loss=loss, train_loss=train,
                            test_loss=test, restricted_loss=restricted, excluded_loss=excluded,
                            definition=definition)


def _table(model: nn.Module, dataset: ModularDataset, freqs: tuple[int, ...], loss: str,
           definition: str) -> tuple[float, float, float, float]:
    if definition == "mlp":
        return _mlp_measures(model, dataset, freqs, loss)
    return _measures(_all_logits(model, dataset), dataset, freqs, loss)


def progress_curves(
    model: nn.Module, dataset: ModularDataset, snapshots: Mapping[str, Tensor | Sequence[Tensor]],
    *, loss: str = "mse", key_freqs: Sequence[int] | None = None, gap: float = KEY_GAP,
    definition: str = "logits",
) -> ProgressCurves:
    """The progress measures at every snapshot of a run, over the final model's key
    frequencies, and Nanda et al.'s three phases located on them.

    Args:
        model: the final model (its architecture, and its key frequencies unless given); it is
            not changed: each snapshot is loaded into a copy.
        dataset: the run's dataset.
        snapshots: a checkpoint's snapshots: "step" (snapshots,) and weights by state_dict
            name, each (snapshots, *shape).
        loss, key_freqs, gap, definition: as in `progress_measures`.

    Returns:
        A `ProgressCurves`.
    """
    _check_loss(loss, definition)
    if "step" not in snapshots:
        raise ValueError("`snapshots` has no 'step' entry: pass a checkpoint's snapshots.")
    steps = torch.as_tensor(snapshots["step"]).to(torch.float64).reshape(-1)
    state = dict(model.named_parameters())
    names = [k for k in snapshots if k != "step"]
    for k in names:
        if k not in state:
            raise ValueError(f"Snapshot weight {k!r} is not a parameter of "
                             f"{type(model).__name__}.")
        if len(snapshots[k]) != len(steps) or tuple(snapshots[k][0].shape) != tuple(
                state[k].shape):
            raise ValueError(f"Snapshot weight {k!r} does not hold {len(steps)} tensors of "
                             f"shape {tuple(state[k].shape)}.")
    freqs, _ = _resolve_freqs(model, dataset, key_freqs, gap)
    copy_ = copy.deepcopy(model).to("cpu")
    params = dict(copy_.named_parameters())
    rows = []
    with torch.no_grad():
        for i in range(len(steps)):
            for k in names:
                params[k].copy_(snapshots[k][i])
            rows.append(_table(copy_, dataset, freqs, loss, definition))
    table = torch.tensor(rows, dtype=torch.float64).reshape(len(steps), 4)
    train, test, restricted, excluded = table.unbind(1)
    return ProgressCurves(
        steps=steps, train_loss=train, test_loss=test, restricted_loss=restricted,
        excluded_loss=excluded, key_freqs=freqs, loss=loss,
        phases=nanda_phases(steps, train, test, restricted, excluded),
        unsnapshotted=tuple(k for k in state if k not in names), definition=definition)
