"""Plumbing shared by the analyzers: eval mode without side effects, predictions, activations."""

import contextlib
import math
from collections.abc import Iterator

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ..metrics import predict as predict
from ..models.sites import NeuronSite, find_site


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode with gradients off for the block, then restore every module's
    train/eval flag exactly as it was (analyzers never leave a trace on the caller's model)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for m, mode in modes:
            m.train(mode)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block on one intra-op thread, then restore the thread count.

    For loops of many small tensor ops (about a million elements each) thread start-up and
    barriers cost more than a second core gives, and on a machine shared with other processes
    they can make each op ten times slower. Note: the thread count is process-wide.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def hidden_activations(
    model: nn.Module, inputs: Int[Tensor, "pairs pos"], site: str | NeuronSite | None = None
) -> tuple[Float[Tensor, "pairs neurons"], Float[Tensor, "pairs p"]]:
    """A neuron site's activations (default: the primary site; for `HookedMLP` what W reads,
    hook_normed) and the logits, for every example, in eval mode.

    `inputs` are the pairs as the model reads them (`ModularDataset.model_inputs`)."""
    s = find_site(model, site)
    with evaluating(model):
        logits, cache = model.run_with_cache(inputs, names_filter=s.hook)
    return s.activations(cache[s.hook]), logits


def nan_to_none(x: float) -> float | None:
    """A float for JSON: NaN and infinities become None (JSON null)."""
    x = float(x)
    return x if math.isfinite(x) else None
