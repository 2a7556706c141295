"""The training step: the MLP's forward and hand-derived backward for a stack of M models.

Why not autograd on `HookedMLP.forward`: at the paper's size the three (batch x width x p)
matmuls are most of the work, and autograd adds fresh allocations and extra elementwise passes
(the gather's backward, MSE's backward, x^2's backward) that cost about as much again. Here
every step writes into buffers allocated once per batch size, the MSE gradient is taken in
closed form, the factor 2 of x^2 and each model's loss scale are applied once to the summed
gradients, and the only host-device synchronization is at evaluation. Normalization layers are
differentiated by a local autograd call; everything else is written out.

The model axis: every tensor has a leading axis of M models (a single run is M = 1), each with
its own weights, examples, labels, dropout rate and loss scale. Layout: `U` and `V` are held as
(M, p, width), the transpose of `HookedMLP`'s, so that U e_m is a row gather; `W` is
(M, p, width) as in the model. The gather runs on the (M p, width) view of U with operand
indices offset by p per model, so one `index_select` (and one `index_add_` backward) serves all
models; the matmuls are batched over M. Work is cut into chunks of about `chunk_elements`
activations (whole models, or row ranges of one model) so that a chunk's activations stay in
cache between its forward and its backward.
"""

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..models.mlp import HookedMLP, MLPConfig

# Model state_dict names whose engine layout is the transpose of the model's.
TRANSPOSED = ("U", "V")
_BN_MOMENTUM, _NORM_EPS = 0.1, 1e-5  # PyTorch's BatchNorm1d / LayerNorm defaults


def stack_params(models: Sequence[HookedMLP], device: torch.device) -> dict[str, Tensor]:
    """The trainable tensors of `models` in the engine's layout, stacked on a leading model
    axis (fresh contiguous copies)."""
    out = {}
    for name, _ in models[0].named_parameters():
        ts = [dict(m.named_parameters())[name].detach() for m in models]
        ts = [t.T if name in TRANSPOSED else t for t in ts]
        out[name] = torch.stack(ts).to(device).contiguous()
    return out


def stack_buffers(models: Sequence[HookedMLP], device: torch.device) -> dict[str, Tensor]:
    """BatchNorm running statistics of `models`, stacked (empty without BatchNorm)."""
    names = [n for n, _ in models[0].named_buffers()]
    return {n: torch.stack([dict(m.named_buffers())[n].detach() for m in models]).to(device)
            .contiguous() for n in names}


@torch.no_grad()
def load_into_model(
    model: HookedMLP, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], index: int = 0
) -> None:
    """Copy model `index` of the engine's stacked tensors into `model` (exact: transposes and
    copies only)."""
    state = model.state_dict()
    for name, t in {**params, **buffers}.items():
        t = t[index]
        state[name].copy_(t.T if name in TRANSPOSED else t)


@dataclass(frozen=True)
class Batch:
    """The examples one step trains on, per model.

    Attributes:
        m, n: operands, (models, batch).
        labels: the labels trained on, (models, batch).
        target: their one-hot vectors, (models, batch, p).
        valid: which rows are real examples, or None when all are. Models with fewer examples
            than others are padded with rows that contribute nothing to the gradient.
        count: real rows per model, (models,) float; the mean loss divides by it.
    """

    m: Int[Tensor, "models batch"]
    n: Int[Tensor, "models batch"]
    labels: Int[Tensor, "models batch"]
    target: Float[Tensor, "models batch p"]
    valid: Bool[Tensor, "models batch"] | None = None
    count: Float[Tensor, " models"] | None = None

    @functools.cached_property
    def flat(self) -> tuple[Int[Tensor, " models_rows"], Int[Tensor, " models_rows"]]:
        """(m, n) as indices into the (M p, width) views of stacked U and V; computed once per
        batch (a full batch is the same object at every step)."""
        p = self.target.shape[-1]
        return flat_indices(self.m, p), flat_indices(self.n, p)

    def counts(self) -> Float[Tensor, " models"]:
        if self.count is not None:
            return self.count
        M, B = self.m.shape
        return self.target.new_full((M,), float(B))


def flat_indices(idx: Int[Tensor, "models rows"], p: int) -> Int[Tensor, " models_rows"]:
    """Operand indices into the (M p, width) view of a stacked U or V."""
    offsets = torch.arange(idx.shape[0], device=idx.device)[:, None] * p
    return (idx + offsets).reshape(-1)


# Activations per chunk: a chunk's (rows, width) activations, about 1.2 MB, stay in cache between
# its forward and its backward (measured 14.2 -> 11.8 ms per step at the paper's size).
_CHUNK_ELEMENTS = 300_000


_PACK = 4


def chunk_rows(batch: int, width: int, elements: int = _CHUNK_ELEMENTS) -> int:
    """Rows per chunk: equal chunks of about `elements` activations each."""
    chunks = max(1, -(-batch * width // elements))
    return -(-batch // chunks)


def chunks(models: int, batch: int, width: int,
           elements: int | None) -> list[tuple[int, int, int, int]]:
    """(first model, end model, first row, end row) of each chunk: several whole models when
    one model's batch is small, else row ranges of one model at a time."""
    if elements is None:
        return [(0, models, 0, batch)]
    if batch * width <= elements:
        # Whole models per chunk: packing up to 4x the row budget trades a little cache for
        # fewer, larger ops (measured at p 31, width 128, 32 models: 9.8 -> 8.5 ms per step).
        per = max(1, _PACK * elements // max(1, batch * width))
        return [(a, min(a + per, models), 0, batch) for a in range(0, models, per)]
    rows = chunk_rows(batch, width, elements)
    return [(i, i + 1, lo, min(lo + rows, batch)) for i in range(models)
            for lo in range(0, batch, rows)]


def default_chunk_elements(device: torch.device) -> int:
    # A GPU wants big kernels, bounded only so that a chunk's activations stay a few hundred MB.
    return _CHUNK_ELEMENTS if device.type == "cpu" else 1 << 26


class _Workspace:
    """Activation buffers for one batch size, allocated once: full-size logits and dropout
    mask, chunk-size everything else."""

    def __init__(self, batch: int, spans: list[tuple[int, int, int, int]], cfg: MLPConfig,
                 like: Tensor, dropout: bool) -> None:
        N, p, M = cfg.width, cfg.p, like.shape[0]
        mc = max(b - a for a, b, _, _ in spans)
        rows = max(hi - lo for _, _, lo, hi in spans)
        self.spans = spans
        self.pre, self.tmp, self.post, self.dh = (like.new_empty(mc, rows, N) for _ in range(4))
        self.dl = like.new_empty(mc, rows, p)
        self.logits = like.new_empty(M, batch, p)
        self.mask = like.new_empty(M, batch, N) if dropout else None


def _activation(act: str, x: Tensor, out: Tensor) -> Tensor:
    if act == "quad":
        return torch.mul(x, x, out=out)
    if act == "relu":
        return torch.clamp_min(x, 0.0, out=out)
    return F.gelu(x)


def _norm(cfg: MLPConfig, x: Tensor, params: Mapping[str, Tensor],
          buffers: Mapping[str, Tensor], a: int, b: int, training: bool,
          weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """Normalization of the post-activations (mc, rows, width) of models a..b-1."""
    w = params["norm.weight"][a:b] if weight is None else weight
    bb = params["norm.bias"][a:b] if bias is None else bias
    if cfg.norm == "batchnorm":
        # Each model's neurons are channels of their own: BatchNorm over (rows, mc * width).
        mc, rows, N = x.shape
        flat = x.transpose(0, 1).reshape(rows, mc * N)
        out = F.batch_norm(flat, buffers["norm.running_mean"][a:b].view(-1),
                           buffers["norm.running_var"][a:b].view(-1), w.reshape(-1),
                           bb.reshape(-1), training, _BN_MOMENTUM if training else 0.0,
                           _NORM_EPS)
        return out.reshape(rows, mc, N).transpose(0, 1)
    out = F.layer_norm(x, (cfg.width,), None, None, _NORM_EPS)
    return out * w[:, None, :] + bb[:, None, :]


class Step:
    """One training step's forward and hand-derived backward of M stacked `HookedMLP`s.

    `step(params, buffers, batch)` returns the training-mode logits and writes the gradients of
    each model's mean loss into `step.grads`; it equals autograd through `HookedMLP.forward` in
    training mode for each model (tests/test_train_engine.py checks every activation,
    normalization, bias, dropout site and loss, and stacks against single models).

    Args:
        cfg: the models' shared architecture (its `dropout` is overridden by `dropout`).
        loss: "mse" or "ce".
        params: the engine's stacked parameters (see `stack_params`), for shapes and devices.
        dropout: each model's dropout rate; None: `cfg.dropout` for every model.
        chunk_elements: activations per chunk; None: all models and rows at once.
    """

    def __init__(self, cfg: MLPConfig, loss: str, params: Mapping[str, Tensor], *,
                 dropout: Sequence[float] | None = None,
                 chunk_elements: int | None = _CHUNK_ELEMENTS) -> None:
        self.cfg = cfg
        self.loss = loss
        self.like = params["W"]
        M = self.like.shape[0]
        self.dropout = [float(cfg.dropout)] * M if dropout is None else [float(d) for d in dropout]
        if len(self.dropout) != M:
            raise ValueError(f"{len(self.dropout)} dropout rates for {M} models.")
        self.chunk_elements = chunk_elements
        self.grads = {k: torch.zeros_like(v) for k, v in params.items()}
        self._ws: dict[int, _Workspace] = {}

    def workspace(self, batch: int) -> _Workspace:
        if batch not in self._ws:
            M, cfg = self.like.shape[0], self.cfg
            # BatchNorm's statistics span the batch: a chunk holds whole models.
            elements = self.chunk_elements
            if elements is not None and cfg.norm == "batchnorm":
                elements = max(elements, batch * cfg.width)
            spans = chunks(M, batch, cfg.width, elements)
            self._ws[batch] = _Workspace(batch, spans, cfg, self.like, any(self.dropout))
        return self._ws[batch]

    @torch.no_grad()
    def __call__(
        self,
        params: Mapping[str, Tensor],
        buffers: Mapping[str, Tensor],
        batch: Batch,
        generators: Sequence[torch.Generator] | None = None,
    ) -> Float[Tensor, "models batch p"]:
        """Training-mode logits of `batch` (a reused buffer, valid until the next call of this
        batch size); gradients into `self.grads`; BatchNorm statistics in `buffers` updated.

        Args:
            generators: one per model, for its dropout mask (ignored without dropout).
        """
        cfg, g = self.cfg, self.grads
        M, size = batch.m.shape
        ws = self.workspace(size)
        if ws.mask is not None:
            for i, rate in enumerate(self.dropout):
                if rate == 0:
                    ws.mask[i].fill_(1.0)
                else:
                    keep = 1.0 - rate
                    gen = None if generators is None else generators[i]
                    ws.mask[i].bernoulli_(keep, generator=gen).div_(keep)  # nn.Dropout's scaling
        # Sums over chunks are accumulated unscaled; each model's loss scale is applied once.
        count = batch.counts()
        scale = (2.0 / (count * cfg.p)) if self.loss == "mse" else (1.0 / count)  # (M,)
        scale_in = 2.0 * scale if cfg.act == "quad" else scale
        flat_m, flat_n = batch.flat
        g["U"].zero_()
        g["V"].zero_()
        if cfg.norm == "batchnorm":
            buffers["norm.num_batches_tracked"].add_(1)
        for a, b, lo, hi in ws.spans:
            # A chunk is whole models or rows of one model: a contiguous range of flat rows.
            idx = slice(a * size + lo, (b - 1) * size + hi)
            self._chunk(params, buffers, batch, ws, a, b, lo, hi, flat_m[idx], flat_n[idx],
                        first=lo == 0)
        for name, t in g.items():
            s = scale_in if name in ("U", "V", "b_in") else scale
            t.mul_(s.view(M, *([1] * (t.ndim - 1))))
        return ws.logits

    def _chunk(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], batch: Batch,
               ws: _Workspace, a: int, b: int, lo: int, hi: int, fm: Tensor, fn: Tensor, *,
               first: bool) -> None:
        cfg, g, p, N = self.cfg, self.grads, self.cfg.p, self.cfg.width
        mc, rows = b - a, hi - lo
        mask = None if ws.mask is None else ws.mask[a:b, lo:hi]
        W = params["W"][a:b]
        # Forward.
        pre = ws.pre[:mc, :rows]
        # The flat indices address the whole (M p, N) table, so no per-chunk offset is needed.
        M = params["U"].shape[0]
        torch.index_select(params["U"].view(M * p, N), 0, fm, out=pre.view(mc * rows, N))
        tmp = ws.tmp[:mc, :rows]
        torch.index_select(params["V"].view(M * p, N), 0, fn, out=tmp.view(mc * rows, N))
        pre.add_(tmp)  # U e_m + V e_n
        if cfg.bias:
            pre.add_(params["b_in"][a:b, None, :])
        x = pre
        if mask is not None and cfg.dropout_site == "pre":
            x = torch.mul(pre, mask, out=tmp)
        post = _activation(cfg.act, x, ws.post[:mc, :rows])
        local = None
        hidden = post
        if cfg.norm != "none":
            with torch.enable_grad():
                inp = post.detach().requires_grad_()
                w = params["norm.weight"][a:b].detach().requires_grad_()
                bias = params["norm.bias"][a:b].detach().requires_grad_()
                out = _norm(cfg, inp, params, buffers, a, b, True, w, bias)
            hidden, local = out.detach(), (out, inp, w, bias)
        if mask is not None and cfg.dropout_site == "post":
            hidden = hidden * mask
        logits = torch.matmul(hidden, W.transpose(-1, -2), out=ws.logits[a:b, lo:hi])
        if cfg.bias:
            logits.add_(params["b_out"][a:b, None, :])
        # Backward, up to each model's loss scale.
        dl = ws.dl[:mc, :rows]  # d loss / d logits
        target = batch.target[a:b, lo:hi]
        if self.loss == "mse":
            torch.sub(logits, target, out=dl)
        else:
            torch.softmax(logits, dim=-1, out=dl).sub_(target)
        if batch.valid is not None:
            dl.mul_(batch.valid[a:b, lo:hi, None])  # padding rows contribute nothing
        _accumulate(g["W"][a:b], torch.matmul, dl.transpose(-1, -2), hidden, first)
        if cfg.bias:
            _accumulate(g["b_out"][a:b], torch.sum, dl, -2, first)
        dh = torch.matmul(dl, W, out=ws.dh[:mc, :rows])  # (mc, rows, N)
        if mask is not None and cfg.dropout_site == "post":
            dh.mul_(mask)
        if local is not None:
            out, inp, w, bias = local
            dh, gw, gb = torch.autograd.grad(out, (inp, w, bias), dh)
            _accumulate(g["norm.weight"][a:b], torch.clone, gw, None, first)
            _accumulate(g["norm.bias"][a:b], torch.clone, gb, None, first)
        if cfg.act == "quad":
            dpre = dh.mul_(x)  # the factor 2 is in the loss scale
        elif cfg.act == "relu":
            dpre = dh.mul_(x > 0)
        else:
            dpre = torch.ops.aten.gelu_backward(dh, x)
        if mask is not None and cfg.dropout_site == "pre":
            dpre.mul_(mask)
        if cfg.bias:
            _accumulate(g["b_in"][a:b], torch.sum, dpre, -2, first)
        dflat = dpre.reshape(mc * rows, N)
        g["U"].view(M * p, N).index_add_(0, fm, dflat)
        g["V"].view(M * p, N).index_add_(0, fn, dflat)


def _accumulate(into: Tensor, op, a: Tensor, b: object, first: bool) -> None:
    """into = op(a, b) on the first chunk, into += op(a, b) after."""
    value = op(a) if b is None else op(a, b)
    if first:
        into.copy_(value)
    else:
        into.add_(value)
