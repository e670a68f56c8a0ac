"""Checks for the multi-head attention assignment: each part against PyTorch, saying what differs and why.

Each ``check_*`` function runs the answer with PyTorch's attention functions switched off
(:data:`REIMPLEMENTED`, through ``utils.checks.forbid``), compares it with PyTorch's own function or
module on the same inputs and weights, and raises ``utils.checks.CheckError`` with a message that
names the cause where it can: an inverted mask convention, a 3-D mask reshaped head-major, Q, K and V
read in another order or without the transpose, a pre-norm block, a wrong positional exponent, a
float32 tensor among float64 ones. An error raised inside the answer comes back with the part, the
arguments' shapes and dtypes and a likely cause (``utils.checks.call_answer``).

Parts that build on earlier ones are checked with PyTorch's own versions of the earlier parts
(``utils.torch_parts``): the module of part 5 gets PyTorch's attention, head split and mask
conversion; the encoder block of part 8 gets PyTorch's multi-head module. So one mistake costs
its own part only. The check of a part refuses its own stand-in (``torch_parts.refuse``).

``visible_part1`` ... ``visible_part8`` hold the visible cases of each part (every kind that the
hidden tests grade); the notebook's test cells call them and then add hidden cases.
"""

import itertools
import math

import torch
from torch import nn

from . import torch_parts
from .checks import CheckError, assert_close, call_answer, compare, forbid

__all__ = ["REIMPLEMENTED", "check_attention", "check_no_allowed_key_raises", "check_heads", "check_not_divisible",
           "check_causal", "check_allowed", "check_mha", "padding_is_ignored", "causal_holds", "check_pe",
           "check_block", "check_accuracy", "reference_parts"] + [f"visible_part{k}" for k in range(1, 9)]

# What the answers must not call: the PyTorch functions this assignment re-implements.
REIMPLEMENTED = ("torch.nn.functional.scaled_dot_product_attention",
                 "torch.nn.functional.multi_head_attention_forward", "torch.nn.MultiheadAttention.forward")


def reference_parts():
    """The keyword arguments that build a ``MultiHeadAttention`` on PyTorch's parts 1, 2 and 4
    (``utils.torch_parts``)."""
    return dict(attention_fn=torch_parts.dot_product_attention, split_fn=torch_parts.split_heads,
                merge_fn=torch_parts.merge_heads, mask_fn=torch_parts.mha_allowed_mask)


def _attention_dims(q):
    """Names of the dimensions of the output and of the weights, for the messages."""
    lead = ("batch", "head")[: q.dim() - 2] if q.dim() <= 4 else tuple(f"dim {i}" for i in range(q.dim() - 2))
    return lead + ("query", "feature"), lead + ("query", "key")


# ------------------------------------------------------------------------------------------ part 1

_ATTENTION_HINTS = [(r"shapes cannot be multiplied|must match the size",
                     "work on the last two dimensions only: q @ k.transpose(-2, -1), softmax over dim=-1")]


def _inverted_convention(w, mask):
    """True when the weights are 0 (or NaN) on every allowed pair and not on every blocked one."""
    if not isinstance(w, torch.Tensor) or mask is None:
        return False
    try:
        allowed = mask.broadcast_to(w.shape)
    except RuntimeError:
        return False
    on_allowed = w[allowed]
    return bool(((on_allowed == 0) | on_allowed.isnan()).all()) and bool((w[~allowed] != 0).any())


def check_attention(attention, q, k, v, mask=None, *, atol=1e-5, case=""):
    """``attention(q, k, v, mask) -> (output, weights)`` against ``F.scaled_dot_product_attention``
    (output, and the weights as its output for the identity as values); rows sum to 1, masked pairs get
    exactly 0."""
    with forbid(*REIMPLEMENTED), torch_parts.refuse("dot_product_attention"):
        got = call_answer(attention, q, k, v, mask, part="part 1", name="dot_product_attention",
                          hints=_ATTENTION_HINTS)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise CheckError(f"{case}: return a tuple (output, weights), got {type(got).__name__}")
    out, w = got
    ref_out, ref_w = torch_parts.dot_product_attention(q, k, v, mask)
    out_dims, w_dims = _attention_dims(q)
    msg = compare(w, ref_w, f"{case}: weights", atol=atol, rtol=1e-4, dims=w_dims, check_dtype=True)
    if msg is not None:
        if _inverted_convention(w, mask):
            raise CheckError(f"{case}: mask convention inverted: your weights are 0 where the mask is True and "
                             "positive where it is False. Here True = may attend (F.scaled_dot_product_attention's "
                             "convention); lecture 5's attention() used True = blocked. Fill the scores with -inf "
                             f"where the mask is False: scores.masked_fill(~mask, float('-inf')).\n  ({msg})")
        if isinstance(w, torch.Tensor) and w.shape == ref_w.shape:
            unscaled = torch_parts.dot_product_attention(q * math.sqrt(q.shape[-1]), k, v, mask)[1]
            if compare(w, unscaled, atol=atol, rtol=1e-4) is None:
                msg += (" (your weights are the softmax of q k^T without the division by sqrt(d_k) = "
                        f"sqrt({q.shape[-1]}))")
            elif not bool(w.isfinite().all()) and bool(ref_w.isfinite().all()):
                msg += (" (your softmax overflows on large scores: exp of a large score is inf, and inf / inf is "
                        "NaN; torch.softmax(scores, dim=-1) subtracts each row's maximum first)")
            elif mask is not None and bool(((w != 0) & ~mask.broadcast_to(w.shape)).any()):
                msg += (" (pairs where the mask is False got weights above 0: set their scores to -inf before the "
                        "softmax, scores.masked_fill(~mask, float('-inf')); multiplying by the mask gives them score "
                        "0, which still gets weight)")
            elif w.shape[-2] > 1 and compare(w.sum(-2), torch.ones_like(w.sum(-2)), atol=atol) is None:
                msg += (" (your weights sum to 1 over the queries: the softmax must run over the keys, the last "
                        "dimension, torch.softmax(scores, dim=-1))")
        raise CheckError(msg)
    assert_close(w.sum(-1), torch.ones_like(ref_w.sum(-1)), f"{case}: sum of the weights over the keys",
                 atol=atol, dims=w_dims[:-1])
    assert_close(out, ref_out, f"{case}: output", atol=atol, rtol=1e-4, dims=out_dims, check_dtype=True)
    if mask is not None:
        leaked = (w != 0) & ~mask.broadcast_to(w.shape)
        if bool(leaked.any()):
            where = [int(i) for i in leaked.nonzero()[0]]
            raise CheckError(f"{case}: a masked pair (mask False) got weight {w[tuple(where)].item():.3g} at "
                             f"{dict(zip(w_dims, where))}; it must be exactly 0")


def check_no_allowed_key_raises(attention):
    """A query whose mask row is all False (e.g. a fully padded row) must raise ValueError (the given check)."""
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[1, 2] = False  # sequence 1, query 2: no key left
    try:
        with forbid(*REIMPLEMENTED):
            attention(q, k, v, mask)
    except ValueError:
        return
    except NotImplementedError:
        raise CheckError("part 1: dot_product_attention is not written yet (it raises NotImplementedError)") from None
    raise CheckError("a query with no allowed key (a fully masked row) must raise ValueError: keep the given "
                     "check_attention_mask call at the top of dot_product_attention")


def visible_part1(attention):
    """Part 1: no mask; a mask (N, L, S); a causal (L, S) mask broadcast over 4-D (N, H, L, S) inputs; a
    padding mask (N, 1, 1, S) with L != S; float64 to float64 precision; large scores; a fully masked row
    raises."""
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)  # L=3, S=5, E=4, Ev=6
    check_attention(attention, q, k, v, case="no mask, L=3, S=5")
    mask = torch.rand(2, 3, 5) > 0.5  # (N, L, S), True = may attend
    mask[:, :, 1] = True  # every query keeps key 1
    check_attention(attention, q, k, v, mask, case="mask (N, L, S)")
    q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 5)
    check_attention(attention, q, k, v, torch.ones(4, 4, dtype=torch.bool).tril(), case="4-D, causal (L, S) mask")
    q, k, v = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 6, 4), torch.randn(2, 2, 6, 4)
    pad = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    pad[1, ..., 3:] = False
    check_attention(attention, q, k, v, pad, case="padding mask (N, 1, 1, S)")
    q, k, v = (torch.randn(2, 4, 5, dtype=torch.float64) for _ in range(3))
    check_attention(attention, q, k, v, atol=1e-12, case="float64")
    q, k, v = 40 * torch.randn(2, 3, 16), 40 * torch.randn(2, 5, 16), torch.randn(2, 5, 4)
    check_attention(attention, q, k, v, atol=1e-4, case="large scores (the softmax must not overflow)")
    check_no_allowed_key_raises(attention)


# ------------------------------------------------------------------------------------------ part 2


def check_heads(split_heads, merge_heads, x, num_heads, case=""):
    """split_heads(x, num_heads) against ``Tensor.unflatten`` (``torch_parts.split_heads``); merge_heads(split)
    == x; merge_heads puts head h at features h*head_dim:(h+1)*head_dim. Exact (atol = 0), dtype kept."""
    with forbid(*REIMPLEMENTED), torch_parts.refuse("split_heads", "merge_heads"):
        split = call_answer(split_heads, x, num_heads, part="part 2", name="split_heads")
    msg = compare(split, torch_parts.split_heads(x, num_heads), f"{case}: split_heads(x, {num_heads})", atol=0, rtol=0,
                  dims=("batch", "head", "position", "feature"), check_dtype=True)
    if msg is not None:
        N, L, D = x.shape
        if isinstance(split, torch.Tensor) and split.shape == (N, num_heads, L, D // num_heads) and \
                compare(split, x.reshape(N, num_heads, L, D // num_heads), atol=0, rtol=0) is None:
            msg += (" (you reshaped (N, L, d_model) straight to (N, num_heads, L, head_dim): that mixes positions "
                    "and heads; reshape to (N, L, num_heads, head_dim), then transpose(1, 2))")
        raise CheckError(msg)
    with forbid(*REIMPLEMENTED), torch_parts.refuse("split_heads", "merge_heads"):
        merged = call_answer(merge_heads, split, part="part 2", name="merge_heads")
    msg = compare(merged, x, f"{case}: merge_heads(split_heads(x, {num_heads}))", atol=0, rtol=0,
                  dims=("batch", "position", "feature"), check_dtype=True)
    if msg is not None:
        if isinstance(merged, torch.Tensor) and merged.shape == x.shape and \
                torch.equal(merged, split.reshape(x.shape)):
            msg += (" (you reshaped (N, num_heads, L, head_dim) straight to (N, L, d_model): move the heads back "
                    "next to the features first, x.transpose(1, 2), then reshape)")
        raise CheckError(msg)
    heads = torch.randn(x.shape[0], num_heads, x.shape[1], x.shape[2] // num_heads, dtype=x.dtype)
    with forbid(*REIMPLEMENTED), torch_parts.refuse("split_heads", "merge_heads"):
        merged = call_answer(merge_heads, heads, part="part 2", name="merge_heads")
    assert_close(merged, torch.cat([heads[:, h] for h in range(num_heads)], dim=-1),
                 f"{case}: merge_heads(heads) (head h must go to features h*head_dim:(h+1)*head_dim)",
                 atol=0, rtol=0, dims=("batch", "position", "feature"))


def check_not_divisible(split_heads, d_model, num_heads):
    """split_heads must raise ValueError when num_heads does not divide d_model."""
    try:
        with torch_parts.refuse("split_heads"):
            split_heads(torch.zeros(1, 2, d_model), num_heads)
    except ValueError:
        return
    except NotImplementedError:
        raise CheckError("part 2: split_heads is not written yet (it raises NotImplementedError)") from None
    except Exception as err:  # noqa: BLE001
        raise CheckError(f"split_heads with d_model={d_model}, num_heads={num_heads} raised {type(err).__name__}, "
                         "expected ValueError naming both numbers") from None
    raise CheckError(f"split_heads with d_model={d_model}, num_heads={num_heads} must raise ValueError "
                     "(d_model is not divisible by num_heads)")


def visible_part2(split_heads, merge_heads):
    """Part 2: 2 heads on a (2, 3, 8) ramp, 4 heads float64, one head; d_model not divisible raises."""
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)  # (N=2, L=3, d_model=8)
    check_heads(split_heads, merge_heads, x, 2, case="N=2, L=3, d_model=8")
    torch.manual_seed(2)
    check_heads(split_heads, merge_heads, torch.randn(2, 3, 12, dtype=torch.float64), 4, case="float64, 4 heads")
    check_heads(split_heads, merge_heads, torch.randn(1, 2, 6), 1, case="one head")
    check_not_divisible(split_heads, 10, 3)


# ------------------------------------------------------------------------------------------ part 3


def check_causal(causal_mask, L):
    """causal_mask(L): bool (L, L), True on and below the diagonal, against PyTorch's causal mask."""
    m = call_answer(causal_mask, L, part="part 3", name="causal_mask")
    if not (isinstance(m, torch.Tensor) and m.dtype == torch.bool):
        raise CheckError(f"causal_mask({L}): expected a bool tensor, got {getattr(m, 'dtype', type(m).__name__)}")
    if tuple(m.shape) != (L, L):
        raise CheckError(f"causal_mask({L}): expected shape {(L, L)}, got {tuple(m.shape)}")
    expected = torch.nn.Transformer.generate_square_subsequent_mask(L) == 0  # 0 = allowed, -inf = not
    wrong = m != expected
    if bool(wrong.any()):
        query, key = (int(i) for i in wrong.nonzero()[0])
        hint = ""
        if torch.equal(m, ~expected):
            hint = " (the whole mask is inverted: True must mean MAY attend, the lower triangle)"
        elif torch.equal(m, expected & ~torch.eye(L, dtype=torch.bool)):
            hint = " (the diagonal is missing: a position may attend to itself)"
        raise CheckError(f"causal_mask({L}): at [query {query}, key {key}] got {bool(m[query, key])}, expected "
                         f"{bool(expected[query, key])} (True = may attend, keys <= query){hint}")


def visible_part3(causal_mask):
    """Part 3: causal_mask(1) and causal_mask(4) against PyTorch's; the device argument is used."""
    for L in (1, 4):
        check_causal(causal_mask, L)
    m = call_answer(causal_mask, 3, device="meta", part="part 3", name="causal_mask")
    if getattr(m, "device", None) != torch.device("meta"):
        raise CheckError(f"causal_mask(3, device='meta') is on {getattr(m, 'device', None)}: create the mask on the "
                         "given device (torch.ones(..., device=device))")


# ------------------------------------------------------------------------------------------ part 4


def _expected_allowed(kpm, attn, N, H, L, S, head_major=False):
    """What nn.MultiheadAttention lets attend (``torch_parts.mha_allowed_mask``), as (N, H, L, S); with
    ``head_major`` a 3-D attn_mask is read as (H, N, L, S) (the mistake the hints name)."""
    if head_major and attn is not None and attn.dim() == 3:
        attn = attn.reshape(H, N, L, S).transpose(0, 1).reshape(N * H, L, S)
    allowed = torch_parts.mha_allowed_mask(kpm, attn, H)
    return torch.ones(N, H, L, S, dtype=torch.bool) if allowed is None else allowed.broadcast_to(N, H, L, S)


def check_allowed(mha_allowed_mask, kpm, attn, N, H, L, S, case):
    """mha_allowed_mask(kpm, attn, H) broadcast to (N, H, L, S) against what nn.MultiheadAttention lets attend."""
    with torch_parts.refuse("mha_allowed_mask"):
        got = call_answer(mha_allowed_mask, kpm, attn, H, part="part 4", name="mha_allowed_mask")
    if not (isinstance(got, torch.Tensor) and got.dtype == torch.bool):
        raise CheckError(f"{case}: expected a bool tensor, got {getattr(got, 'dtype', type(got).__name__)}")
    try:
        got = got.broadcast_to(N, H, L, S)
    except RuntimeError:
        raise CheckError(f"{case}: shape {tuple(got.shape)} does not broadcast to (N, H, L, S) = {(N, H, L, S)} "
                         "(key_padding_mask (N, S) must become (N, 1, 1, S), m[:, None, None, :]; attn_mask (L, S) "
                         "becomes (1, 1, L, S), m[None, None])") from None
    expected = _expected_allowed(kpm, attn, N, H, L, S)
    wrong = got != expected
    if bool(wrong.any()):
        n, h, q_pos, k_pos = (int(i) for i in wrong.nonzero()[0])
        hint = ""
        if bool(wrong.all()):
            hint = " (mask convention: True must mean MAY attend in the result: did you invert the masks?)"
        elif kpm is not None and attn is not None and torch.equal(
                got, _expected_allowed(kpm, None, N, H, L, S) | _expected_allowed(None, attn, N, H, L, S)):
            hint = (" (a pair is allowed only when NEITHER mask forbids it: combine the two allowed masks with & "
                    "(and), not | (or))")
        elif attn is not None and attn.dim() == 3 and N > 1 and H > 1 and \
                torch.equal(got, _expected_allowed(kpm, attn, N, H, L, S, head_major=True)):
            hint = (" (your 3-D attn_mask is reshaped head-major, as (num_heads, N, L, S); its entries are "
                    "sequence-major, entry n * num_heads + h is sequence n, head h: reshape(N, num_heads, L, S))")
        raise CheckError(f"{case}: at [batch {n}, head {h}, query {q_pos}, key {k_pos}] got "
                         f"{bool(got[n, h, q_pos, k_pos])}, expected {bool(expected[n, h, q_pos, k_pos])}; "
                         f"{int(wrong.sum())} of {wrong.numel()} entries differ{hint}")


def visible_part4(mha_allowed_mask):
    """Part 4: None for no masks; key_padding_mask only; attn_mask (L, S) only; both; a 3-D attn_mask
    (N * num_heads, L, S) alone and with a key_padding_mask."""
    torch.manual_seed(2)
    N, H, L, S = 2, 3, 4, 5
    kpm = torch.rand(N, S) > 0.6  # True = padding key
    attn = torch.rand(L, S) > 0.6  # True = may NOT attend
    attn3 = torch.rand(N * H, L, S) > 0.5  # entry n * H + h: sequence n, head h
    with torch_parts.refuse("mha_allowed_mask"):
        nothing = call_answer(mha_allowed_mask, None, None, H, part="part 4", name="mha_allowed_mask")
    if nothing is not None:
        raise CheckError("mha_allowed_mask(None, None, H) must return None")
    check_allowed(mha_allowed_mask, kpm, None, N, H, L, S, "key_padding_mask only")
    check_allowed(mha_allowed_mask, None, attn, N, H, L, S, "attn_mask (L, S) only")
    check_allowed(mha_allowed_mask, kpm, attn, N, H, L, S, "both masks")
    check_allowed(mha_allowed_mask, None, attn3, N, H, L, S, "attn_mask (N * H, L, S)")
    check_allowed(mha_allowed_mask, kpm, attn3, N, H, L, S, "key_padding_mask and attn_mask (N * H, L, S)")


# -------------------------------------------------------------------------------------- parts 5, 6

_MHA_HINTS = [
    (r"shapes cannot be multiplied", "in_proj_weight's blocks are (E, E), used like nn.Linear: query @ W_Q.T + b_Q"),
]
_MASK_HINTS = [
    (r"does not broadcast|may attend to no key|must match the size|expand|broadcast",
     "with masks given, the error is likely the masks: they go to the attention only after conversion, "
     "self.allowed_mask(key_padding_mask, attn_mask) (True = may attend, broadcasts to (N, num_heads, L, S)); "
     "PyTorch's masks themselves have the other mask convention (True = NOT allowed) and other shapes"),
]


def _pair(module_class, E, H, dtype=torch.float32, parts=None):
    ref = nn.MultiheadAttention(E, H, batch_first=True).to(dtype)
    with torch.no_grad():  # PyTorch starts the biases at 0, which would hide a forgotten bias
        ref.in_proj_bias.normal_(0.0, 0.5)
        ref.out_proj.bias.normal_(0.0, 0.5)
    calls = {}
    if parts is None:  # the reference parts, counted: the module must run the functions it was given
        def counted(name, fn):
            def run(*args):
                calls[name] = calls.get(name, 0) + 1
                return fn(*args)
            return run
        parts = {name: counted(name, fn) for name, fn in reference_parts().items()}
    with forbid(*REIMPLEMENTED), torch_parts.refuse("MultiHeadAttention"):
        mine = call_answer(module_class, E, H, part="part 5", name="MultiHeadAttention(...)", **parts)
    mine._check_calls = calls  # read by _run
    mine.to(dtype)
    mine.load_state_dict(ref.state_dict())  # same names and shapes as PyTorch's module
    return ref, mine


def _run(mine, *args, part="part 5", **kwargs):
    hints = _MHA_HINTS + (_MASK_HINTS if any(m is not None for m in kwargs.values()) else [])
    with forbid(*REIMPLEMENTED), torch_parts.refuse("MultiHeadAttention"):
        got = call_answer(mine, *args, part=part, name="MultiHeadAttention.forward", hints=hints, **kwargs)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise CheckError("MultiHeadAttention.forward must return (output, weights)")
    calls = getattr(mine, "_check_calls", None)
    if calls is not None:
        missing = [name for name in ("split_fn", "attention_fn", "merge_fn") if not calls.get(name)]
        if missing:
            raise CheckError(f"MultiHeadAttention.forward never called self.{', self.'.join(missing)}: run the "
                             "functions the module was given (self.split_fn, self.attention_fn, self.merge_fn), "
                             "not split_heads, dot_product_attention, merge_heads by their global names")
    return got


def _variant_state(state, E, order=(0, 1, 2), transpose=False):
    """The state dict with in_proj's Q, K, V blocks in ``order`` and (``transpose``) each block transposed."""
    state = {name: t.clone() for name, t in state.items()}
    w, b = state["in_proj_weight"].chunk(3), state["in_proj_bias"].chunk(3)
    state["in_proj_weight"] = torch.cat([w[k].T if transpose else w[k] for k in order])
    state["in_proj_bias"] = torch.cat([b[k] for k in order])
    return state


def _diagnose(ref, mine, query, key, value, ref_out, atol, masks):
    """Why the module's output differs: Q, K, V read in another order, a missing transpose, the masks
    passed unconverted, or (else) which heads differ when run alone."""
    E = ref.embed_dim
    state = ref.state_dict()
    for order in itertools.permutations(range(3)):
        for transpose in (False, True):
            if order == (0, 1, 2) and not transpose:
                continue
            mine.load_state_dict(_variant_state(state, E, order, transpose))
            try:
                out, _ = _run(mine, query, key, value, **masks)
                same = compare(out, ref_out, atol=atol) is None
            except Exception:  # noqa: BLE001 (a variant that fails tells nothing)
                same = False
            if same:
                mine.load_state_dict(state)
                names = "QKV"
                what = []
                if order != (0, 1, 2):
                    what.append(f"your module reads in_proj_weight's row blocks 0:E, E:2E, 2E:3E as "
                                f"({', '.join(names[k] for k in order)}); PyTorch's order is (Q, K, V)")
                if transpose:
                    what.append("your projections multiply by W instead of W.T (a missing transpose: "
                                "nn.Linear computes x @ W.T + b)")
                return " " + "; ".join(what) + "."
    mine.load_state_dict(state)
    if masks:
        # the masks passed to the attention without conversion: True = NOT allowed read as True = may attend
        flipped = {name: ~m for name, m in masks.items()}
        try:
            ref_flipped, _ = ref(query, key, value, **flipped)
            if compare(ref_flipped, torch.zeros_like(ref_flipped), atol=float("inf")) is None and \
                    compare(_run(mine, query, key, value, **masks)[0], ref_flipped, atol=atol) is None:
                return (" mask convention: your module attends exactly where PyTorch's masks say NOT allowed: pass "
                        "self.allowed_mask(key_padding_mask, attn_mask) to the attention, not the masks themselves.")
        except Exception:  # noqa: BLE001
            pass
    return _which_heads(ref, mine, query, key, value, atol, masks)


def _which_heads(ref, mine, query, key, value, atol, masks):
    """Run each head alone (the other heads' columns of W_O set to 0) in both modules; list those that differ."""
    hd = ref.embed_dim // ref.num_heads
    bad = []
    for h in range(ref.num_heads):
        keep = torch.zeros(ref.embed_dim, dtype=torch.bool)
        keep[h * hd:(h + 1) * hd] = True
        state = {name: t.clone() for name, t in ref.state_dict().items()}
        state["out_proj.weight"][:, ~keep] = 0  # only head h reaches the output
        ref_h = nn.MultiheadAttention(ref.embed_dim, ref.num_heads, batch_first=True).to(query.dtype)
        ref_h.load_state_dict(state)
        saved = {name: t.clone() for name, t in mine.state_dict().items()}
        mine.load_state_dict(state)
        try:
            out_h, _ = _run(mine, query, key, value, **masks)
        except Exception:  # noqa: BLE001
            return ""
        finally:
            mine.load_state_dict(saved)
        if compare(out_h, ref_h(query, key, value, **masks)[0], atol=atol) is not None:
            bad.append(h)
    return f" Heads that differ when run alone: {bad} of {ref.num_heads}." if bad else ""


def _forgotten_piece(ref, out, query, key, value, atol, masks):
    """A named cause when the output is PyTorch's with one piece left out: the in_proj bias, the out_proj
    bias, or out_proj altogether."""
    if not (isinstance(out, torch.Tensor) and out.shape[:-1] == query.shape[:-1]):
        return ""
    E = ref.embed_dim

    def zero_bias(blocks):
        def change(state):
            for k in blocks:
                state["in_proj_bias"][k * E:(k + 1) * E] = 0
        return change

    def drop_out_proj(state):
        state["out_proj.weight"] = torch.eye(E, dtype=query.dtype)
        state["out_proj.bias"].zero_()

    variants = [("your projections leave out the bias: query @ W_Q.T + b_Q, key @ W_K.T + b_K, value @ W_V.T + b_V "
                 "(in_proj_bias holds b_Q, b_K, b_V)", zero_bias((0, 1, 2)))]
    variants += [(f"your {n} projection leaves out its bias b_{n} (entries {rows} of in_proj_bias)", zero_bias((k,)))
                 for k, (n, rows) in enumerate(zip("QKV", ("0:E", "E:2E", "2E:3E")))]
    variants += [("your output leaves out out_proj's bias: use self.out_proj(...) itself, an nn.Linear",
                  lambda state: state["out_proj.bias"].zero_()),
                 ("your output is the merged heads without out_proj: apply self.out_proj to the merged heads",
                  drop_out_proj)]
    for text, change in variants:
        state = {name: t.clone() for name, t in ref.state_dict().items()}
        change(state)
        variant = nn.MultiheadAttention(E, ref.num_heads, batch_first=True).to(query.dtype)
        variant.load_state_dict(state)
        with torch.no_grad():
            if compare(out, variant(query, key, value, **masks)[0], atol=atol) is None:
                return f" ({text}.)"
    return ""


def check_mha(module_class, N, L, S, E, H, *, dtype=torch.float32, self_attention=False, atol=1e-5, case="",
              parts=None, part=None, **masks):
    """``module_class(E, H, **parts)`` with nn.MultiheadAttention's weights (random biases) against it:
    output and head-averaged weights. ``parts`` defaults to PyTorch's parts 1, 2 and 4 (``torch_parts``)."""
    ref, mine = _pair(module_class, E, H, dtype, parts)
    query = torch.randn(N, L, E, dtype=dtype)
    key, value = torch.randn(N, S, E, dtype=dtype), torch.randn(N, S, E, dtype=dtype)
    if self_attention:
        key = value = query
    ref_out, ref_w = ref(query, key, value, need_weights=True, **masks)
    out, w = _run(mine, query, key, value, part=part or ("part 6" if masks else "part 5"), **masks)
    w_msg = compare(w, ref_w, f"{case}: weights averaged over heads", atol=atol, check_dtype=True,
                    dims=("batch", "query position", "key position"))
    out_msg = compare(out, ref_out, f"{case}: output", atol=atol, check_dtype=True,
                      dims=("batch", "query position", "feature"))
    if w_msg or out_msg:
        cause = ""
        if isinstance(out, torch.Tensor) and tuple(out.shape) == tuple(ref_out.shape) and out.dtype == ref_out.dtype:
            cause = _diagnose(ref, mine, query, key, value, ref_out, atol, masks)
        details = "; ".join(m for m in (w_msg, out_msg) if m) + "."
        if cause and not cause.startswith(" Heads"):  # a named cause first, the numbers after it
            raise CheckError(f"{case}:{cause}\n  {details}")
        if isinstance(w, torch.Tensor) and tuple(w.shape) == (N, H, L, S) and H > 1:
            cause = (" Your weights keep one map per head, (N, num_heads, L, S): like PyTorch's module, return them "
                     "averaged over the heads, weights.mean(dim=1), (N, L, S).")
        elif cause.startswith(" Heads") or not cause:
            cause = _forgotten_piece(ref, out, query, key, value, atol, masks) or cause
        if not cause:
            cause = (" Look at the Q and K projections, the scaling and the averaging over heads." if w_msg else
                     " The weights agree, so look at the V projection, the merge and out_proj.")
        raise CheckError(details + cause)
    return ref, mine


def visible_part5(module_class):
    """Part 5 (PyTorch's parts 1, 2, 4 inside): self-attention, encoder-decoder attention (L != S), float64."""
    torch.manual_seed(3)
    check_mha(module_class, 2, 5, 5, 16, 4, self_attention=True, case="self-attention, N=2, L=5, E=16, 4 heads")
    check_mha(module_class, 2, 3, 6, 16, 4, case="encoder-decoder attention, L=3 queries, S=6 keys")
    check_mha(module_class, 2, 4, 3, 8, 2, dtype=torch.float64, atol=1e-10, case="float64")


def padding_is_ignored(module_class, N, L, S, E, H, case, parts=None):
    """Changing the keys and values at padded positions changes no output; padded keys get weight 0."""
    _, mine = _pair(module_class, E, H, parts=parts)
    query, key, value = torch.randn(N, L, E), torch.randn(N, S, E), torch.randn(N, S, E)
    kpm = torch.zeros(N, S, dtype=torch.bool)
    kpm[0, S // 2:] = True  # sequence 0 is padded from S // 2 on
    out, w = _run(mine, query, key, value, part="part 6", key_padding_mask=kpm)
    key2, value2 = key.clone(), value.clone()
    key2[kpm], value2[kpm] = 100 * torch.randn(int(kpm.sum()), E), 100 * torch.randn(int(kpm.sum()), E)
    out2, _ = _run(mine, query, key2, value2, part="part 6", key_padding_mask=kpm)
    assert_close(out2, out, f"{case}: output after changing the padded keys and values (it must not change)",
                 atol=1e-5, dims=("batch", "query position", "feature"))
    leaked = w[0][:, S // 2:]
    if not bool((leaked == 0).all()):
        raise CheckError(f"{case}: padded keys got weight up to {leaked.abs().max().item():.3g}, expected 0")


def causal_holds(module_class, N, L, E, H, case, parts=None):
    """With PyTorch's causal mask, changing token t changes no output before t."""
    _, mine = _pair(module_class, E, H, parts=parts)
    x = torch.randn(N, L, E)
    future = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)  # True = NOT allowed (PyTorch)
    out, _ = _run(mine, x, x, x, part="part 6", attn_mask=future)
    for t in range(1, L):
        x2 = x.clone()
        x2[:, t] = torch.randn(N, E)
        out2, _ = _run(mine, x2, x2, x2, part="part 6", attn_mask=future)
        assert_close(out2[:, :t], out[:, :t], f"{case}: outputs before position {t} after changing token {t} "
                     "(a position may see only itself and earlier ones)", atol=1e-5,
                     dims=("batch", "query position", "feature"))


def visible_part6(module_class):
    """Part 6 (PyTorch's parts 1, 2, 4 inside): key_padding_mask, causal attn_mask, both, a 3-D attn_mask
    (N * H, L, S) with padding, float64 with both masks; padding ignored; causality."""
    torch.manual_seed(4)
    N, L, E, H = 2, 5, 16, 4
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[0, 3:] = True
    kpm[1, 4] = True
    future = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)  # True = may NOT attend
    check_mha(module_class, N, L, L, E, H, self_attention=True, key_padding_mask=kpm, case="key_padding_mask")
    check_mha(module_class, N, L, L, E, H, self_attention=True, attn_mask=future, case="causal attn_mask")
    check_mha(module_class, N, L, L, E, H, self_attention=True, key_padding_mask=kpm, attn_mask=future,
              case="both masks")
    attn3 = torch.rand(N * H, 4, 6) > 0.5
    attn3[..., 0] = False  # every query keeps key 0
    kpm6 = torch.zeros(N, 6, dtype=torch.bool)
    kpm6[1, 3:] = True
    check_mha(module_class, N, 4, 6, E, H, attn_mask=attn3, key_padding_mask=kpm6,
              case="3-D attn_mask (N * H, L, S) and key_padding_mask")
    check_mha(module_class, N, L, L, 8, 2, self_attention=True, dtype=torch.float64, atol=1e-10,
              key_padding_mask=kpm, attn_mask=future, case="float64, both masks")
    padding_is_ignored(module_class, 2, 3, 6, E, H, case="padding")
    causal_holds(module_class, 2, 6, E, H, case="causality")


# ------------------------------------------------------------------------------------------ part 7

_PE_VARIANTS = {
    "exponent: you used 10000 ** (i / d_model) with i the pair index; the formula has 10000 ** (2i / d_model)":
        lambda pos, f, d: pos / 10000 ** ((f // 2) / d),
    "exponent: you used the feature index itself, 10000 ** (feature / d_model); both features 2i and 2i + 1 "
    "use 10000 ** (2i / d_model)": lambda pos, f, d: pos / 10000 ** (f / d),
    "exponent sign: pos * 10000 ** (2i / d_model) instead of pos / 10000 ** (2i / d_model)":
        lambda pos, f, d: pos * 10000 ** ((2 * (f // 2)) / d),
}


def _pe_table(num_steps, d_model, angle, swap=False):
    out = torch.empty(num_steps, d_model, dtype=torch.float64)
    for pos in range(num_steps):
        for f in range(d_model):
            a = angle(pos, f, d_model)
            use_sin = (f % 2 == 0) != swap
            out[pos, f] = math.sin(a) if use_sin else math.cos(a)
    return out


def check_pe(positional_encoding, num_steps, d_model, atol):
    """The encoding against the formula computed entry by entry in float64; float32 out. On a mismatch
    it names a swapped sin/cos or a wrong exponent when one of those reproduces the answer."""
    pe = call_answer(positional_encoding, num_steps, d_model, part="part 7", name="sinusoidal_positional_encoding")
    expected = _pe_table(num_steps, d_model, lambda pos, f, d: pos / 10000 ** ((2 * (f // 2)) / d))
    name = f"sinusoidal_positional_encoding({num_steps}, {d_model})"
    msg = compare(pe, expected.float(), name, atol=atol, rtol=0, dims=("position", "feature"), check_dtype=True)
    if msg is None:
        return
    if isinstance(pe, torch.Tensor) and pe.shape == expected.shape:
        correct = lambda pos, f, d: pos / 10000 ** ((2 * (f // 2)) / d)  # noqa: E731
        candidates = {"sin and cos swapped: even features are sines, odd features cosines": (correct, True)}
        candidates.update({text: (angle, False) for text, angle in _PE_VARIANTS.items()})
        for text, (angle, swap) in candidates.items():
            if compare(pe.double(), _pe_table(num_steps, d_model, angle, swap), atol=atol, rtol=0) is None:
                msg += f" ({text})"
                break
    raise CheckError(msg)


def visible_part7(positional_encoding):
    """Part 7: (12, 8), (3, 2) and (50, 32) against the formula."""
    check_pe(positional_encoding, 12, 8, atol=1e-5)
    check_pe(positional_encoding, 3, 2, atol=1e-5)
    check_pe(positional_encoding, 50, 32, atol=1e-4)


# ------------------------------------------------------------------------------------------ part 8

_BLOCK_HINTS = [(r"unsupported operand type\(s\).*tuple|'tuple' object",
                 "self.self_attn(...) returns a tuple (output, weights), like nn.MultiheadAttention: take its [0] "
                 "(or unpack: attended, _ = self.self_attn(...))")]


def check_block(block_class, N, L, d_model, H, ff, *, dtype=torch.float32, padded=False, atol=1e-5, case="",
                attention_class=torch_parts.MultiHeadAttention):
    """``block_class(d_model, H, ff, attention_class=...)`` with nn.TransformerEncoderLayer's weights
    (non-default norms and biases) against it; by default built on PyTorch's multi-head module
    (``torch_parts.MultiHeadAttention``)."""
    torch.manual_seed(5 + N + L + d_model + H)
    ref = nn.TransformerEncoderLayer(d_model, H, ff, dropout=0.0, batch_first=True).to(dtype)
    with torch.no_grad():  # non-default norms and biases, so that a swapped or missing one shows
        for p in (ref.norm1.weight, ref.norm2.weight):
            p.uniform_(0.5, 1.5)
        for p in (ref.norm1.bias, ref.norm2.bias, ref.self_attn.in_proj_bias, ref.self_attn.out_proj.bias):
            p.normal_(0.0, 0.5)
    with forbid(*REIMPLEMENTED):
        mine = call_answer(block_class, d_model, H, ff, attention_class=attention_class, part="part 8",
                           name="EncoderBlock(...)")
    mine.to(dtype)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(N, L, d_model, dtype=dtype)
    kpm = None
    if padded:
        kpm = torch.zeros(N, L, dtype=torch.bool)
        kpm[0, L // 2 + 1:] = True
    expected = ref(x, src_key_padding_mask=kpm)
    with forbid(*REIMPLEMENTED, "torch.nn.TransformerEncoderLayer.forward"):
        got = call_answer(mine, x, key_padding_mask=kpm, part="part 8", name="EncoderBlock.forward",
                          hints=_BLOCK_HINTS)
    msg = compare(got, expected, f"{case}: EncoderBlock output", atol=atol, check_dtype=True,
                  dims=("batch", "position", "feature"))
    if msg is None:
        return
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        pre = nn.TransformerEncoderLayer(d_model, H, ff, dropout=0.0, batch_first=True, norm_first=True).to(dtype)
        pre.load_state_dict(ref.state_dict())
        if compare(got, pre(x, src_key_padding_mask=kpm), atol=atol) is None:
            msg += (" (your block is pre-norm, x + sublayer(norm(x)); this one is post-norm, as in the paper and "
                    "PyTorch's default: x = norm1(x + self_attn(x, x, x)), then x = norm2(x + ff(x)))")
        else:
            msg += _block_variant(ref, x, kpm, got, atol)
    raise CheckError(msg)


def _block_variant(ref, x, kpm, got, atol):
    """A named cause when the block output is post-norm with a residual connection or a norm left out."""
    def run(res1=True, res2=True, norm1=True, norm2=True):
        with torch.no_grad():
            a = ref.self_attn(x, x, x, key_padding_mask=kpm)[0]
            h = (x + a) if res1 else a
            h = ref.norm1(h) if norm1 else h
            f = ref.linear2(torch.relu(ref.linear1(h)))
            out = (h + f) if res2 else f
            return ref.norm2(out) if norm2 else out
    variants = {
        " (the attention sub-layer has no residual connection: norm1(x + attended), not norm1(attended))":
            dict(res1=False),
        " (the feed-forward sub-layer has no residual connection: norm2(x + ff(x)), not norm2(ff(x)))":
            dict(res2=False),
        " (norm1 is missing after the attention sub-layer)": dict(norm1=False),
        " (norm2 is missing after the feed-forward sub-layer)": dict(norm2=False),
    }
    for text, kwargs in variants.items():
        if compare(got, run(**kwargs), atol=atol) is None:
            return text
    return ""


def visible_part8(block_class):
    """Part 8 (PyTorch's multi-head module inside): 4 heads, with a key padding mask, float64."""
    check_block(block_class, 2, 5, 16, 4, 32, case="N=2, L=5, d_model=16, 4 heads")
    check_block(block_class, 2, 5, 16, 4, 32, padded=True, case="with a key padding mask")
    check_block(block_class, 2, 4, 12, 3, 24, dtype=torch.float64, padded=True, atol=1e-10, case="float64")


# ------------------------------------------------------------------------------------------ part 9


def check_accuracy(test_acc, bar):
    """Part 9: the trained model's per-token accuracy on new sequences must reach ``bar``."""
    if not test_acc >= bar:
        raise CheckError(f"the model reverses only {test_acc:.1%} of the tokens, {bar:.0%} needed: check parts 1, 2, "
                         "5, 7 and 8 (and that the positional encoding is added); at about 10% (chance) the model "
                         "cannot tell positions apart")
