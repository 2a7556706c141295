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


class _Workspace:
    """Activation and gradient buffers for one batch size, allocated once."""

    def __init__(self, batch: int, cfg: MLPConfig, like: Tensor) -> None:
        N, p = cfg.width, cfg.p
        lead = like.shape[:-2]  # a leading model axis, if the parameters have one

        def new(*shape: int) -> Tensor:
            return like.new_empty(*lead, *shape)

        self.pre, self.tmp, self.post, self.dpost = (new(batch, N) for _ in range(4))
        self.logits, self.dl = new(batch, p), new(batch, p)
        self.mask = new(batch, N) if cfg.dropout > 0 else None


class Step:
    """Forward and backward of `HookedMLP` for training, writing gradients into `grads`.

    Calling `forward` then `backward` on a batch equals autograd's gradient of the mean loss
    through `HookedMLP.forward` in training mode (tests/test_train_engine.py checks this for every
    activation, normalization, bias, dropout site and loss).
    """

    def __init__(self, cfg: MLPConfig, loss: str, params: Mapping[str, Tensor]) -> None:
        self.cfg = cfg
        self.loss = loss
        self.like = params["W"]
        self.grads = {k: torch.zeros_like(v) for k, v in params.items()}
        self._ws: dict[int, _Workspace] = {}
        self._saved: dict[str, object] = {}

    def workspace(self, batch: int) -> _Workspace:
        if batch not in self._ws:
            self._ws[batch] = _Workspace(batch, self.cfg, self.like)
        return self._ws[batch]

    @torch.no_grad()
    def forward(
        self,
        params: Mapping[str, Tensor],
        buffers: Mapping[str, Tensor],
        batch: Batch,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, "*models batch p"]:
        """Training-mode logits of `batch`; BatchNorm statistics in `buffers` are updated.

        The returned tensor is a reused buffer: valid until the next `forward` of this size.
        """
        cfg = self.cfg
        ws = self.workspace(batch.m.shape[0])
        pre = torch.index_select(params["U"], -2, batch.m, out=ws.pre)  # (batch, N) = U e_m
        pre.add_(torch.index_select(params["V"], -2, batch.n, out=ws.tmp))
        if cfg.bias:
            pre.add_(params["b_in"])
        x = pre
        if ws.mask is not None:
            keep = 1.0 - cfg.dropout
            ws.mask.bernoulli_(keep, generator=generator).div_(keep)  # nn.Dropout's scaling
            if cfg.dropout_site == "pre":
                x = torch.mul(pre, ws.mask, out=ws.tmp)
        if cfg.act == "quad":
            post = torch.mul(x, x, out=ws.post)
        elif cfg.act == "relu":
            post = torch.clamp_min(x, 0.0, out=ws.post)
        else:
            post = F.gelu(x)
        hidden, local = self._norm_forward(post, params, buffers)
        if ws.mask is not None and cfg.dropout_site == "post":
            hidden = hidden * ws.mask
        logits = torch.matmul(hidden, params["W"].transpose(-1, -2), out=ws.logits)
        if cfg.bias:
            logits.add_(params["b_out"])
        self._saved = {"ws": ws, "x": x, "hidden": hidden, "local": local, "batch": batch}
        return logits

    def _norm_forward(
        self, post: Tensor, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
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

    @torch.no_grad()
    def backward(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Gradients of the mean loss of the last `forward`, written into `self.grads`."""
        cfg, g = self.cfg, self.grads
        ws: _Workspace = self._saved["ws"]  # type: ignore[assignment]
        batch: Batch = self._saved["batch"]  # type: ignore[assignment]
        x: Tensor = self._saved["x"]  # type: ignore[assignment]
        hidden: Tensor = self._saved["hidden"]  # type: ignore[assignment]
        size = batch.m.shape[0]
        dl = ws.dl  # d loss / d logits, up to the factor `scale`
        if self.loss == "mse":
            torch.sub(ws.logits, batch.target, out=dl)
            scale = 2.0 / (size * cfg.p)  # d/dz of mean((z - y)^2) over examples and classes
        else:
            torch.softmax(ws.logits, dim=-1, out=dl).sub_(batch.target)
            scale = 1.0 / size
        torch.matmul(dl.transpose(-1, -2), hidden, out=g["W"]).mul_(scale)
        if cfg.bias:
            torch.sum(dl, dim=-2, out=g["b_out"]).mul_(scale)
        dh = torch.matmul(dl, params["W"], out=ws.dpost)  # (batch, N)
        if ws.mask is not None and cfg.dropout_site == "post":
            dh.mul_(ws.mask)
        local = self._saved["local"]
        if local is not None:
            out, inp, w, b = local  # type: ignore[misc]
            dh, gw, gb = torch.autograd.grad(out, (inp, w, b), dh)
            torch.mul(gw, scale, out=g["norm.weight"])
            torch.mul(gb, scale, out=g["norm.bias"])
        if cfg.act == "quad":
            dpre = dh.mul_(x)
            scale_in = 2.0 * scale  # d(x^2)/dx = 2x: the 2 rides on index_add_'s alpha
        elif cfg.act == "relu":
            dpre = dh.mul_(x > 0)
            scale_in = scale
        else:
            dpre = torch.ops.aten.gelu_backward(dh, x)
            scale_in = scale
        if ws.mask is not None and cfg.dropout_site == "pre":
            dpre.mul_(ws.mask)
        if cfg.bias:
            torch.sum(dpre, dim=-2, out=g["b_in"]).mul_(scale_in)
        g["U"].zero_().index_add_(-2, batch.m, dpre, alpha=scale_in)
        g["V"].zero_().index_add_(-2, batch.n, dpre, alpha=scale_in)
        self._saved = {}
        return g


@torch.no_grad()
def eval_logits(
    cfg: MLPConfig,
    params: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    m: Int[Tensor, " batch"],
    n: Int[Tensor, " batch"],
) -> Float[Tensor, "batch p"]:
    """Evaluation-mode logits (no dropout, BatchNorm running statistics); a fresh tensor."""
    x = torch.index_select(params["U"], -2, m)
    x.add_(torch.index_select(params["V"], -2, n))
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
        x = F.layer_norm(x, (cfg.width,), params["norm.weight"], params["norm.bias"], _NORM_EPS)
    logits = torch.matmul(x, params["W"].transpose(-1, -2))
    if cfg.bias:
        logits.add_(params["b_out"])
    return logits
