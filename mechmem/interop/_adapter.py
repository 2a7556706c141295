"""A TransformerLens model seen through mechmem's model surface and neuron sites.

The model is TransformerLens 4's `TransformerBridge` (`boot_native`) or 3.x's `HookedTransformer`:
both have `W_E`, `W_U`, `blocks[L].mlp.W_out`, `hooks()`, `run_with_cache` and the hook names
`blocks.{L}.mlp.hook_post`, ... (on a bridge, aliases of its native hook points).

`TransformerLensModel` wraps the model (sharing its weights and hooks, copying nothing): it reads
inputs in the model's token format, returns the logits at the last position over the p residues,
and shows the embedding and each block's MLP neurons as neuron sites, so that every analyzer,
ablation and pruning included, runs through TransformerLens's own hook points.
"""

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ..models.sites import NeuronSite
from ..tokens import TOKEN_FORMATS, check_tokens, n_tokens
from ._lens import is_transformer_lens_model

FAMILY = "transformer-lens"


@dataclass(frozen=True)
class LensConfig:
    """What mechmem reads of a TransformerLens model's config (plain data for reports and JSON).

    Attributes:
        p: number of residues (the classes read out).
        tokens: the model's token format (`mechmem.tokens.TOKEN_FORMATS`).
        d_model, n_heads, d_head, d_mlp, n_layers: its sizes.
        act: the MLP activation (TransformerLens's `act_fn`).
        norm: TransformerLens's `normalization_type` ("none" for None).
        attention_dir: "causal" or "bidirectional".
        d_vocab, d_vocab_out, n_ctx: its vocabulary in and out and its context length.
    """

    p: int
    tokens: str
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    n_layers: int
    act: str
    norm: str
    attention_dir: str
    d_vocab: int
    d_vocab_out: int
    n_ctx: int

    @property
    def width(self) -> int:
        """The MLP neurons: what `width` means for this family."""
        return self.d_mlp

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def lens_config(cfg: Any, tokens: str | None = None) -> LensConfig:
    """mechmem's view of a `TransformerBridgeConfig` or `HookedTransformerConfig`; the token
    format is the one its context length implies (n_ctx 2: "operands", 3: "equals") unless
    given."""
    if tokens is None:
        by_ctx = {n_tokens(t): t for t in TOKEN_FORMATS}
        if cfg.n_ctx not in by_ctx:
            raise ValueError(
                f"This TransformerLens model has n_ctx={cfg.n_ctx}; mechmem reads operand pairs "
                "as 2 tokens (a b) or 3 (a b =), so it cannot tell how this model reads them.")
        tokens = by_ctx[cfg.n_ctx]
    check_tokens(tokens)
    if cfg.n_ctx < n_tokens(tokens):
        raise ValueError(f"A TransformerLens model with n_ctx={cfg.n_ctx} cannot read the "
                         f"{n_tokens(tokens)} tokens of the {tokens!r} format.")
    p = cfg.d_vocab - 1 if tokens == "equals" else cfg.d_vocab
    if cfg.d_vocab_out not in (p, p + 1) or p < 2:
        raise ValueError(
            f"A model of the {tokens!r} format with d_vocab={cfg.d_vocab} has p={p} residues, "
            f"but its d_vocab_out={cfg.d_vocab_out} is neither p nor p + 1.")
    if getattr(cfg, "attn_only", False) or cfg.d_mlp is None:
        raise ValueError("This TransformerLens model is attention-only: it has no MLP neurons "
                         "for mechmem's analyzers.")
    norm = cfg.normalization_type
    return LensConfig(p=p, tokens=tokens, d_model=int(cfg.d_model), n_heads=int(cfg.n_heads),
                      d_head=int(cfg.d_head), d_mlp=int(cfg.d_mlp), n_layers=int(cfg.n_layers),
                      act=str(cfg.act_fn), norm="none" if norm is None else str(norm),
                      attention_dir=str(cfg.attention_dir), d_vocab=int(cfg.d_vocab),
                      d_vocab_out=int(cfg.d_vocab_out), n_ctx=int(cfg.n_ctx))


class TransformerLensModel(nn.Module):
    """A TransformerLens model on a modular task, as mechmem's analyzers see it.

    Its forward takes the inputs of its token format ((batch, 2) operands or (batch, 3)
    `a b =`) and returns the logits at the last position over the p residues, (batch, p).
    Hooks, caches and ablations go through the wrapped model's own hook points (the same names:
    `blocks.0.mlp.hook_post`, ...). Neuron sites: "embed" (the columns of W_E over the p residue
    tokens, one vector per embedding dimension: the paper's IPR) and each block's MLP neurons
    at `blocks.{L}.mlp.hook_post`, read at the last position (output weights W_out W_U for the
    last block), primary last.

    Args:
        model: a `TransformerBridge` (TransformerLens 4) or `HookedTransformer` (3.x), kept,
            not copied: `.model`.
        tokens: its token format; default: the one its n_ctx implies.

    Example:
        >>> tlm = TransformerLensModel(model)          # model from TransformerLens's demo
        >>> tlm(torch.tensor([[3, 5, 113]])).shape
        torch.Size([1, 113])
    """

    family: ClassVar[str] = FAMILY

    def __init__(self, model: nn.Module, *, tokens: str | None = None) -> None:
        if not is_transformer_lens_model(model):
            raise TypeError(f"TransformerLensModel wraps a TransformerLens TransformerBridge or "
                            f"HookedTransformer, got {type(model).__name__}.")
        super().__init__()
        self.cfg = lens_config(model.cfg, tokens)
        self.model = model

    @property
    def tokens(self) -> str:
        return self.cfg.tokens

    @property
    def device(self) -> torch.device:
        return self.model.W_E.device

    @property
    def W_E(self) -> torch.Tensor:
        """The wrapped model's token embedding (d_vocab, d_model), `=` row included."""
        return self.model.W_E

    def _check(self, inputs: Tensor) -> None:
        want = n_tokens(self.cfg.tokens)
        if inputs.ndim != 2 or inputs.shape[1] != want:
            raise ValueError(
                f"This TransformerLens model reads {want} tokens per example "
                f"({self.cfg.tokens!r} format: {TOKEN_FORMATS[self.cfg.tokens]}), got inputs of "
                f"shape {tuple(inputs.shape)}: build them with a dataset of "
                f"tokens={self.cfg.tokens!r} (dataset.model_inputs()).")

    def _logits(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, "batch p"]:
        return logits[:, -1, : self.cfg.p]

    def forward(self, inputs: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch p"]:
        self._check(inputs)
        if inputs.shape[0] == 0:  # a bridge's attention cannot reshape an empty batch
            return self.W_E.new_zeros(0, self.cfg.p)
        return self._logits(self.model(inputs, return_type="logits"))

    def run_with_cache(
        self, inputs: Int[Tensor, "batch pos"], *, names_filter: Any = None, **kwargs: Any
    ) -> tuple[Float[Tensor, "batch p"], Any]:
        """The logits (batch, p) and TransformerLens's `ActivationCache` of the wrapped model."""
        self._check(inputs)
        logits, cache = self.model.run_with_cache(inputs, names_filter=names_filter,
                                                  return_type="logits", **kwargs)
        return self._logits(logits), cache

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[Any, Any]] = (),
              bwd_hooks: Sequence[tuple[Any, Any]] = ()) -> Iterator["TransformerLensModel"]:
        """TransformerLens's `hooks()` context on the wrapped model; yields this wrapper."""
        with self.model.hooks(fwd_hooks=list(fwd_hooks), bwd_hooks=list(bwd_hooks)):
            yield self

    def list_hooks(self) -> dict[str, int]:
        """Hook points of the wrapped model holding hooks: name -> how many."""
        # A bridge lists a hook point under its own name and then its 3.x alias: count it once,
        # under the alias (the name the analyzers hook).
        names = {id(hp): name for name, hp in self.model.hook_dict.items()}
        return {name: len(hp.fwd_hooks) + len(hp.bwd_hooks)
                for name, hp in self.model.hook_dict.items()
                if names[id(hp)] == name and (hp.fwd_hooks or hp.bwd_hooks)}

    def neuron_sites(self) -> tuple[NeuronSite, ...]:
        """The embedding dimensions (W_E's columns over the p residue tokens; the `=` token is
        no residue) and each block's MLP neurons, primary last."""
        m, cfg = self.model, self.cfg
        W_E = m.W_E.detach()[: cfg.p].T  # (d_model, p): one vector over the residues per dim
        # Position 1 is the second operand, as for mechmem's transformer.
        sites = [NeuronSite("embed", "hook_embed", cfg.d_model, inputs=(W_E, W_E), position=1)]
        for L, block in enumerate(m.blocks):
            last = L == cfg.n_layers - 1
            out = (block.mlp.W_out @ m.W_U[:, : cfg.p]).detach().T if last else None
            sites.append(NeuronSite(
                f"blocks.{L}.mlp", f"blocks.{L}.mlp.hook_post", cfg.d_mlp, output=out,
                residual=True, linear=last and cfg.norm == "none", position=-1))
        return tuple(sites)


def adapt_model(model: Any, tokens: str | None = None) -> Any:
    """`model` as mechmem's analyzers read it: a TransformerLens model wrapped in
    a `TransformerLensModel`; anything else unchanged."""
    if is_transformer_lens_model(model):
        return TransformerLensModel(model, tokens=tokens)
    return model
