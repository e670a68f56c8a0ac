"""Several small recurrent models trained at once, as one model with a leading *model* dimension.

A headline comparison needs several seeds (and a learning rate tuned per model). Small recurrent
models leave a CPU mostly idle, so instead of training them one after the other we stack ``M``
independent models along a leading dimension and run them together: model ``m`` owns slice ``m`` of
every parameter, sees its own slice of the input, and gets its own gradient (the summed loss has a
block-diagonal Hessian: the models never interact). One batched step costs about as much as one
small model's step, because a small model's step is dominated by Python and kernel-launch overhead.

- ``BatchedRNN``: ``M`` recurrent layers of one kind ("RNN", "LSTM" or "GRU"), PyTorch's equations
  and parameter layout per model (``weight_ih (M, kH, D)``, ...), so ``to_torch(m)`` returns an
  ordinary ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` holding model ``m``.
- ``BatchedLinear``: ``M`` linear layers, ``(M, ..., D) -> (M, ..., K)``.
- ``BatchedAdam``: Adam with one learning rate per model and gradient clipping per model: the same
  updates as ``M`` separate ``torch.optim.Adam`` runs with ``clip_grad_norm_``.
"""

import math

import torch
from torch import nn

__all__ = ["BatchedRNN", "BatchedLinear", "BatchedAdam", "num_params"]

_BLOCKS = {"RNN": 1, "LSTM": 4, "GRU": 3}


def num_params(module):
    """Parameters of one model: all of ``module``'s parameters divided by its ``num_models`` (1 if it has none)."""
    total = sum(p.numel() for p in module.parameters())
    return total // getattr(module, "num_models", 1)


def _check_seeds(seeds, num_models):
    if seeds is None:
        return [None] * num_models
    seeds = list(seeds)
    if len(seeds) != num_models:
        raise ValueError(f"seeds: expected {num_models} seeds (one per model), got {len(seeds)}")
    return seeds


class BatchedRNN(nn.Module):
    """``num_models`` independent one-layer recurrent networks run as one.

    Inputs:
    - kind: "RNN", "LSTM" or "GRU" (PyTorch's equations and gate order: LSTM i, f, g, o; GRU r, z, n).
    - num_models: M, the number of independent models.
    - num_inputs: D. num_hiddens: H.
    - nonlinearity: "tanh" or "relu" (RNN only).
    - init: "default" (PyTorch's: every weight and bias uniform in +-1/sqrt(H)) or "identity"
      (RNN only, Le et al., 2015: W_hh = identity, biases zero, W_ih as by default).
    - seeds: optional list of M ints; model m is initialised from ``torch.Generator().manual_seed(seeds[m])``,
      so it does not depend on how many models are batched with it.

    Parameters (model m owns ``[m]``): weight_ih (M, kH, D), weight_hh (M, kH, H), bias_ih, bias_hh (M, kH)
    with k = 1, 4, 3 for RNN, LSTM, GRU: ``p[m]`` is exactly ``nn.RNN``'s ``weight_ih_l0`` etc.

    forward(X, state=None): X (M, B, T, D) -> outputs (M, B, T, H), final state (h (M, B, H), or (h, c)
    for the LSTM). ``step(x, state)`` is one time step, x (M, B, D).
    """

    def __init__(self, kind, num_models, num_inputs, num_hiddens, *, nonlinearity="tanh", init="default",
                 seeds=None):
        super().__init__()
        if kind not in _BLOCKS:
            raise ValueError(f"kind: expected one of {list(_BLOCKS)}, got {kind!r}")
        if nonlinearity not in ("tanh", "relu") or (nonlinearity == "relu" and kind != "RNN"):
            raise ValueError(f"nonlinearity: expected 'tanh' (or 'relu' for kind 'RNN'), got {nonlinearity!r}")
        if init not in ("default", "identity") or (init == "identity" and kind != "RNN"):
            raise ValueError(f"init: expected 'default' (or 'identity' for kind 'RNN'), got {init!r}")
        for name, value in (("num_models", num_models), ("num_inputs", num_inputs), ("num_hiddens", num_hiddens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.kind, self.num_models, self.num_inputs, self.num_hiddens = kind, num_models, num_inputs, num_hiddens
        self.nonlinearity, self.init = nonlinearity, init
        k, M, D, H = _BLOCKS[kind], num_models, num_inputs, num_hiddens
        self.weight_ih = nn.Parameter(torch.empty(M, k * H, D))
        self.weight_hh = nn.Parameter(torch.empty(M, k * H, H))
        self.bias_ih = nn.Parameter(torch.empty(M, k * H))
        self.bias_hh = nn.Parameter(torch.empty(M, k * H))
        bound = 1.0 / math.sqrt(H)
        with torch.no_grad():
            for m, seed in enumerate(_check_seeds(seeds, M)):
                g = None if seed is None else torch.Generator().manual_seed(seed)
                for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
                    p[m] = (torch.rand(p.shape[1:], generator=g) * 2 - 1) * bound
                if init == "identity":
                    self.weight_hh[m] = torch.eye(H)
                    self.bias_ih[m] = 0.0
                    self.bias_hh[m] = 0.0

    def extra_repr(self):
        extra = f", nonlinearity={self.nonlinearity!r}, init={self.init!r}" if self.kind == "RNN" else ""
        return (f"{self.kind}, num_models={self.num_models}, num_inputs={self.num_inputs}, "
                f"num_hiddens={self.num_hiddens}{extra}")

    def _check_input(self, X, ndim, name):
        M, D = self.num_models, self.num_inputs
        if not isinstance(X, torch.Tensor) or X.dim() != ndim or X.shape[0] != M or X.shape[-1] != D:
            want = "(M, B, T, D)" if ndim == 4 else "(M, B, D)"
            raise ValueError(f"{name}: expected a tensor of shape {want} with M={M}, D={D}, got "
                             f"{tuple(getattr(X, 'shape', ())) or type(X).__name__}")

    def init_state(self, batch_size, like):
        h = like.new_zeros(self.num_models, batch_size, self.num_hiddens)
        return (h, h.clone()) if self.kind == "LSTM" else h

    def _cell(self, xw, state):
        """One step given the input part xw = x W_ih^T + b_ih (+ b_hh, except for the GRU's n block), (M, B, kH)."""
        h = state[0] if self.kind == "LSTM" else state
        if self.kind == "RNN":
            a = torch.baddbmm(xw, h, self.weight_hh.transpose(1, 2))  # (M, B, H)
            return torch.tanh(a) if self.nonlinearity == "tanh" else torch.relu(a)
        H = self.num_hiddens
        if self.kind == "LSTM":
            gates = torch.baddbmm(xw, h, self.weight_hh.transpose(1, 2))  # (M, B, 4H), blocks i, f, g, o
            s = torch.sigmoid(gates)  # i, f and o are read from it (its g block is not used)
            i, f, o = s[..., :H], s[..., H:2 * H], s[..., 3 * H:]
            c = torch.addcmul(f * state[1], i, torch.tanh(gates[..., 2 * H:3 * H]))
            return o * torch.tanh(c), c
        # GRU: the reset gate multiplies h W_hn + b_hn, so that block keeps its own bias
        hw = torch.baddbmm(self.bias_hh[:, None], h, self.weight_hh.transpose(1, 2))  # (M, B, 3H)
        rz = torch.sigmoid(xw[..., :2 * H] + hw[..., :2 * H])  # (M, B, 2H): r, z
        n = torch.tanh(torch.addcmul(xw[..., 2 * H:], rz[..., :H], hw[..., 2 * H:]))
        return torch.addcmul(n, rz[..., H:], h - n)  # (1 - z) n + z h

    def input_part(self, X):
        """The input's share of every step at once: X (M, B, T, D) -> (M, B, T, kH).

        x W_ih^T + b_ih, plus b_hh for the RNN and the LSTM (only the sum of their two biases matters).
        """
        M, B, T, D = X.shape
        bias = self.bias_ih if self.kind == "GRU" else self.bias_ih + self.bias_hh
        xw = torch.baddbmm(bias[:, None], X.reshape(M, B * T, D), self.weight_ih.transpose(1, 2))
        return xw.reshape(M, B, T, -1)

    def step(self, x, state=None):
        """One time step: x (M, B, D) -> the new state (h, or (h, c) for the LSTM), each (M, B, H)."""
        self._check_input(x, 3, "x")
        if state is None:
            state = self.init_state(x.shape[1], x)
        return self._cell(self.input_part(x[:, :, None])[:, :, 0], state)

    def forward(self, X, state=None):
        self._check_input(X, 4, "X")
        if state is None:
            state = self.init_state(X.shape[1], X)
        outputs = []
        # unbind (not xw[:, :, t]): its backward is one stack, where T selects would each fill a full-size zero grad
        for xw in self.input_part(X).unbind(2):  # each (M, B, kH)
            state = self._cell(xw, state)
            outputs.append(state[0] if self.kind == "LSTM" else state)
        return torch.stack(outputs, dim=2), state  # (M, B, T, H)

    def to_torch(self, m):
        """Model ``m`` as an ordinary ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (batch_first, weights copied)."""
        if not 0 <= m < self.num_models:
            raise IndexError(f"m: expected 0 <= m < {self.num_models}, got {m}")
        extra = {"nonlinearity": self.nonlinearity} if self.kind == "RNN" else {}
        module = getattr(nn, self.kind)(self.num_inputs, self.num_hiddens, batch_first=True, **extra)
        module = module.to(self.weight_ih.device, self.weight_ih.dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(module, f"{name}_l0").copy_(getattr(self, name)[m])
        return module

    def load_from_torch(self, m, module):
        """Copy an ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` layer (one layer, one direction) into model ``m``."""
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                src = getattr(module, f"{name}_l0")
                dst = getattr(self, name)
                if src.shape != dst.shape[1:]:
                    raise ValueError(f"module: {name}_l0 has shape {tuple(src.shape)}, expected {tuple(dst.shape[1:])}")
                dst[m] = src


class BatchedLinear(nn.Module):
    """``num_models`` linear layers: X (M, ..., D) -> (M, ..., K). Initialised like ``nn.Linear`` per model.

    weight (M, K, D) and bias (M, K): ``weight[m]`` is ``nn.Linear``'s weight of model m.
    """

    def __init__(self, num_models, num_inputs, num_outputs, *, seeds=None):
        super().__init__()
        self.num_models = num_models
        self.weight = nn.Parameter(torch.empty(num_models, num_outputs, num_inputs))
        self.bias = nn.Parameter(torch.empty(num_models, num_outputs))
        bound = 1.0 / math.sqrt(num_inputs)
        with torch.no_grad():
            for m, seed in enumerate(_check_seeds(seeds, num_models)):
                g = None if seed is None else torch.Generator().manual_seed(seed + 1_000_003)
                self.weight[m] = (torch.rand(self.weight.shape[1:], generator=g) * 2 - 1) * bound
                self.bias[m] = (torch.rand(self.bias.shape[1:], generator=g) * 2 - 1) * bound

    def forward(self, X):
        if not isinstance(X, torch.Tensor) or X.dim() < 2 or X.shape[0] != self.num_models \
                or X.shape[-1] != self.weight.shape[2]:
            raise ValueError(f"X: expected shape (M={self.num_models}, ..., D={self.weight.shape[2]}), got "
                             f"{tuple(getattr(X, 'shape', ())) or type(X).__name__}")
        M, D = X.shape[0], X.shape[-1]
        out = torch.baddbmm(self.bias[:, None], X.reshape(M, -1, D), self.weight.transpose(1, 2))
        return out.reshape(*X.shape[:-1], -1)

    def to_torch(self, m):
        """Model ``m`` as an ``nn.Linear`` (weights copied)."""
        K, D = self.weight.shape[1:]
        module = nn.Linear(D, K).to(self.weight.device, self.weight.dtype)
        with torch.no_grad():
            module.weight.copy_(self.weight[m])
            module.bias.copy_(self.bias[m])
        return module


class BatchedAdam(torch.optim.Optimizer):
    """Adam for stacked models: one learning rate per model, gradients clipped per model.

    Every parameter has the models along dimension 0 (M, ...). A step does for each model m what
    ``torch.nn.utils.clip_grad_norm_(model_m.parameters(), clip_norm)`` followed by
    ``torch.optim.Adam(model_m.parameters(), lr=lr[m]).step()`` would do on that model alone.

    Inputs:
    - params: the stacked parameters (an iterable of tensors whose first dimension is M).
    - lr: a sequence of M learning rates (or one float for all).
    - betas, eps: as in ``torch.optim.Adam``.
    - clip_norm: optional float: clip each model's global gradient norm to this value.
    """

    def __init__(self, params, lr, *, betas=(0.9, 0.999), eps=1e-8, clip_norm=None):
        params = list(params)
        if not params:
            raise ValueError("params: got an empty list")
        M = params[0].shape[0]
        for p in params:
            if p.dim() == 0 or p.shape[0] != M:
                raise ValueError(f"params: every parameter needs the models along dimension 0 (M={M}), "
                                 f"got shape {tuple(p.shape)}")
        lr = torch.as_tensor(lr, dtype=torch.float64).flatten()
        if lr.numel() == 1:
            lr = lr.repeat(M)
        if lr.numel() != M or not bool((lr > 0).all()):
            raise ValueError(f"lr: expected one positive learning rate or M={M} of them, got {lr.tolist()}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm: expected None or a positive number, got {clip_norm!r}")
        super().__init__(params, {"betas": betas, "eps": eps})
        self.num_models, self.lr, self.clip_norm = M, lr, clip_norm

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if self.clip_norm is not None and params:
            sq = sum(p.grad.reshape(self.num_models, -1).double().pow(2).sum(1) for p in params)  # (M,)
            coef = (self.clip_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
            for p in params:
                p.grad.mul_(coef.to(p.grad.dtype).reshape(-1, *[1] * (p.dim() - 1)))
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(group["eps"])
                step_size = (self.lr / (1 - beta1 ** t)).to(p.device, p.dtype).reshape(-1, *[1] * (p.dim() - 1))
                p.sub_(step_size * m / denom)
        return loss
