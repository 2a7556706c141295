"""Per-example attribution: each training example's margin, its status, and the neurons holding it.

The logits read a neuron site linearly, `logits = output @ h + rest`, so the trained label's margin
over the runner-up class splits exactly into one term per neuron plus one term for everything else
(the bias; for a transformer the rest of the residual stream). docs/examples.md has the maths.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ..data import ModularDataset
from ..metrics import example_margins, predict
from ..models.sites import NeuronSite, neuron_sites
from ._common import evaluating, nan_to_none
from .ablation import ablate
from .ipr import ipr_scores
from .neurons import NeuronClasses, classify_neurons

CORRUPTED_STATUSES = ("memorized", "inverted", "neither")
CLEAN_STATUSES = ("fitted", "missed")
STATUSES = CORRUPTED_STATUSES + CLEAN_STATUSES


@dataclass(frozen=True, eq=False)
class ExampleAttribution:
    """Every training example's margins and status, and each neuron's share of its margin.

    Examples are in training-set order (aligned with `dataset.train_idx`).

    Attributes:
        site: the neuron site whose neurons are attributed (the last one with output weights).
        exact: the logits are a linear read-out of the site (no normalization after it), so
            `contributions.sum(1) + rest == margin` holds exactly; False: `rest` is what the
            neurons' direct effects leave over (a direct-logit attribution).
        fraction: the share of the margin a holding set must reach (0.9).
        label, true_label: the label trained on and the task's true label.
        corrupted: the label trained on differs from the true one (a corrupted example whose
            random label landed on the truth counts as clean: it cannot be told apart).
        runner_up: the best class other than the trained label.
        margin: logit of the trained label minus the runner-up's (> 0: the label is predicted).
        true_margin: logit of the true label minus the best other class's.
        status: "memorized", "inverted" or "neither" for corrupted examples (prediction is the
            trained label, the true label, or something else); "fitted" or "missed" for clean
            ones.
        contributions: neuron k's exact term in example i's margin: `h_ik (out[y_i, k] -
            out[r_i, k])` with `y` the trained label and `r` the runner-up.
        rest: the margin's term from everything but the site's neurons (the bias difference;
            for a transformer the residual stream without the site), measured by running the
            model with all the site's neurons switched off.
        memorized: training indices of the memorized examples (M of them).
        holders: per memorized example, the smallest set of neurons whose contributions sum to
            at least `fraction` of its margin (the largest contributions first).
        holders_reach: the set reaches that share; False where the neurons together hold less
            (the rest of the stream holds the remainder), and the set is then every neuron with
            a positive contribution.
        flip_count: per memorized example, how many neurons, removed largest contribution
            first, make another class overtake the trained label (read off the linear
            read-out: exactly what zero-ablating them does where `exact`).
        flip_reach: removing them does flip it; False where even every neuron with a positive
            contribution gone leaves the label on top (`flip_count` is then their number).
        low_ipr: the site's memorizing (low-IPR) neurons, from its neuron classes.
        low_ipr_share: per memorized example, the share of its margin held by low-IPR neurons
            (above 1 where the other neurons vote against the trained label).
    """

    site: str
    exact: bool
    fraction: float
    label: Int[Tensor, " train"]
    true_label: Int[Tensor, " train"]
    corrupted: Bool[Tensor, " train"]
    runner_up: Int[Tensor, " train"]
    margin: Float[Tensor, " train"]
    true_margin: Float[Tensor, " train"]
    status: tuple[str, ...]
    contributions: Float[Tensor, "train neurons"]
    rest: Float[Tensor, " train"]
    memorized: Int[Tensor, " memorized"]
    holders: Bool[Tensor, "memorized neurons"]
    holders_reach: Bool[Tensor, " memorized"]
    flip_count: Int[Tensor, " memorized"]
    flip_reach: Bool[Tensor, " memorized"]
    low_ipr: Bool[Tensor, " neurons"]
    low_ipr_share: Float[Tensor, " memorized"]

    def counts(self) -> dict[str, int]:
        """How many training examples have each status."""
        return {s: self.status.count(s) for s in STATUSES}

    def holding(self, example: int) -> tuple[int, ...]:
        """The neurons holding `fraction` of memorized training example `example`'s margin,
        largest contribution first.

        Raises:
            ValueError: the example is not memorized.
        """
        row = self._row(example)
        neurons = self.holders[row].nonzero().squeeze(1)
        order = self.contributions[example, neurons].argsort(descending=True)
        return tuple(int(k) for k in neurons[order])

    def flipping(self, example: int) -> tuple[int, ...]:
        """The fewest neurons, largest contribution first, whose removal makes memorized
        training example `example` lose its trained label (see `flip_count`).

        Raises:
            ValueError: the example is not memorized.
        """
        row = self._row(example)
        order = self.contributions[example].argsort(descending=True)
        return tuple(int(k) for k in order[: int(self.flip_count[row])])

    def margin_share_low_ipr(self) -> float:
        """The share of the memorized examples' total margin held by low-IPR neurons (NaN
        when nothing is memorized)."""
        if self.memorized.numel() == 0:
            return math.nan
        m = self.margin[self.memorized]
        held = self.contributions[self.memorized][:, self.low_ipr].sum(1)
        return float(held.sum() / m.sum())

    def support_share_low_ipr(self) -> float:
        """The share of the memorized examples' positive contributions (the neurons voting for
        the trained label) that comes from low-IPR neurons, in [0, 1] (NaN when nothing is
        memorized). Unlike `margin_share_low_ipr` it ignores the neurons voting against the
        label, which on a generalizing network are the periodic ones pushing the true label."""
        if self.memorized.numel() == 0:
            return math.nan
        c = self.contributions[self.memorized].clamp_min(0)
        return float(c[:, self.low_ipr].sum() / c.sum())

    def _row(self, example: int) -> int:
        hit = (self.memorized == example).nonzero()
        if hit.numel() == 0:
            raise ValueError(f"Training example {example} is not memorized (its status is "
                             f"{self._status_of(example)!r}): only memorized examples have "
                             "holding and flipping sets.")
        return int(hit[0, 0])

    def _status_of(self, example: int) -> str:
        if not 0 <= example < len(self.status):
            raise ValueError(f"Training example {example} is out of range: the training set "
                             f"has {len(self.status)} examples.")
        return self.status[example]


def examples(
    model: nn.Module,
    dataset: ModularDataset,
    *,
    classes: NeuronClasses | None = None,
    fraction: float = 0.9,
) -> ExampleAttribution:
    """Attribute every training example's trained-label margin to the neurons of the model's
    last neuron site with output weights (the 2-layer MLP's hidden layer, the 3-layer MLP's last
    layer, a transformer's last MLP).

    Args:
        model: any model with neuron sites (evaluated in eval mode, its mode restored after).
        dataset: its dataset.
        classes: the site's neuron classes, which say which neurons are low-IPR (default:
            `classify_neurons(ipr_scores(model, op, site=site))`).
        fraction: the share of the margin a memorized example's holding set must reach.

    Returns:
        An `ExampleAttribution`.

    Example:
        >>> ex = examples(model, ds)
        >>> ex.counts()["memorized"], ex.margin_share_low_ipr()
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not (
            0 < fraction <= 1):
        raise ValueError(f"`fraction` must be a number in (0, 1], got {fraction!r}.")
    site = _attributed_site(model)
    inputs = dataset.model_inputs(dataset.train_pairs).to(model.device)
    with evaluating(model):
        logits, cache = model.run_with_cache(inputs, names_filter=site.hook)
        with ablate(model, torch.ones(site.width, dtype=torch.bool), site=site):
            rest_logits = model(inputs)
    h = site.activations(cache[site.hook]).to(torch.float64).cpu()  # (train, neurons)
    logits = logits.to(torch.float64).cpu()
    rest_logits = rest_logits.to(torch.float64).cpu()
    out = site.output.to(torch.float64).cpu()  # (p, neurons)
    label, true = dataset.train_labels, dataset.train_true_labels
    runner_up = _best_other(logits, label)
    margin = example_margins(logits, label)  # = logit at label - logit at runner_up
    true_margin = example_margins(logits, true)
    contributions = h * (out[label] - out[runner_up])
    if site.linear:
        rest = _at(rest_logits, label) - _at(rest_logits, runner_up)
    else:
        rest = margin - contributions.sum(1)
    corrupted = label != true
    pred = predict(logits)
    status = tuple(
        ("memorized" if hl else "inverted" if ht else "neither") if c
        else ("fitted" if hl else "missed")
        for c, hl, ht in zip(corrupted.tolist(), (pred == label).tolist(), (pred == true).tolist(),
                             strict=True))
    memorized = torch.tensor([i for i, s in enumerate(status) if s == "memorized"],
                             dtype=torch.long)
    holders, reach = _holding_sets(contributions[memorized], margin[memorized], fraction)
    flips, flip_reach = _flip_counts(contributions[memorized], h[memorized], out,
                                     logits[memorized], label[memorized])
    if classes is None:
        classes = classify_neurons(ipr_scores(model, dataset.spec.op, site=site))
    low = classes.memorizing_mask.cpu()
    if low.shape != (site.width,):
        raise ValueError(f"`classes` has {low.numel()} neurons but site {site.name!r} has "
                         f"{site.width}: pass the classes of that site.")
    m = margin[memorized]
    share = contributions[memorized][:, low].sum(1) / m
    return ExampleAttribution(
        site=site.name, exact=site.linear, fraction=float(fraction), label=label.clone(),
        true_label=true.clone(), corrupted=corrupted, runner_up=runner_up, margin=margin,
        true_margin=true_margin, status=status, contributions=contributions, rest=rest,
        memorized=memorized, holders=holders, holders_reach=reach, flip_count=flips,
        flip_reach=flip_reach, low_ipr=low,
        low_ipr_share=share)


def _attributed_site(model: nn.Module) -> NeuronSite:
    sites = [s for s in neuron_sites(model) if s.output is not None]
    if not sites:
        raise ValueError(f"{type(model).__name__} has no neuron site with output weights, so "
                         "no neuron's effect on the logits can be read off: per-example "
                         "attribution needs one.")
    return sites[-1]


def _at(logits: Tensor, cls: Tensor) -> Tensor:
    return logits.gather(1, cls[:, None])[:, 0]


def _best_other(logits: Float[Tensor, "n p"], cls: Int[Tensor, " n"]) -> Int[Tensor, " n"]:
    """The highest-scoring class other than `cls`, per row."""
    return logits.scatter(1, cls[:, None], -torch.inf).argmax(1)


def _holding_sets(
    contributions: Float[Tensor, "m neurons"], margin: Float[Tensor, " m"], fraction: float
) -> tuple[Bool[Tensor, "m neurons"], Bool[Tensor, " m"]]:
    """Per row, the fewest neurons whose contributions sum to >= fraction * margin: the largest
    contributions first (no set of that size holds more)."""
    values, order = contributions.sort(1, descending=True)
    cum = values.cumsum(1)
    target = fraction * margin[:, None]
    hit = cum >= target
    reach = hit.any(1)
    # First prefix reaching the target; otherwise every positive contribution.
    size = torch.where(reach, hit.to(torch.int8).argmax(1) + 1, (values > 0).sum(1))
    take = torch.arange(values.shape[1])[None, :] < size[:, None]
    holders = torch.zeros_like(take).scatter(1, order, take)
    return holders, reach


def _flip_counts(
    contributions: Float[Tensor, "m neurons"], h: Float[Tensor, "m neurons"],
    out: Float[Tensor, "p neurons"], logits: Float[Tensor, "m p"], label: Int[Tensor, " m"],
) -> tuple[Int[Tensor, " m"], Bool[Tensor, " m"]]:
    """Per row, how many neurons (largest contribution first) must go before another class's
    logit passes the label's: the logits less the removed neurons' direct effects, after each
    removal, in chunks of rows that keep the (rows, neurons, p) tensor near 32 MB."""
    m, n = contributions.shape
    counts = torch.zeros(m, dtype=torch.long)
    reach = torch.zeros(m, dtype=torch.bool)
    order = contributions.argsort(1, descending=True)
    positive = (contributions > 0).sum(1)
    step = max(1, 2**22 // max(1, n * out.shape[0]))
    for a in range(0, m, step):
        o = order[a : a + step]  # (c, neurons)
        effect = out.T[o] * h[a : a + step].gather(1, o)[..., None]  # (c, neurons, p)
        after = logits[a : a + step, None, :] - effect.cumsum(1)
        y = label[a : a + step, None, None].expand(-1, n, 1)
        at_y = after.gather(2, y)[..., 0]
        flipped = after.scatter(2, y, -torch.inf).amax(2) > at_y  # (c, neurons)
        hit = flipped.any(1)
        counts[a : a + step] = torch.where(hit, flipped.to(torch.int8).argmax(1) + 1,
                                           positive[a : a + step])
        reach[a : a + step] = hit
    return counts, reach


def examples_dict(ex: ExampleAttribution) -> dict[str, Any]:
    """Summary numbers for `analyze --json` (no per-example arrays)."""
    counts = ex.counts()
    by_status = {s: nan_to_none(float(ex.margin[[x == s for x in ex.status]].mean()))
                 if counts[s] else None for s in STATUSES}
    sizes = ex.holders.sum(1).to(torch.float64)
    m = int(ex.memorized.numel())
    return {
        "site": ex.site, "exact": ex.exact, "fraction": ex.fraction, "counts": counts,
        "mean_margin": by_status,
        "holders_median": nan_to_none(float(sizes.median())) if m else None,
        "holders_mean": nan_to_none(float(sizes.mean())) if m else None,
        "holders_reach": nan_to_none(float(ex.holders_reach.to(torch.float64).mean()))
        if m else None,
        "flip_median": nan_to_none(float(ex.flip_count.double().median())) if m else None,
        "flip_reach": nan_to_none(float(ex.flip_reach.to(torch.float64).mean()))
        if m else None,
        "low_ipr_neurons": int(ex.low_ipr.sum()),
        "low_ipr_margin_share": nan_to_none(ex.margin_share_low_ipr()),
        "low_ipr_support_share": nan_to_none(ex.support_share_low_ipr()),
        "low_ipr_share_median": nan_to_none(float(ex.low_ipr_share.median())) if m else None,
    }


def examples_lines(ex: ExampleAttribution) -> list[str]:
    """The summary's lines about the examples."""
    c = ex.counts()
    n_corr = c["memorized"] + c["inverted"] + c["neither"]
    bad = int((~torch.isfinite(ex.margin)).sum())
    if bad:  # a diverged model: its statuses read NaN margins as misses
        return [f"examples   {bad} of {ex.margin.numel()} margins are not finite (the outputs "
                "hold NaN or infinities): no example's status can be read"]
    clean = f"{c['fitted'] + c['missed']} clean: {c['fitted']} fitted, {c['missed']} missed"
    if not n_corr:  # a clean run: nothing to memorize or invert
        return [f"examples   no corrupted labels; of {clean}"]
    lines = [f"examples   of {n_corr} corrupted: {c['memorized']} memorized, {c['inverted']}"
             f" inverted, {c['neither']} neither; of {clean}"]
    if ex.memorized.numel():
        sizes = ex.holders.sum(1).to(torch.float64)
        share = ex.margin_share_low_ipr()
        lines.append(
            f"           a memorized example's margin: {int(ex.fraction * 100)}% held by a median"
            f" {float(sizes.median()):g} of {ex.holders.shape[1]} {ex.site} neurons;"
            f" {int(ex.low_ipr.sum())} low-IPR neurons hold {100 * share:.1f}% of it all"
            f" ({100 * ex.support_share_low_ipr():.1f}% of the votes for the label)"
            + ("" if ex.exact else " (direct effects: not exact after a normalization)"))
        lines.append(f"           removing a median {float(ex.flip_count.double().median()):g}"
                     " of them, largest first, loses the label"
                     f" ({100 * float(ex.flip_reach.double().mean()):.0f}% of the memorized"
                     " examples can be flipped so)")
    return lines
