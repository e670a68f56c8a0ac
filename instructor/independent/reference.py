"""The reference process: PyTorch's own modules on the drawn inputs.

Run as ``python -m instructor.independent.reference WORKDIR`` in a fresh process that runs no student
code. It reads ``WORKDIR/inputs.pt`` (``weights_only=True``) and writes ``WORKDIR/reference_out.pt``,
one dict per case, computed with ``nn.LSTMCell``, ``nn.LSTM``, ``torch.autograd``,
``F.scaled_dot_product_attention``, ``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer`` and
``nn.Transformer.generate_square_subsequent_mask``; the training parts need no reference (the
grading process computes their metric from the labels).
"""

import math
import pathlib
import sys

import torch
import torch.nn.functional as F
from torch import nn


def _dtype(name):
    return {"float32": torch.float32, "float64": torch.float64}[name]


def _cell(W_ih, W_hh, b_ih, b_hh):
    cell = nn.LSTMCell(W_ih.shape[1], W_hh.shape[1]).to(W_ih.dtype)
    with torch.no_grad():
        for p, t in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), (W_ih, W_hh, b_ih, b_hh)):
            p.copy_(t)
    return cell


def cell_forward(case):
    outs = []
    for x, h, c, *w in case["calls"]:
        with torch.no_grad():
            outs.append(list(_cell(*w)(x, (h, c))))
    return {"calls": outs}


def lstm_module(case):
    D, H, L = case["sizes"]
    ref = nn.LSTM(D, H, num_layers=L, batch_first=case["batch_first"]).to(_dtype(case["dtype"]))
    names = [[k, list(v.shape)] for k, v in ref.state_dict().items()]
    ref.load_state_dict(case["state"])
    grads = case["grads"]
    leaves = [t.clone().requires_grad_(grads) for t in (case["x"], case["h0"], case["c0"])]
    with torch.set_grad_enabled(grads):
        out, (h_n, c_n) = ref(leaves[0], (leaves[1], leaves[2])) if case["initial_state"] else ref(leaves[0])
    rec = {"names": names, "output": out.detach(), "h_n": h_n.detach(), "c_n": c_n.detach()}
    if grads:
        ((out * case["w_out"]).sum() + (h_n * case["w_h"]).sum() + (c_n * case["w_c"]).sum()).backward()
        rec["grad_x"] = leaves[0].grad
        if case["initial_state"]:
            rec["grad_h0"], rec["grad_c0"] = leaves[1].grad, leaves[2].grad
        rec["grad_params"] = {k: p.grad for k, p in ref.named_parameters()}
    return rec


def cell_backward(case):
    x, h, c, W_ih, W_hh = case["cache"][:5]
    cell = _cell(W_ih, W_hh, case["b_ih"], case["b_hh"])
    leaves = [t.clone().requires_grad_(True) for t in (x, h, c)]
    h_r, c_r = cell(leaves[0], (leaves[1], leaves[2]))
    ((h_r * case["dh"]).sum() + (c_r * case["dc"]).sum()).backward()
    return {"result": [leaves[0].grad, leaves[1].grad, leaves[2].grad, cell.weight_ih.grad, cell.weight_hh.grad,
                       cell.bias_ih.grad]}


def attention(case):
    if case["expect_error"]:
        return {"raised": "ValueError"}
    q, k, v, mask = case["q"], case["k"], case["v"], case["mask"]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return {"result": [out, torch.softmax(scores, dim=-1)]}


def heads(case):
    x, H, heads_ = case["x"], case["num_heads"], case["heads"]
    N, L, D = x.shape
    split = torch.stack(torch.split(x, D // H, dim=-1), dim=1)  # (N, H, L, hd)
    return {"split": split, "merged": x.clone(), "merged_heads": torch.cat(list(heads_.unbind(1)), dim=-1)}


def heads_not_divisible(case):
    return {"raised": "ValueError"}


def causal(case):
    return {"mask": nn.Transformer.generate_square_subsequent_mask(case["L"]) == 0}


def masks(case):
    N, H, L, S = case["sizes"]
    kpm, attn = case["kpm"], case["attn"]
    if kpm is None and attn is None:
        return {"is_none": True, "mask": None}
    allowed = torch.ones(N, H, L, S, dtype=torch.bool)
    if kpm is not None:
        allowed &= ~kpm[:, None, None, :]
    if attn is not None:
        allowed &= ~(attn.expand(N * H, L, S) if attn.dim() == 2 else attn).reshape(N, H, L, S)
    return {"is_none": False, "mask": allowed}


def mha(case):
    E, H = case["sizes"]
    ref = nn.MultiheadAttention(E, H, batch_first=True).to(_dtype(case["dtype"]))
    ref.load_state_dict(case["state"])
    masks_ = {k: case[n] for k, n in (("key_padding_mask", "kpm"), ("attn_mask", "attn")) if case[n] is not None}
    with torch.no_grad():
        return {"calls": [list(ref(q, k, v, need_weights=True, **masks_)) for q, k, v in case["calls"]]}


def positional(case):
    T, D = case["T"], case["D"]
    pe = torch.empty(T, D, dtype=torch.float64)
    for pos in range(T):
        for feature in range(D):
            angle = pos * math.exp(-math.log(10000.0) * (2 * (feature // 2)) / D)
            pe[pos, feature] = math.sin(angle) if feature % 2 == 0 else math.cos(angle)
    return {"pe": pe.float()}


def block(case):
    E, H, ff = case["sizes"]
    ref = nn.TransformerEncoderLayer(E, H, ff, dropout=0.0, batch_first=True).to(_dtype(case["dtype"]))
    ref.load_state_dict(case["state"])
    with torch.no_grad():
        return {"output": ref(case["x"], src_key_padding_mask=case["kpm"])}


def adding(case):
    return {}


def reverser(case):
    return {}


def main(workdir):
    workdir = pathlib.Path(workdir)
    torch.set_num_threads(1)
    cases = torch.load(workdir / "inputs.pt", weights_only=True)
    handlers = globals()
    out = [handlers[case["kind"]](case) for case in cases]
    torch.save(out, workdir / "reference_out.pt")


if __name__ == "__main__":
    main(sys.argv[1])
