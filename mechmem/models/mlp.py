"""The paper's two-layer network f(m, n) = W phi(U e_m + V e_n), built on hook points."""

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from .._check import check_fields
from ..hooks import HookedRootModule, HookPoint
from .sites import NeuronSite

ACTIVATIONS = ("quad", "relu", "gelu")
NORMS = ("none", "batchnorm", "layernorm")


@dataclass(frozen=True)
class MLPConfig:
    """Architecture of a `HookedMLP`.

    Attributes:
        p: number of residues: inputs are pairs in [0, p), outputs are p logits.
        width: N, the number of hidden neurons.
        act: phi; "quad" is x^2, the paper's default.
        bias: biases on both layers (the paper has none).
        dropout: dropout probability during training.
        dropout_site: "pre" drops pre-activations (the paper's code), "post" drops the hidden
            vector that W reads.
        norm: normalization of the post-activation, before W ("batchnorm" and "layernorm" use
            PyTorch defaults).
        init: "paper" draws every weight from N(0, std^2) with std = (16 N)^(-1/3);
            "pytorch" uses nn.Linear's default uniform init.
        init_scale: multiplies the initial weights (1.0 keeps the scheme as published).
    """

    p: int = 97
    width: int = 500
    # Choice fields are `str`, validated in __post_init__ with a sentence naming the choices.
    act: str = "quad"
    bias: bool = False
    dropout: float = 0.0
    dropout_site: str = "pre"
    norm: str = "none"
    init: str = "paper"
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self)  # types from the annotations; floats finite
        if isinstance(self.p, bool) or not isinstance(self.p, int) or self.p < 2:
            raise ValueError(f"`p` must be an integer >= 2, got {self.p!r}.")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"`width` must be a positive integer, got {self.width!r}.")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"`act` must be one of {', '.join(ACTIVATIONS)}, got {self.act!r}.")
        if self.norm not in NORMS:
            raise ValueError(f"`norm` must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must lie in [0, 1), got {self.dropout}.")
        if self.dropout_site not in ("pre", "post"):
            raise ValueError(f"`dropout_site` must be 'pre' or 'post', got {self.dropout_site!r}.")
        if self.init not in ("paper", "pytorch"):
            raise ValueError(f"`init` must be 'paper' or 'pytorch', got {self.init!r}.")
        if not self.init_scale > 0.0:
            raise ValueError(f"`init_scale` must be positive, got {self.init_scale}.")

    @property
    def paper_init_std(self) -> float:
        # (16 N)^(-1/3), computed as the authors' code does, to the last bit.
        return 0.5 / (2 * self.width) ** (1 / 3)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def activation_fn(act: str, x: Tensor) -> Tensor:
    if act == "quad":
        return x * x
    if act == "relu":
        return F.relu(x)
    if act == "gelu":
        return F.gelu(x)
    raise AssertionError(act)


class HookedMLP(HookedRootModule):
    """f(m, n) = W norm(phi(U e_m + V e_n)), with hook points on every activation.

    Weights are stored in the paper's orientation: `U` and `V` are (width, p), the two halves of
    the first layer (column m of U is neuron input from operand m); `W` is (p, width).
    U e_m + V e_n is computed as a lookup of columns, never as a one-hot matmul.

    Hook points (shapes for a batch of B pairs, N = width):
        hook_embed_U (B, N): U e_m;  hook_embed_V (B, N): V e_n;
        hook_pre (B, N): U e_m + V e_n (+ b1);  hook_post (B, N): phi(pre);
        hook_normed (B, N): norm(post), what W reads;  hook_logits (B, p).

    Example:
        >>> model = HookedMLP(MLPConfig(p=97, width=500), seed=0)
        >>> logits, cache = model.run_with_cache(torch.tensor([[3, 5]]))
        >>> cache["hook_post"].shape
        torch.Size([1, 500])
    """

    family: ClassVar[str] = "mlp"

    def __init__(self, cfg: MLPConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        N, p = cfg.width, cfg.p
        self.U = nn.Parameter(torch.empty(N, p))
        self.V = nn.Parameter(torch.empty(N, p))
        self.W = nn.Parameter(torch.empty(p, N))
        self.b_in = nn.Parameter(torch.zeros(N)) if cfg.bias else None
        self.b_out = nn.Parameter(torch.zeros(p)) if cfg.bias else None
        if cfg.norm == "batchnorm":
            self.norm: nn.Module = nn.BatchNorm1d(N)
        elif cfg.norm == "layernorm":
            self.norm = nn.LayerNorm(N)
        else:
            self.norm = nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_embed_U = HookPoint()
        self.hook_embed_V = HookPoint()
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()
        self.hook_normed = HookPoint()
        self.hook_logits = HookPoint()
        self.reset_parameters(seed)
        self.setup()

    def reset_parameters(self, seed: int) -> None:
        """Draw fresh weights from the configured init, reproducibly from `seed`."""
        gen = torch.Generator().manual_seed(seed)
        cfg = self.cfg
        with torch.no_grad():
            if cfg.init == "paper":
                std = cfg.paper_init_std * cfg.init_scale
                for w in (self.U, self.V, self.W):
                    w.copy_(torch.randn(w.shape, generator=gen) * std)
            else:
                # nn.Linear's default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)).
                for w, fan_in in ((self.U, 2 * cfg.p), (self.V, 2 * cfg.p), (self.W, cfg.width)):
                    bound = cfg.init_scale / fan_in**0.5
                    w.copy_((torch.rand(w.shape, generator=gen) * 2 - 1) * bound)
            for b in (self.b_in, self.b_out):
                if b is not None:
                    b.zero_()

    def forward(self, pairs: Int[Tensor, "batch 2"]) -> Float[Tensor, "batch p"]:
        m, n = pairs[:, 0], pairs[:, 1]
        # Column lookups (an embedding of each operand), never one-hot matmuls.
        pre = self.hook_embed_U(F.embedding(m, self.U.T)) + self.hook_embed_V(
            F.embedding(n, self.V.T))  # (batch, N)
        if self.b_in is not None:
            pre = pre + self.b_in
        pre = self.hook_pre(pre)
        if self.cfg.dropout_site == "pre":
            pre = self.dropout(pre)
        post = self.hook_post(activation_fn(self.cfg.act, pre))
        hidden = self.hook_normed(self.norm(post))
        if self.cfg.dropout_site == "post":
            hidden = self.dropout(hidden)
        logits = F.linear(hidden, self.W, self.b_out)  # (batch, p)
        return self.hook_logits(logits)

    def neuron_sites(self) -> tuple[NeuronSite, ...]:
        """The hidden layer: rows of U and V in, columns of W out, read at `hook_normed`."""
        bn = self.norm if isinstance(self.norm, nn.BatchNorm1d) else None
        return (NeuronSite(
            "hidden", "hook_normed", self.cfg.width, inputs=(self.U.detach(), self.V.detach()),
            output=self.W.detach(),
            output_bias=None if self.b_out is None else self.b_out.detach(), norm=bn),)

    @property
    def device(self) -> torch.device:
        return self.U.device
