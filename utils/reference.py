"""Reference versions of the assignments' parts, for the tests of the parts built on them.

A test of a part that builds on an earlier one (the LSTM module on the cell, the multi-head module on
attention, the encoder block on the multi-head module, the LSTM's training on the module) runs with
these in place of the student's earlier part, so that one mistake costs its own part only.

They are written with plain tensor operations (no ``torch.nn.LSTM``, ``LSTMCell``,
``scaled_dot_product_attention`` or ``nn.MultiheadAttention``), so they run while the tests switch
those off, and they use PyTorch's conventions and parameter names, so that PyTorch's state dicts load
into them. ``test_the_references_match_pytorch`` (tests/test_assignment_multi_head_attention.py)
checks them against PyTorch's own modules.

LSTM:
- ``lstm_cell_forward(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh) -> (h_next, c_next, cache)``
- ``LSTM(input_size, hidden_size, num_layers=1, batch_first=True, cell_forward=None)``

Multi-head attention:
- ``dot_product_attention(q, k, v, mask=None) -> (output, weights)``, mask True = may attend
- ``split_heads(x, num_heads)``, ``merge_heads(x)``
- ``mha_allowed_mask(key_padding_mask, attn_mask, num_heads)``: PyTorch's masks (True = NOT allowed)
  to one mask for ``dot_product_attention``
- ``MultiHeadAttention(embed_dim, num_heads)``: ``nn.MultiheadAttention``'s parameters and call
"""

import math

import torch
from torch import nn

__all__ = ["lstm_cell_forward", "LSTM", "dot_product_attention", "split_heads", "merge_heads",
           "mha_allowed_mask", "MultiHeadAttention"]

_sigmoid, _tanh, _softmax = torch.sigmoid, torch.tanh, torch.softmax  # bound before any answer cell runs


# ------------------------------------------------------------------------------------------ LSTM


def lstm_cell_forward(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    """One LSTM step, PyTorch's layout (gates i, f, g, o). x: (N, D); h_prev, c_prev: (N, H).

    Returns (h_next, c_next, cache), cache = (x, h_prev, c_prev, W_ih, W_hh, i, f, g, o, c_next).
    """
    gates = x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh  # (N, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # each (N, H)
    i, f, g, o = _sigmoid(i), _sigmoid(f), _tanh(g), _sigmoid(o)
    c_next = f * c_prev + i * g  # (N, H)
    h_next = o * _tanh(c_next)  # (N, H)
    return h_next, c_next, (x, h_prev, c_prev, W_ih, W_hh, i, f, g, o, c_next)


class LSTM(nn.Module):
    """A multi-layer LSTM with ``torch.nn.LSTM``'s parameter names, looping over time in Python.

    ``forward(x, state=None) -> (output, (h_n, c_n))`` like ``torch.nn.LSTM`` (no dropout, one direction).
    ``cell_forward`` is the step it runs (default: :func:`lstm_cell_forward` of this module).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, batch_first=True, cell_forward=None):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.batch_first = num_layers, batch_first
        self.cell_forward = lstm_cell_forward if cell_forward is None else cell_forward
        for k in range(num_layers):
            d = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size, d)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
        bound = 1 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x, state=None):
        if not self.batch_first:
            x = x.transpose(0, 1)  # (N, T, D)
        N, T, _ = x.shape
        if state is None:
            zeros = x.new_zeros(self.num_layers, N, self.hidden_size)
            state = (zeros, zeros)
        layer_input, h_n, c_n = x, [], []
        for k in range(self.num_layers):
            weights = tuple(getattr(self, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            h, c = state[0][k], state[1][k]
            outputs = []
            for t in range(T):
                h, c, _ = self.cell_forward(layer_input[:, t], h, c, *weights)
                outputs.append(h)
            layer_input = torch.stack(outputs, dim=1)  # (N, T, H)
            h_n.append(h)
            c_n.append(c)
        output = layer_input if self.batch_first else layer_input.transpose(0, 1)
        return output, (torch.stack(h_n), torch.stack(c_n))


# ------------------------------------------------------------------------------ multi-head attention


def dot_product_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(E)) v over the last two dimensions; mask True = may attend.

    q: (..., L, E), k: (..., S, E), v: (..., S, Ev); returns (output (..., L, Ev), weights (..., L, S)).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., L, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = _softmax(scores, dim=-1)
    return weights @ v, weights


def split_heads(x, num_heads):
    """(N, L, E) -> (N, num_heads, L, E // num_heads), head h = features h*hd:(h+1)*hd."""
    N, L, E = x.shape
    return x.reshape(N, L, num_heads, E // num_heads).transpose(1, 2)


def merge_heads(x):
    """(N, num_heads, L, hd) -> (N, L, num_heads * hd), the inverse of :func:`split_heads`."""
    N, H, L, hd = x.shape
    return x.transpose(1, 2).reshape(N, L, H * hd)


def mha_allowed_mask(key_padding_mask, attn_mask, num_heads):
    """PyTorch's masks (True = NOT allowed; attn_mask (L, S) or (N * num_heads, L, S)) -> None or one
    bool mask, True = may attend, that broadcasts to (N, num_heads, L, S)."""
    allowed = None
    if key_padding_mask is not None:
        allowed = ~key_padding_mask[:, None, None, :]  # (N, 1, 1, S)
    if attn_mask is not None:
        if attn_mask.dim() == 2:
            from_attn = ~attn_mask[None, None]  # (1, 1, L, S)
        else:
            from_attn = ~attn_mask.reshape(-1, num_heads, *attn_mask.shape[-2:])  # (N, H, L, S), sequence-major
        allowed = from_attn if allowed is None else allowed & from_attn
    return allowed


class MultiHeadAttention(nn.Module):
    """``nn.MultiheadAttention(E, H, batch_first=True)``'s parameters and call (no dropout, bool masks).

    ``forward(query, key, value, key_padding_mask=None, attn_mask=None) -> (output, weights averaged
    over heads)``.
    """

    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, attn_mask=None):
        H = self.num_heads
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = split_heads(query @ w_q.T + b_q, H)  # (N, H, L, hd)
        k = split_heads(key @ w_k.T + b_k, H)  # (N, H, S, hd)
        v = split_heads(value @ w_v.T + b_v, H)  # (N, H, S, hd)
        z, weights = dot_product_attention(q, k, v, mha_allowed_mask(key_padding_mask, attn_mask, H))
        return self.out_proj(merge_heads(z)), weights.mean(dim=1)  # (N, L, E), (N, L, S)
