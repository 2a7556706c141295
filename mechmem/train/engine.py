"""The training step: the MLP's forward and hand-derived backward over reused buffers.

Why not autograd on `HookedMLP.forward`: at the paper's size the three (batch x width x p)
matmuls are most of the work, and autograd adds fresh allocations and extra elementwise passes
(the gather's backward, MSE's backward, x^2's backward) that cost about as much again. Here
every step writes into buffers allocated once per batch size, the MSE gradient is taken in
closed form, the factor 2 of x^2 and the loss scale ride on `index_add_`'s `alpha`, and the
only host-device synchronization is at evaluation. Normalization layers are differentiated by
a local autograd call; everything else is written out.

Layout: `U` and `V` are held as (p, width), the transpose of `HookedMLP`'s, so that the lookup
U e_m is a row gather; `W` is (p, width) as in the model. Every op indexes the trailing two axes
(index_select / index_add_ on -2, matmul on the last two), so a leading model axis (M, p, width)
goes through the same code: the step is a function of (params, batch) that writes gradients.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ..models.mlp import HookedMLP, MLPConfig

# Model state_dict names whose engine layout is the transpose of the model's.
_TRANSPOSED = ("U", "V")
_BN_MOMENTUM, _NORM_EPS = 0.1, 1e-5  # PyTorch's BatchNorm1d / LayerNorm defaults


def params_from_model(model: HookedMLP, device: torch.device) -> dict[str, Tensor]:
    """The trainable tensors of `model` in the engine's layout (fresh contiguous copies)."""
    out = {}
    for name, t in model.named_parameters():
        t = t.detach()
        out[name] = (t.T if name in _TRANSPOSED else t).to(device, copy=True).contiguous()
    return out


def buffers_from_model(model: HookedMLP, device: torch.device) -> dict[str, Tensor]:
    """BatchNorm running statistics of `model` (empty without BatchNorm)."""
    return {name: t.detach().to(device, copy=True) for name, t in model.named_buffers()}


@torch.no_grad()
def load_into_model(
    model: HookedMLP, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor]
) -> None:
    """Copy engine tensors back into `model` (exact: transposes and copies only)."""
    state = model.state_dict()
    for name, t in {**params, **buffers}.items():
        state[name].copy_(t.T if name in _TRANSPOSED else t)


@dataclass(frozen=True)
class Batch:
    """Operands, labels and one-hot targets of the examples one step trains on."""

    m: Int[Tensor, " batch"]
    n: Int[Tensor, " batch"]
    labels: Int[Tensor, " batch"]
    target: Float[Tensor, "batch p"]


# Rows per chunk: a chunk's (rows, width) activations, about 1.2 MB, stay in cache between its
# forward and its backward (measured 14.2 -> 11.8 ms per step at the paper's size).
_CHUNK_ELEMENTS = 300_000


def chunk_rows(batch: int, width: int, elements: int = _CHUNK_ELEMENTS) -> int:
    """Rows per chunk: equal chunks of about `elements` activations each."""
    chunks = max(1, -(-batch * width // elements))
    return -(-batch // chunks)


class _Workspace:
    """Activation buffers for one batch size, allocated once: full-size logits and dropout
    mask, chunk-size everything else."""

    def __init__(self, batch: int, rows: int, cfg: MLPConfig, like: Tensor) -> None:
        N, p = cfg.width, cfg.p
        lead = like.shape[:-2]  # a leading model axis, if the parameters have one

        def new(*shape: int) -> Tensor:
            return like.new_empty(*lead, *shape)

        self.rows = rows
        self.pre, self.tmp, self.post, self.dh = (new(rows, N) for _ in range(4))
        self.dl = new(rows, p)
        self.logits = new(batch, p)
        self.mask = new(batch, N) if cfg.dropout > 0 else None


class Step:
    """One training step's forward and hand-derived backward of `HookedMLP`.

    `step(params, buffers, batch)` returns the training-mode logits and writes the gradients of
    the mean loss into `step.grads`; it equals autograd through `HookedMLP.forward` in training
    mode (tests/test_train_engine.py checks every activation, normalization, bias, dropout site
    and loss). The batch is processed in row chunks (forward then backward of each chunk while
    its activations are in cache); BatchNorm, whose statistics span the batch, takes it whole.

    Args:
        cfg: the model.
        loss: "mse" or "ce".
        params: the engine's parameters (see `params_from_model`), only for shapes and devices.
        chunk_elements: activations per chunk (rows x width); None: the whole batch at once.
    """

    def __init__(self, cfg: MLPConfig, loss: str, params: Mapping[str, Tensor], *,
                 chunk_elements: int | None = _CHUNK_ELEMENTS) -> None:
        self.cfg = cfg
        self.loss = loss
        self.like = params["W"]
        self.chunk_elements = chunk_elements
        self.grads = {k: torch.zeros_like(v) for k, v in params.items()}
        self._ws: dict[int, _Workspace] = {}

    def workspace(self, batch: int) -> _Workspace:
        if batch not in self._ws:
            whole = self.chunk_elements is None or self.cfg.norm == "batchnorm"
            rows = batch if whole else chunk_rows(batch, self.cfg.width, self.chunk_elements)
            self._ws[batch] = _Workspace(batch, rows, self.cfg, self.like)
        return self._ws[batch]

    @torch.no_grad()
    def __call__(
        self,
        params: Mapping[str, Tensor],
        buffers: Mapping[str, Tensor],
        batch: Batch,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, "*models batch p"]:
        """Training-mode logits of `batch` (a reused buffer, valid until the next call of this
        batch size); gradients into `self.grads`; BatchNorm statistics in `buffers` updated."""
        cfg, g = self.cfg, self.grads
        size = batch.m.shape[0]
        ws = self.workspace(size)
        if ws.mask is not None:
            keep = 1.0 - cfg.dropout
            ws.mask.bernoulli_(keep, generator=generator).div_(keep)  # nn.Dropout's scaling
        if self.loss == "mse":
            scale = 2.0 / (size * cfg.p)  # d/dz of mean((z - y)^2) over examples and classes
        else:
            scale = 1.0 / size
        scale_in = 2.0 * scale if cfg.act == "quad" else scale  # d(x^2)/dx = 2x
        # Sums over chunks are accumulated unscaled; `scale` is applied once at the end.
        g["U"].zero_()
        g["V"].zero_()
        for k, lo in enumerate(range(0, size, ws.rows)):
            hi = min(lo + ws.rows, size)
            self._chunk(params, buffers, batch, ws, lo, hi, first=k == 0, scale_in=scale_in)
        for name, t in g.items():
            if name not in ("U", "V"):
                t.mul_(scale_in if name == "b_in" else scale)
        return ws.logits

    def _chunk(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], batch: Batch,
               ws: _Workspace, lo: int, hi: int, *, first: bool, scale_in: float) -> None:
        cfg, g = self.cfg, self.grads
        rows = hi - lo
        m, n = batch.m[lo:hi], batch.n[lo:hi]
        mask = None if ws.mask is None else ws.mask[..., lo:hi, :]
        # Forward.
        pre = torch.index_select(params["U"], -2, m, out=ws.pre[..., :rows, :])  # U e_m
        pre.add_(torch.index_select(params["V"], -2, n, out=ws.tmp[..., :rows, :]))
        if cfg.bias:
            pre.add_(params["b_in"])
        x = pre
        if mask is not None and cfg.dropout_site == "pre":
            x = torch.mul(pre, mask, out=ws.tmp[..., :rows, :])
        if cfg.act == "quad":
            post = torch.mul(x, x, out=ws.post[..., :rows, :])
        elif cfg.act == "relu":
            post = torch.clamp_min(x, 0.0, out=ws.post[..., :rows, :])
        else:
            post = F.gelu(x)
        hidden, local = self._norm_forward(post, params, buffers)
        if mask is not None and cfg.dropout_site == "post":
            hidden = hidden * mask
        logits = torch.matmul(hidden, params["W"].transpose(-1, -2),
                              out=ws.logits[..., lo:hi, :])
        if cfg.bias:
            logits.add_(params["b_out"])
        # Backward, up to the loss scale.
        dl = ws.dl[..., :rows, :]  # (rows, p) d loss / d logits
        target = batch.target[lo:hi]
        if self.loss == "mse":
            torch.sub(logits, target, out=dl)
        else:
            torch.softmax(logits, dim=-1, out=dl).sub_(target)
        _accumulate(g["W"], torch.matmul, dl.transpose(-1, -2), hidden, first)
        if cfg.bias:
            _accumulate(g["b_out"], torch.sum, dl, -2, first)
        dh = torch.matmul(dl, params["W"], out=ws.dh[..., :rows, :])  # (rows, N)
        if mask is not None and cfg.dropout_site == "post":
            dh.mul_(mask)
        if local is not None:
            out, inp, w, b = local
            dh, gw, gb = torch.autograd.grad(out, (inp, w, b), dh)
            _accumulate(g["norm.weight"], torch.clone, gw, None, first)
            _accumulate(g["norm.bias"], torch.clone, gb, None, first)
        if cfg.act == "quad":
            dpre = dh.mul_(x)  # the factor 2 rides on index_add_'s alpha
        elif cfg.act == "relu":
            dpre = dh.mul_(x > 0)
        else:
            dpre = torch.ops.aten.gelu_backward(dh, x)
        if mask is not None and cfg.dropout_site == "pre":
            dpre.mul_(mask)
        if cfg.bias:
            _accumulate(g["b_in"], torch.sum, dpre, -2, first)
        g["U"].index_add_(-2, m, dpre, alpha=scale_in)
        g["V"].index_add_(-2, n, dpre, alpha=scale_in)

    def _norm_forward(
        self, post: Tensor, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor] | None]:
        if self.cfg.norm == "none":
            return post, None
        with torch.enable_grad():
            inp = post.detach().requires_grad_()
            w = params["norm.weight"].detach().requires_grad_()
            b = params["norm.bias"].detach().requires_grad_()
            if self.cfg.norm == "batchnorm":
                out = F.batch_norm(inp, buffers["norm.running_mean"], buffers["norm.running_var"],
                                   w, b, True, _BN_MOMENTUM, _NORM_EPS)
                buffers["norm.num_batches_tracked"].add_(1)
            else:
                out = F.layer_norm(inp, (self.cfg.width,), w, b, _NORM_EPS)
        return out.detach(), (out, inp, w, b)


def _accumulate(into: Tensor, op, a: Tensor, b: object, first: bool) -> None:
    """into = op(a, b) on the first chunk, into += op(a, b) after."""
    value = op(a) if b is None else op(a, b)
    if first:
        into.copy_(value)
    else:
        into.add_(value)


@torch.no_grad()
def eval_logits(
    cfg: MLPConfig,
    params: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    m: Int[Tensor, " batch"],
    n: Int[Tensor, " batch"],
) -> Float[Tensor, "batch p"]:
    """Evaluation-mode logits (no dropout, BatchNorm running statistics); a fresh tensor.

    Rows go through in cache-sized chunks, like the training step's.
    """
    size = m.shape[0]
    logits = params["W"].new_empty(size, cfg.p)
    rows = chunk_rows(size, cfg.width)
    scratch = params["W"].new_empty(rows, cfg.width)
    for lo in range(0, size, rows):
        hi = min(lo + rows, size)
        x = torch.index_select(params["U"], -2, m[lo:hi], out=scratch[: hi - lo])
        x.add_(torch.index_select(params["V"], -2, n[lo:hi]))
        if cfg.bias:
            x.add_(params["b_in"])
        if cfg.act == "quad":
            x.mul_(x)
        elif cfg.act == "relu":
            x.clamp_min_(0.0)
        else:
            x = F.gelu(x)
        if cfg.norm == "batchnorm":
            x = F.batch_norm(x, buffers["norm.running_mean"], buffers["norm.running_var"],
                             params["norm.weight"], params["norm.bias"], False, 0.0, _NORM_EPS)
        elif cfg.norm == "layernorm":
            x = F.layer_norm(x, (cfg.width,), params["norm.weight"], params["norm.bias"],
                             _NORM_EPS)
        out = torch.matmul(x, params["W"].transpose(-1, -2), out=logits[lo:hi])
        if cfg.bias:
            out.add_(params["b_out"])
    return logits
