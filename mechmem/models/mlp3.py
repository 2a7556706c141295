"""The paper's 3-layer MLP: both operands embedded, two hidden layers, on hook points.

f(m, n) = W norm(phi(W_hidden norm(phi(U e_m + V e_n)))): the first hidden layer is the 2-layer
network's (U and V are its per-operand input weights), the second reads it through W_hidden
(width x width), and W maps the second to the logits.
"""

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from ..hooks import HookedRootModule, HookPoint
from .mlp import MLPConfig, activation_fn
from .sites import NeuronSite


@dataclass(frozen=True)
class MLP3Config(MLPConfig):
    """Architecture of a `HookedMLP3`: the fields (and checks) of `MLPConfig`, read per layer.

    Attributes:
        p: number of residues.
        width: neurons in each of the two hidden layers.
        act: phi of both hidden layers; ReLU is the paper's.
        bias: biases on every layer.
        dropout, dropout_site: dropout on each hidden layer's pre-activations ("pre") or on
            what the next layer reads ("post").
        norm: normalization of each hidden layer's post-activation ("batchnorm", "layernorm").
        init: "paper" (N(0, std^2), std = (16 N)^(-1/3), as for the 2-layer network) or
            "pytorch" (nn.Linear's uniform init).
        init_scale: multiplies the initial weights.
    """

    act: str = "relu"


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batchnorm":
        return nn.BatchNorm1d(width)
    if kind == "layernorm":
        return nn.LayerNorm(width)
    return nn.Identity()


class _Hidden(nn.Module):
    """One hidden layer's hook points and normalization (its weights live on the root)."""

    def __init__(self, cfg: MLP3Config) -> None:
        super().__init__()
        self.norm = _norm(cfg.norm, cfg.width)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()
        self.hook_normed = HookPoint()


class HookedMLP3(HookedRootModule):
    """The 3-layer MLP, with hook points on every layer.

    Weights: `U`, `V` (width, p) the first layer's halves (column m: input from operand m, as in
    `HookedMLP`); `W_hidden` (width, width); `W` (p, width). Hook points for B pairs, N = width:
    hook_embed_U, hook_embed_V (B, N); layers.{0,1}.hook_pre, hook_post, hook_normed (B, N);
    hook_logits (B, p).

    Example:
        >>> model = HookedMLP3(MLP3Config(p=23, width=64), seed=0)
        >>> model(torch.tensor([[3, 5]])).shape
        torch.Size([1, 23])
    """

    family: ClassVar[str] = "mlp3"

    def __init__(self, cfg: MLP3Config, *, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        N, p = cfg.width, cfg.p
        self.U = nn.Parameter(torch.empty(N, p))
        self.V = nn.Parameter(torch.empty(N, p))
        self.W_hidden = nn.Parameter(torch.empty(N, N))
        self.W = nn.Parameter(torch.empty(p, N))
        self.b_in = nn.Parameter(torch.zeros(N)) if cfg.bias else None
        self.b_hidden = nn.Parameter(torch.zeros(N)) if cfg.bias else None
        self.b_out = nn.Parameter(torch.zeros(p)) if cfg.bias else None
        self.layers = nn.ModuleList([_Hidden(cfg), _Hidden(cfg)])
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_embed_U = HookPoint()
        self.hook_embed_V = HookPoint()
        self.hook_logits = HookPoint()
        self.reset_parameters(seed)
        self.setup()

    def reset_parameters(self, seed: int) -> None:
        """Draw fresh weights from the configured init, reproducibly from `seed`."""
        gen = torch.Generator().manual_seed(seed)
        cfg = self.cfg
        fans = ((self.U, 2 * cfg.p), (self.V, 2 * cfg.p), (self.W_hidden, cfg.width),
                (self.W, cfg.width))
        with torch.no_grad():
            for w, fan_in in fans:
                if cfg.init == "paper":
                    std = cfg.paper_init_std * cfg.init_scale
                    w.copy_(torch.randn(w.shape, generator=gen) * std)
                else:
                    bound = cfg.init_scale / fan_in**0.5
                    w.copy_((torch.rand(w.shape, generator=gen) * 2 - 1) * bound)
            for b in (self.b_in, self.b_hidden, self.b_out):
                if b is not None:
                    b.zero_()

    def _layer(self, layer: _Hidden, pre: Tensor) -> Tensor:
        pre = layer.hook_pre(pre)
        if self.cfg.dropout_site == "pre":
            pre = self.dropout(pre)
        hidden = layer.hook_normed(layer.norm(layer.hook_post(activation_fn(self.cfg.act, pre))))
        return self.dropout(hidden) if self.cfg.dropout_site == "post" else hidden

    def forward(self, pairs: Int[Tensor, "batch 2"]) -> Float[Tensor, "batch p"]:
        m, n = pairs[:, 0], pairs[:, 1]
        # Column lookups (an embedding of each operand), never one-hot matmuls.
        pre = self.hook_embed_U(F.embedding(m, self.U.T)) + self.hook_embed_V(
            F.embedding(n, self.V.T))  # (batch, N)
        if self.b_in is not None:
            pre = pre + self.b_in
        h = self._layer(self.layers[0], pre)
        h = self._layer(self.layers[1], F.linear(h, self.W_hidden, self.b_hidden))
        return self.hook_logits(F.linear(h, self.W, self.b_out))

    def neuron_sites(self) -> tuple[NeuronSite, ...]:
        """The input layer (rows of U and V) and the output layer (columns of W), per layer."""
        def bn(i: int) -> nn.Module | None:
            norm = self.layers[i].norm
            return norm if isinstance(norm, nn.BatchNorm1d) else None

        N = self.cfg.width
        return (
            NeuronSite("layers.0", "layers.0.hook_normed", N,
                       inputs=(self.U.detach(), self.V.detach()), norm=bn(0)),
            NeuronSite("layers.1", "layers.1.hook_normed", N, output=self.W.detach(),
                       output_bias=None if self.b_out is None else self.b_out.detach(),
                       norm=bn(1)),
        )

    @property
    def device(self) -> torch.device:
        return self.U.device
