"""The paper's encoder-only transformer, with TransformerLens's weight names and hook points.

Tokens are the two operands (learned position embeddings for the two positions), attention is
bidirectional, the logits are read at the last position. Weights are named and oriented as in
TransformerLens (W_E (p, d_model), W_pos (2, d_model), W_Q/W_K/W_V (heads, d_model, d_head),
W_O (heads, d_head, d_model), W_in (d_model, d_mlp), W_out (d_mlp, d_model), W_U (d_model, p)),
and so are the hook points, so that hook code written for a TransformerLens model runs unchanged.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from .._check import check_fields
from ..hooks import HookedRootModule, HookPoint
from .sites import NeuronSite

TRANSFORMER_ACTIVATIONS = ("relu", "gelu")
TRANSFORMER_NORMS = ("none", "layernorm")
TRANSFORMER_INITS = ("paper", "gpt2")
N_CTX = 2  # the two operand tokens


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture of a `HookedTransformer`; the defaults are the paper's (Sec. 2.2).

    Attributes:
        p: number of residues: the vocabulary in and the classes out.
        d_model: residual stream width.
        n_heads: attention heads; d_head = d_model // n_heads.
        d_mlp: MLP neurons per block.
        n_layers: blocks (the paper's network has one).
        act: the MLP's activation ("relu", the paper's, or "gelu").
        norm: "none" (the paper's) or "layernorm" (before attention, before the MLP and before
            the unembedding, as TransformerLens's pre-LN blocks).
        bias: biases on every linear map (TransformerLens's b_Q, b_K, b_V, b_O, b_in, b_out, b_U);
            the paper's network has none.
        dropout: dropout on the attention and MLP outputs during training.
        init: the parametrization. "paper": the authors' code (their muP setting, s = 1):
            embeddings W_E, W_pos from N(0, 1), every other weight from N(0, 1 / fan_in),
            attention scores divided by d_head (not sqrt(d_head)) and the logits multiplied by
            1 / d_model. "gpt2": TransformerLens's default, every weight from
            N(0, (0.8 / sqrt(d_model))^2), scores divided by sqrt(d_head), logits unscaled.
        init_scale: multiplies the initial weights.
    """

    p: int = 97
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_layers: int = 1
    act: str = "relu"
    norm: str = "none"
    bias: bool = False
    dropout: float = 0.0
    init: str = "paper"
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self)  # types from the annotations; floats finite
        for name in ("p", "d_model", "n_heads", "d_mlp", "n_layers"):
            v = getattr(self, name)
            low = 2 if name == "p" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {v!r}.")
        if self.d_model % self.n_heads:
            raise ValueError(f"`d_model` ({self.d_model}) must be a multiple of `n_heads` "
                             f"({self.n_heads}).")
        if self.act not in TRANSFORMER_ACTIVATIONS:
            raise ValueError(f"The transformer's `act` must be one of "
                             f"{', '.join(TRANSFORMER_ACTIVATIONS)}, got {self.act!r}.")
        if self.norm not in TRANSFORMER_NORMS:
            raise ValueError(f"The transformer's `norm` must be one of "
                             f"{', '.join(TRANSFORMER_NORMS)}, got {self.norm!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must lie in [0, 1), got {self.dropout}.")
        if self.init not in TRANSFORMER_INITS:
            raise ValueError(f"The transformer's `init` must be one of "
                             f"{', '.join(TRANSFORMER_INITS)}, got {self.init!r}.")
        if not self.init_scale > 0.0:
            raise ValueError(f"`init_scale` must be positive, got {self.init_scale}.")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def attn_scale(self) -> float:
        """What attention scores are divided by."""
        return float(self.d_head) if self.init == "paper" else math.sqrt(self.d_head)

    @property
    def logit_scale(self) -> float:
        """What the unembedding's output is multiplied by."""
        return 1.0 / self.d_model if self.init == "paper" else 1.0

    @property
    def width(self) -> int:
        """The MLP neurons: what `width` means for this family."""
        return self.d_mlp

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _bias(on: bool, *shape: int) -> nn.Parameter | None:
    return nn.Parameter(torch.zeros(*shape)) if on else None


class LayerNorm(nn.Module):
    """TransformerLens's LayerNorm: weights `w`, `b`; hooks hook_scale (..., 1) and
    hook_normalized (..., d_model)."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale) * self.w + self.b


class Embed(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.p, cfg.d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        # An embedding lookup, not W_E[tokens]: indexing's backward on a CPU adds the rows of
        # repeated tokens with atomic float adds in whatever order the threads reach them, so
        # two identical steps differ in the last bits; embedding's backward sums each row's
        # contributions in input order, the same at every thread count.
        return F.embedding(tokens, self.W_E)


class PosEmbed(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(N_CTX, cfg.d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.W_pos[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)


class Attention(nn.Module):
    """Bidirectional multi-head attention with TransformerLens's weights and hooks."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d, dh))
        self.W_K = nn.Parameter(torch.empty(h, d, dh))
        self.W_V = nn.Parameter(torch.empty(h, d, dh))
        self.W_O = nn.Parameter(torch.empty(h, dh, d))
        self.b_Q, self.b_K, self.b_V = (_bias(cfg.bias, h, dh) for _ in range(3))
        self.b_O = _bias(cfg.bias, d)
        self.scale = cfg.attn_scale
        self.hook_q = HookPoint()  # (batch, pos, head, d_head)
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # (batch, head, query_pos, key_pos)
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()  # (batch, pos, head, d_head)

    def _project(self, x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
        # One (batch pos, d_model) x (d_model, head d_head) matmul rather than a batched one
        # per head: the same sums, several times faster on a CPU.
        flat = einops.rearrange(W, "head d_model d_head -> d_model (head d_head)")
        out = einops.rearrange(x @ flat, "batch pos (head d_head) -> batch pos head d_head",
                               head=W.shape[0])
        return out if b is None else out + b

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        q = self.hook_q(self._project(x, self.W_Q, self.b_Q))
        k = self.hook_k(self._project(x, self.W_K, self.b_K))
        v = self.hook_v(self._project(x, self.W_V, self.b_V))
        scores = einops.einsum(q, k, "batch q head d_head, batch k head d_head -> batch head q k")
        scores = self.hook_attn_scores(scores / self.scale)
        pattern = self.hook_pattern(scores.softmax(-1))
        z = self.hook_z(einops.einsum(pattern, v,
                                      "batch head q k, batch k head d_head -> batch q head d_head"))
        out = (einops.rearrange(z, "batch pos head d_head -> batch pos (head d_head)")
               @ einops.rearrange(self.W_O, "head d_head d_model -> (head d_head) d_model"))
        return out if self.b_O is None else out + self.b_O


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.act = cfg.act
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_in = _bias(cfg.bias, cfg.d_mlp)
        self.b_out = _bias(cfg.bias, cfg.d_model)
        self.hook_pre = HookPoint()  # (batch, pos, d_mlp)
        self.hook_post = HookPoint()

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = x @ self.W_in
        pre = self.hook_pre(pre if self.b_in is None else pre + self.b_in)
        post = self.hook_post(F.relu(pre) if self.act == "relu" else F.gelu(pre))
        out = post @ self.W_out
        return out if self.b_out is None else out + self.b_out


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = LayerNorm(cfg.d_model) if cfg.norm == "layernorm" else None
        self.ln2 = LayerNorm(cfg.d_model) if cfg.norm == "layernorm" else None
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        x = self.hook_resid_pre(x)
        attn_out = self.hook_attn_out(self.attn(x if self.ln1 is None else self.ln1(x)))
        x = self.hook_resid_mid(x + self.dropout(attn_out))
        mlp_out = self.hook_mlp_out(self.mlp(x if self.ln2 is None else self.ln2(x)))
        return self.hook_resid_post(x + self.dropout(mlp_out))


class Unembed(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.p))
        self.b_U = _bias(cfg.bias, cfg.p)
        self.logit_scale = cfg.logit_scale

    def forward(self, x: Float[Tensor, "batch d_model"]) -> Float[Tensor, "batch p"]:
        out = x @ self.W_U
        if self.logit_scale != 1.0:
            out = out * self.logit_scale
        return out if self.b_U is None else out + self.b_U


class HookedTransformer(HookedRootModule):
    """The encoder-only transformer on pairs (m, n): logits (batch, p) at the last position.

    Hook points (B pairs, 2 positions; TransformerLens's names and shapes): hook_embed,
    hook_pos_embed (B, 2, d_model); blocks.{L}.hook_resid_pre, hook_attn_out, hook_resid_mid,
    hook_mlp_out, hook_resid_post (B, 2, d_model); blocks.{L}.attn.hook_q, hook_k, hook_v,
    hook_z (B, 2, heads, d_head); hook_attn_scores, hook_pattern (B, heads, 2, 2);
    blocks.{L}.mlp.hook_pre, hook_post (B, 2, d_mlp); with LayerNorm also ln1, ln2 and
    ln_final's hook_scale (..., 1) and hook_normalized.

    Example:
        >>> model = HookedTransformer(TransformerConfig(p=23), seed=0)
        >>> logits, cache = model.run_with_cache(torch.tensor([[3, 5]]))
        >>> cache["blocks.0.attn.hook_pattern"].shape
        torch.Size([1, 4, 2, 2])
    """

    family: ClassVar[str] = "transformer"

    def __init__(self, cfg: TransformerConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = LayerNorm(cfg.d_model) if cfg.norm == "layernorm" else None
        self.unembed = Unembed(cfg)
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.reset_parameters(seed)
        self.setup()

    def reset_parameters(self, seed: int) -> None:
        """Draw fresh weights from the configured init (biases 0, LayerNorm w 1)."""
        gen = torch.Generator().manual_seed(seed)
        cfg = self.cfg
        # fan_in of each weight under "paper" (the input width of the map it is part of).
        fan_in = {"W_Q": cfg.d_model, "W_K": cfg.d_model, "W_V": cfg.d_model,
                  "W_O": cfg.d_model, "W_in": cfg.d_model, "W_out": cfg.d_mlp,
                  "W_U": cfg.d_model}
        with torch.no_grad():
            for name, param in self.named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if leaf.startswith("W_"):
                    if cfg.init == "gpt2":
                        std = 0.8 / math.sqrt(cfg.d_model)
                    else:
                        std = 1.0 if leaf in ("W_E", "W_pos") else fan_in[leaf] ** -0.5
                    param.copy_(torch.randn(param.shape, generator=gen) * std * cfg.init_scale)
                elif leaf == "w":
                    param.fill_(1.0)
                else:
                    param.zero_()

    @property
    def W_E(self) -> Tensor:
        return self.embed.W_E

    @property
    def W_U(self) -> Tensor:
        return self.unembed.W_U

    def forward(self, pairs: Int[Tensor, "batch 2"]) -> Float[Tensor, "batch p"]:
        x = self.hook_embed(self.embed(pairs)) + self.hook_pos_embed(self.pos_embed(pairs))
        for block in self.blocks:
            x = block(x)
        if self.ln_final is not None:
            x = self.ln_final(x)
        return self.unembed(x[:, -1])  # the prediction is read at the last position

    def neuron_sites(self) -> tuple[NeuronSite, ...]:
        """The embedding dimensions (columns of W_E over the tokens: the paper's IPR) and each
        block's MLP neurons (output weights W_out W_U for the last block), primary last."""
        cfg = self.cfg
        W_E = self.W_E.detach().T  # (d_model, p): one vector over the tokens per dimension
        sites = [NeuronSite("embed", "hook_embed", cfg.d_model, inputs=(W_E, W_E), position=-1)]
        for L, block in enumerate(self.blocks):
            last = L == cfg.n_layers - 1
            out = (block.mlp.W_out @ self.W_U * cfg.logit_scale).detach().T if last else None
            sites.append(NeuronSite(
                f"blocks.{L}.mlp", f"blocks.{L}.mlp.hook_post", cfg.d_mlp, output=out,
                residual=True, linear=last and self.ln_final is None, position=-1))
        return tuple(sites)

    @property
    def device(self) -> torch.device:
        return self.W_E.device
