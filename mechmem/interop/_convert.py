"""Converters between mechmem's `HookedTransformer` and TransformerLens's, logits equal both ways.

TransformerLens's model is a `TransformerBridge` built with `boot_native` on TransformerLens 4
and a `HookedTransformer` on 3.x. mechmem's weights carry 3.x's property names, which 4.x's
`convert_tl_checkpoint` maps to the bridge's. The two share hook names. What differs:
TransformerLens always has biases (zero where mechmem has none) and no logit scale, so mechmem's
`init="paper"` scale 1 / d_model is folded into W_U on export; its attention scale travels as
TransformerLens's `attn_scale` (d_head under "paper", sqrt(d_head) under "gpt2"), which is also
how an import recovers `init` and unfolds W_U. Each conversion checks the logits of the result
against the original's.
"""

import math
from typing import Any

import torch
from torch import nn

from ..models.transformer import HookedTransformer, TransformerConfig
from ._lens import (
    attention_scale,
    build_config,
    build_model,
    is_bridge,
    is_transformer_lens_model,
    to_model_format,
    to_property_format,
)

_BIASES = ("b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "b_U")
_ATOL = 1e-4  # float32 logits of the two models agree to rounding; a real mismatch is far larger


def _check_logits(a: nn.Module, b: nn.Module, inputs: torch.Tensor, what: str) -> None:
    with torch.no_grad():
        modes = (a.training, b.training)
        a.eval(), b.eval()
        la = a(inputs)
        lb = b(inputs)
        a.train(modes[0]), b.train(modes[1])
    la = la[:, -1] if la.ndim == 3 else la
    lb = lb[:, -1] if lb.ndim == 3 else lb
    diff = float((la.double() - lb.double()).abs().max())
    scale = max(1.0, float(la.double().abs().max()))
    if not diff <= _ATOL * scale:
        raise ValueError(f"{what} does not reproduce the model's logits (largest difference "
                         f"{diff:.3g}): the model uses a setting the conversion does not carry.")


def _sample_pairs(p: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, p, (min(256, p * p), 2), generator=gen).to(device)


def to_transformer_lens(model: HookedTransformer) -> nn.Module:
    """A TransformerLens model computing the same logits as mechmem's transformer: a
    `TransformerBridge` (`boot_native`) on TransformerLens 4, a `HookedTransformer` on 3.x.

    Weights are copied (the two models share nothing). The TransformerLens model reads the two
    operands (n_ctx 2, d_vocab p) with bidirectional attention; its logits are (batch, 2, p),
    mechmem's logits are its last position. mechmem's logit scale (1 / d_model under
    init="paper") is folded into W_U; b_U is added after the scale in both, so it is copied as
    it is. Dropout, a training-time setting, is not carried (TransformerLens has none).

    Args:
        model: a mechmem `HookedTransformer`.

    Returns:
        The TransformerLens model in eval mode, on the model's device.

    Example:
        >>> tl_model = to_transformer_lens(ckpt.model)
        >>> tl_model(pairs)[:, -1]   # == ckpt.model(pairs)
    """
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"to_transformer_lens converts mechmem's HookedTransformer, got "
                        f"{type(model).__name__}.")
    c = model.cfg
    W_E = model.W_E
    cfg = build_config(dict(
        n_layers=c.n_layers, d_model=c.d_model, n_ctx=2, d_head=c.d_head, n_heads=c.n_heads,
        d_mlp=c.d_mlp, d_vocab=c.p, d_vocab_out=c.p, act_fn=c.act,
        normalization_type="LN" if c.norm == "layernorm" else None, eps=1e-5,
        attention_dir="bidirectional", use_attn_scale=True, attn_scale=float(c.attn_scale),
        positional_embedding_type="standard", init_weights=False, device=str(W_E.device),
        dtype=W_E.dtype, default_prepend_bos=False))
    out = build_model(cfg)
    with torch.no_grad():
        mine = {name: (value * c.logit_scale if name == "unembed.W_U" else value).detach()
                for name, value in model.state_dict().items()}
        state = to_model_format(mine, out)
        for name, value in out.state_dict().items():
            if name not in state:  # a bias mechmem's model has none of, or 3.x's attention mask
                bias = name.endswith(".bias") or name.rsplit(".", 1)[-1] in _BIASES
                state[name] = torch.zeros_like(value) if bias else value
    out.load_state_dict(state, strict=True)
    if out.W_E.device != W_E.device:
        out.to(W_E.device)
    out.eval()
    _check_logits(model, out, _sample_pairs(c.p, W_E.device), "to_transformer_lens")
    return out


def _unsupported(cfg: Any) -> list[str]:
    """The settings of a TransformerLens config that mechmem's transformer does not have."""
    checks = {
        "positional_embedding_type": ("standard",), "act_fn": ("relu", "gelu"),
        "normalization_type": (None, "LN"), "gated_mlp": (False,), "attn_only": (False,),
        "parallel_attn_mlp": (False,), "final_rms": (False,), "post_embedding_ln": (False,),
        "use_normalization_before_and_after": (False,), "scale_attn_by_inverse_layer_idx":
        (False,), "use_qk_norm": (False,), "num_experts": (None,), "n_key_value_heads": (None,),
        "use_local_attn": (False,), "use_attention_sinks": (False,),
    }
    bad = [f"{k}={getattr(cfg, k)!r}" for k, allowed in checks.items()
           if hasattr(cfg, k) and getattr(cfg, k) not in allowed]
    for cap in ("attn_scores_soft_cap", "output_logits_soft_cap"):
        if getattr(cfg, cap, -1.0) > 0:
            bad.append(f"{cap}={getattr(cfg, cap)!r}")
    if cfg.normalization_type == "LN" and cfg.eps != 1e-5:
        bad.append(f"eps={cfg.eps!r} (mechmem's LayerNorm has 1e-5)")
    return bad


def _init_from_scale(cfg: Any, bridge: bool) -> str:
    """mechmem's `init` whose attention scale is the model's: d_head ("paper"), sqrt(d_head)
    ("gpt2")."""
    scale = attention_scale(cfg, bridge)
    if math.isclose(scale, math.sqrt(cfg.d_head), rel_tol=1e-6):
        return "gpt2"
    if math.isclose(scale, float(cfg.d_head), rel_tol=1e-6):
        return "paper"
    raise ValueError(
        f"This TransformerLens model divides attention scores by {scale:g}; mechmem's "
        f"transformer divides them by d_head ({cfg.d_head}, init='paper') or sqrt(d_head) "
        f"({math.sqrt(cfg.d_head):g}, init='gpt2'), so it cannot be converted.")


def from_transformer_lens(tl_model: nn.Module) -> HookedTransformer:
    """mechmem's `HookedTransformer` computing the same logits as a TransformerLens model.

    The TransformerLens model must be of the architecture mechmem's transformer has: two operand
    tokens (n_ctx 2, d_vocab = d_vocab_out = p), bidirectional attention, standard position
    embeddings, ReLU or GELU MLPs, no or TransformerLens's "LN" normalization. `init` is read
    from the attention scale (d_head: "paper", and W_U is divided by the logit scale 1 / d_model
    again; sqrt(d_head): "gpt2"); `bias` is True where any bias is non-zero. Models of another
    architecture (TransformerLens's grokking demo: 3 tokens `a b =`, causal attention) are
    analysed as they are: `mechmem.analyze(tl_model, dataset)`.

    Args:
        tl_model: a TransformerLens `TransformerBridge` (4.x) or `HookedTransformer` (3.x).

    Returns:
        A mechmem `HookedTransformer` in eval mode, on the model's device (weights copied).

    Raises:
        ValueError: the architecture differs from mechmem's transformer (naming the settings).
    """
    if not is_transformer_lens_model(tl_model):
        raise TypeError(f"from_transformer_lens converts a TransformerLens TransformerBridge or "
                        f"HookedTransformer, got {type(tl_model).__name__}.")
    cfg = tl_model.cfg
    if cfg.n_ctx != 2 or cfg.attention_dir != "bidirectional" or cfg.d_vocab != cfg.d_vocab_out:
        raise ValueError(
            f"mechmem's transformer reads the two operands (n_ctx 2, d_vocab = d_vocab_out) with "
            f"bidirectional attention; this TransformerLens model has n_ctx={cfg.n_ctx}, "
            f"d_vocab={cfg.d_vocab}, d_vocab_out={cfg.d_vocab_out} and {cfg.attention_dir} "
            "attention: analyse it as it is with mechmem.analyze(model, dataset) (a dataset of "
            "tokens='equals' for the a b = format).")
    bad = _unsupported(cfg)
    if bad:
        raise ValueError(f"mechmem's transformer has no {', '.join(bad)}: this TransformerLens "
                         "model cannot be converted; analyse it as it is with "
                         "mechmem.analyze(model, dataset).")
    bridge = is_bridge(tl_model)
    init = _init_from_scale(cfg, bridge)
    state = {k: v.detach() for k, v in tl_model.state_dict().items()}
    if bridge:
        state = to_property_format(state, cfg)
    bias = any(bool(v.ne(0).any()) for k, v in state.items()
               if k.rsplit(".", 1)[-1] in _BIASES)
    mcfg = TransformerConfig(
        p=cfg.d_vocab, d_model=cfg.d_model, n_heads=cfg.n_heads, d_mlp=cfg.d_mlp,
        n_layers=cfg.n_layers, act=cfg.act_fn,
        norm="layernorm" if cfg.normalization_type == "LN" else "none", bias=bias, init=init)
    if mcfg.d_head != cfg.d_head:
        raise ValueError(f"mechmem's transformer has d_head = d_model / n_heads "
                         f"({mcfg.d_head}); this model has d_head={cfg.d_head}.")
    model = HookedTransformer(mcfg)
    device = tl_model.W_E.device
    mine = model.state_dict()
    with torch.no_grad():
        weights = {k: (state[k] / mcfg.logit_scale if k == "unembed.W_U" else state[k]).clone()
                   for k in mine}
    model.load_state_dict(weights, strict=True)
    model.to(device).eval()
    _check_logits(tl_model, model, _sample_pairs(mcfg.p, device), "from_transformer_lens")
    return model
