"""Stand-ins for the earlier parts of the assignments, run by PyTorch's own functions.

The test of a part built on an earlier one (the LSTM module on the step, the multi-head module on
attention, the head split and the mask conversion, the encoder block on the multi-head module, part 4's
training on the LSTM) runs with these in place of the student's earlier part, so that one mistake
costs its own part only. There is no hand-written answer here: each stand-in calls the PyTorch function
or module the assignment re-implements, bound when this module is imported (before any answer cell
runs and before a test switches those names off with ``utils.checks.forbid``).

LSTM:
- ``lstm_cell_forward(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh) -> (h_next, c_next, None)``:
  ``aten::lstm_cell`` (what ``nn.LSTMCell`` runs); x (N, D), h_prev and c_prev (N, H); no cache.
- ``LSTM(input_size, hidden_size, num_layers=1, batch_first=True)``: ``nn.LSTM`` (``aten::lstm``),
  ``forward(x, state=None) -> (output, (h_n, c_n))``.

Multi-head attention:
- ``dot_product_attention(q, k, v, mask=None) -> (output (..., L, Ev), weights (..., L, S))``:
  ``F.scaled_dot_product_attention`` (the weights are its output for the identity as values).
- ``split_heads(x, num_heads)``: (N, L, E) -> (N, num_heads, L, E // num_heads), ``Tensor.unflatten``;
  ``merge_heads(x)`` the inverse, ``Tensor.flatten``.
- ``mha_allowed_mask(key_padding_mask, attn_mask, num_heads)``: which pairs ``nn.MultiheadAttention``
  lets attend under PyTorch's masks (True = NOT allowed), as a bool (N, num_heads, L, S), True = may
  attend, read from the weights of ``F.multi_head_attention_forward`` on zero projections.
- ``MultiHeadAttention(embed_dim, num_heads)``: ``nn.MultiheadAttention(batch_first=True)`` with the
  assignment's call ``forward(query, key, value, key_padding_mask=None, attn_mask=None)``.

None of them is an answer to hand in: each check of a part refuses its own stand-in
(``with refuse("split_heads"): ...`` makes it raise), and the grader's independent check records
when an answer reaches one (and the PyTorch function inside it) and scores that part 0.
``tests/test_torch_parts.py`` checks them against PyTorch's modules.
"""

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .checks import CheckError

__all__ = ["lstm_cell_forward", "LSTM", "dot_product_attention", "split_heads", "merge_heads",
           "mha_allowed_mask", "MultiHeadAttention", "STAND_INS", "refuse"]

# Bound at import: ``forbid`` replaces the public names while a test runs, not these objects.
_lstm_cell = torch._C._VariableFunctions.lstm_cell
_lstm = torch._C._VariableFunctions.lstm
_sdpa = torch._C._nn.scaled_dot_product_attention
_mha_forward = F.multi_head_attention_forward
_eye = torch.eye

_REFUSED = set()  # names of the stand-ins that raise (inside ``refuse``)


@contextlib.contextmanager
def refuse(*names):
    """Within the block, calling the stand-ins ``names`` raises CheckError (the check of the part they
    stand in for runs the answer inside this, so that a stand-in is not an answer)."""
    added = [n for n in names if n not in _REFUSED]
    _REFUSED.update(added)
    try:
        yield
    finally:
        _REFUSED.difference_update(added)


def _guard(name):
    if name in _REFUSED:
        raise CheckError(f"your answer calls utils.torch_parts.{name}, the course's stand-in that runs PyTorch's "
                         "own implementation for the tests of later parts: this part asks you to write it yourself")


# ------------------------------------------------------------------------------------------ LSTM


def lstm_cell_forward(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    """One LSTM step by ``aten::lstm_cell``. x: (N, D); h_prev, c_prev: (N, H); W_ih (4H, D), W_hh (4H, H),
    b_ih and b_hh (4H,), gates i, f, g, o. Returns (h_next, c_next, None): no cache."""
    _guard("lstm_cell_forward")
    h_next, c_next = _lstm_cell(x, (h_prev, c_prev), W_ih, W_hh, b_ih, b_hh)
    return h_next, c_next, None


class LSTM(nn.LSTM):
    """``nn.LSTM`` (one direction, no dropout) called as the assignment's LSTM: x (N, T, D) when
    batch_first (else (T, N, D)), ``forward(x, state=None) -> (output, (h_n, c_n))``, h_n and c_n
    (num_layers, N, H). Its parameter names are nn.LSTM's."""

    def __init__(self, input_size, hidden_size, num_layers=1, batch_first=True):
        super().__init__(input_size, hidden_size, num_layers=num_layers, batch_first=batch_first)

    def forward(self, x, state=None):
        _guard("LSTM")
        if state is None:
            N = x.shape[0] if self.batch_first else x.shape[1]
            zeros = x.new_zeros(self.num_layers, N, self.hidden_size)
            state = (zeros, zeros)
        output, h_n, c_n = _lstm(x, state, self._flat_weights, True, self.num_layers, 0.0, self.training, False,
                                 self.batch_first)
        return output, (h_n, c_n)


# ------------------------------------------------------------------------------ multi-head attention


def dot_product_attention(q, k, v, mask=None):
    """``F.scaled_dot_product_attention`` with its weights. q: (..., L, E), k: (..., S, E), v: (..., S, Ev);
    mask: None or bool broadcasting to (..., L, S), True = may attend.
    Returns (output (..., L, Ev), weights (..., L, S))."""
    _guard("dot_product_attention")
    S = k.shape[-2]
    identity = _eye(S, dtype=v.dtype, device=v.device).expand(*k.shape[:-2], S, S)
    return _sdpa(q, k, v, attn_mask=mask), _sdpa(q, k, identity, attn_mask=mask)


def split_heads(x, num_heads):
    """(N, L, E) -> (N, num_heads, L, E // num_heads): ``x.unflatten(-1, (num_heads, -1)).transpose(1, 2)``."""
    _guard("split_heads")
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def merge_heads(x):
    """(N, num_heads, L, hd) -> (N, L, num_heads * hd), the inverse of :func:`split_heads`."""
    _guard("merge_heads")
    return x.transpose(1, 2).flatten(-2)


def mha_allowed_mask(key_padding_mask, attn_mask, num_heads):
    """PyTorch's masks (True = NOT allowed): key_padding_mask None or (N, S); attn_mask None, (L, S) or
    (N * num_heads, L, S). Returns None (no masks) or a bool (N, num_heads, L, S), True = may attend:
    the pairs that get a positive weight in ``nn.MultiheadAttention``'s own forward (zero projections,
    so every allowed pair gets the same score)."""
    _guard("mha_allowed_mask")
    if key_padding_mask is None and attn_mask is None:
        return None
    mask = key_padding_mask if key_padding_mask is not None else attn_mask
    if key_padding_mask is not None:
        N, S = key_padding_mask.shape
    else:
        N, S = (attn_mask.shape[0] // num_heads if attn_mask.dim() == 3 else 1), attn_mask.shape[-1]
    L = attn_mask.shape[-2] if attn_mask is not None else 1
    E, opts = num_heads, dict(dtype=torch.float64, device=mask.device)
    zeros = torch.zeros
    query, key = zeros(L, N, E, **opts), zeros(S, N, E, **opts)
    _, weights = _mha_forward(query, key, key, E, num_heads, zeros(3 * E, E, **opts), zeros(3 * E, **opts),
                              None, None, False, 0.0, zeros(E, E, **opts), zeros(E, **opts), training=False,
                              key_padding_mask=key_padding_mask, need_weights=True, attn_mask=attn_mask,
                              average_attn_weights=False)
    return weights > 0  # (N, num_heads, L, S); a row with no allowed key is NaN: all False


class MultiHeadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)`` (no dropout) with the assignment's
    call: query (N, L, E), key and value (N, S, E), bool masks (True = NOT allowed). Returns (output
    (N, L, E), weights averaged over the heads (N, L, S)). Parameters: in_proj_weight, in_proj_bias, out_proj."""

    def __init__(self, embed_dim, num_heads):
        super().__init__(embed_dim, num_heads, batch_first=True)

    def forward(self, query, key, value, key_padding_mask=None, attn_mask=None):
        _guard("MultiHeadAttention")
        q, k, v = (t.transpose(0, 1) for t in (query, key, value))  # (L, N, E), PyTorch's functional layout
        out, weights = _mha_forward(q, k, v, self.embed_dim, self.num_heads, self.in_proj_weight, self.in_proj_bias,
                                    None, None, False, 0.0, self.out_proj.weight, self.out_proj.bias,
                                    training=self.training, key_padding_mask=key_padding_mask, need_weights=True,
                                    attn_mask=attn_mask, average_attn_weights=True)
        return out.transpose(0, 1), weights


# The stand-ins' own functions: what the grader's independent check records when an answer reaches one.
STAND_INS = (lstm_cell_forward, LSTM.forward, dot_product_attention, split_heads, merge_heads, mha_allowed_mask,
             MultiHeadAttention.forward)
