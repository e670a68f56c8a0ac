"""Inputs of the independent check, drawn at grading time.

``draw(assignment, seed)`` returns a list of cases, each a dict of plain values (str, int, float,
bool, None, lists) and tensors, so that it travels to the check processes through ``torch.save`` and
comes back with ``torch.load(..., weights_only=True)``. Shapes are drawn too (a batch of one, a single
time step, several layers, ``float64``, saturating inputs, masks of every shape the parts accept, a
query whose keys are all masked, ...), from a seed made with :mod:`secrets` by the caller, so that no
notebook can know them. Every case has:

- ``part``: the grade_id of the test cell it checks; ``kind``: what the check process runs;
- ``label``: the setting in words (used in messages); ``atol``, ``rtol``: the visible tests' tolerances.
"""

import math
import random

import torch

__all__ = ["draw", "PARTS"]

PARTS = {
    "lstm": ["test_lstm_cell_forward", "test_lstm_module", "test_lstm_cell_backward", "test_training"],
    "multi_head_attention": ["test_attention", "test_heads", "test_causal", "test_masks", "test_mha",
                             "test_mha_masked", "test_positional", "test_block", "test_training"],
}
_BIG = 1e4  # raises one gate's bias so that it saturates to exactly 0 or 1 (see utils.lstm_checks)
F64 = dict(atol=1e-12, rtol=1e-10)
F32 = dict(atol=1e-5, rtol=1e-4)


def _dt(name):
    return {"float32": torch.float32, "float64": torch.float64}[name]


class _Draw:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed % 2**63)

    def int(self, low, high):
        return self.rng.randint(low, high)

    def randn(self, *shape, dtype="float32", scale=1.0):
        return scale * torch.randn(*shape, generator=self.gen, dtype=_dt(dtype))

    def uniform(self, *shape, bound, dtype="float32"):
        return (torch.rand(*shape, generator=self.gen, dtype=_dt(dtype)) * 2 - 1) * bound

    def rand(self, *shape):
        return torch.rand(*shape, generator=self.gen)


def _case(part, kind, label, tol, **values):
    return dict(part=part, kind=kind, label=label, **tol, **values)


# ---------------------------------------------------------------------------------------- LSTM


def _lstm_weights(d, D, H, dtype, bias_scale=1.0):
    b = 1 / math.sqrt(H)
    return [d.uniform(4 * H, D, bound=b, dtype=dtype), d.uniform(4 * H, H, bound=b, dtype=dtype),
            d.uniform(4 * H, bound=bias_scale * b, dtype=dtype), d.uniform(4 * H, bound=bias_scale * b, dtype=dtype)]


def _cell_forward_case(d, N, D, H, dtype, scales, tol, label):
    x, h, c = d.randn(N, D, dtype=dtype, scale=scales[0]), d.randn(N, H, dtype=dtype, scale=scales[1]), \
        d.randn(N, H, dtype=dtype, scale=scales[2])
    W_ih, W_hh, b_ih, b_hh = _lstm_weights(d, D, H, dtype)

    def raised(k):
        b = b_ih.clone()
        b[k * H:(k + 1) * H] += _BIG
        return b

    ones, zeros = torch.ones_like(c), torch.zeros_like(c)
    calls = [[x, h, c, W_ih, W_hh, b_ih, b_hh],  # the case itself, then the gate probes
             [x, h, ones, W_ih, W_hh, b_ih, b_hh], [x, h, zeros, W_ih, W_hh, b_ih, b_hh],
             [x, h, zeros, W_ih, W_hh, raised(2), b_hh], [x, h, zeros, W_ih, W_hh, raised(0), b_hh],
             [x, h, 100 * ones, W_ih, W_hh, raised(1), b_hh]]
    return _case("test_lstm_cell_forward", "cell_forward", f"{label} (N={N}, D={D}, H={H}, {dtype})", tol,
                 calls=calls)


def _module_case(d, D, H, L, N, T, *, batch_first=True, initial_state=False, dtype="float32", scale=1.0,
                 grads=True, tol=F32, label=""):
    state = {}
    for k in range(L):
        for name, t in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                           _lstm_weights(d, D if k == 0 else H, H, dtype)):
            state[f"{name}_l{k}"] = t
    shape = (N, T, D) if batch_first else (T, N, D)
    x = d.randn(*shape, dtype=dtype, scale=scale)
    h0, c0 = d.randn(L, N, H, dtype=dtype), d.randn(L, N, H, dtype=dtype)
    out_shape = (N, T, H) if batch_first else (T, N, H)
    w_out, w_h, w_c = d.randn(*out_shape, dtype=dtype), d.randn(L, N, H, dtype=dtype), d.randn(L, N, H, dtype=dtype)
    setting = (f"{label}N={N}, T={T}, D={D}, H={H}, num_layers={L}, batch_first={batch_first}, "
               f"initial state={'given' if initial_state else 'zeros'}, {dtype}")
    return _case("test_lstm_module", "lstm_module", setting, tol, sizes=[D, H, L], batch_first=batch_first,
                 initial_state=initial_state, grads=grads, state=state, x=x, h0=h0, c0=c0, w_out=w_out, w_h=w_h,
                 w_c=w_c, dtype=dtype)


def _lstm_gates(x, h, c, W_ih, W_hh, b_ih, b_hh):
    z = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh
    zi, zf, zg, zo = z.chunk(4, 1)
    i, f, g, o = zi.sigmoid(), zf.sigmoid(), zg.tanh(), zo.sigmoid()
    return i, f, g, o, f * c + i * g


def _backward_case(d, N, D, H, dtype, scales, tol, label, dh_zero=False, dc_zero=False):
    x, h, c = d.randn(N, D, dtype=dtype, scale=scales[0]), d.randn(N, H, dtype=dtype, scale=scales[1]), \
        d.randn(N, H, dtype=dtype, scale=scales[2])
    W_ih, W_hh, b_ih, b_hh = _lstm_weights(d, D, H, dtype)
    dh, dc = d.randn(N, H, dtype=dtype), d.randn(N, H, dtype=dtype)
    if dh_zero:
        dh = torch.zeros_like(dh)
    if dc_zero:
        dc = torch.zeros_like(dc)
    i, f, g, o, c_next = _lstm_gates(x, h, c, W_ih, W_hh, b_ih, b_hh)
    cache = [x, h, c, W_ih, W_hh, i, f, g, o, c_next]
    return _case("test_lstm_cell_backward", "cell_backward", f"{label} (N={N}, D={D}, H={H}, {dtype})", tol,
                 dh=dh, dc=dc, cache=cache, b_ih=b_ih, b_hh=b_hh)


def _lstm(d, constants):
    r = d.int
    cases = [
        _cell_forward_case(d, r(2, 6), r(2, 7), r(2, 7), "float32", (1, 1, 1), F32, "random values"),
        _cell_forward_case(d, 1, r(5, 8), r(1, 3), "float32", (1, 1, 1), F32, "a batch of one, D != H"),
        _cell_forward_case(d, r(2, 6), r(2, 6), r(4, 8), "float64", (1, 1, 1), F64, "float64"),
        _cell_forward_case(d, r(3, 7), r(4, 9), r(2, 4), "float32", (60, 20, 10), F32, "saturated gates"),
    ]
    H = r(2, 4)
    cases += [
        _module_case(d, r(2, 5), r(2, 6), 1, r(2, 4), r(3, 8), grads=False, label="one layer, "),
        _module_case(d, H, H, 3, 2, r(3, 6), initial_state=True, dtype="float64", tol=F64,
                     label="three layers, D == H, "),
        _module_case(d, r(2, 4), r(2, 5), 1, 1, 1, initial_state=True, label="a single step, a batch of one, "),
        _module_case(d, r(3, 6), r(2, 3), 2, r(2, 4), r(3, 6), batch_first=False, scale=10.0,
                     label="(T, N, D) input, saturating, "),
        _module_case(d, r(2, 4), r(4, 7), 2, r(3, 5), r(8, 13), initial_state=True, label="two layers, "),
    ]
    cases += [
        _backward_case(d, r(2, 6), r(2, 6), r(3, 6), "float32", (1, 1, 1), F32, "random values"),
        _backward_case(d, 1, r(4, 7), r(1, 3), "float64", (1, 1, 1), F64, "float64, a batch of one"),
        _backward_case(d, r(4, 8), r(1, 3), r(6, 9), "float32", (1, 1, 1), F32, "only dc_next", dh_zero=True),
        _backward_case(d, r(3, 6), r(2, 5), r(2, 5), "float32", (1, 1, 1), F32, "only dh_next", dc_zero=True),
        _backward_case(d, r(4, 7), r(3, 6), r(2, 4), "float64", (40, 5, 3), dict(atol=1e-10, rtol=1e-8),
                       "float64, saturated gates"),
    ]
    cases.append(_adding_case(d, T=int(constants.get("num_steps", 50))))
    return cases


def _adding_case(d, N=1000, T=50):
    values = d.rand(N, T)
    half = T // 2
    first = torch.randint(0, half, (N,), generator=d.gen)
    second = torch.randint(half, T, (N,), generator=d.gen)
    rows = torch.arange(N)
    X = torch.zeros(N, T, 2)
    X[..., 0] = values
    X[rows, first, 1] = 1.0
    X[rows, second, 1] = 1.0
    X_far = X.clone()  # the longest gaps: first marker in the first 3 steps, second in the last 3
    X_far[:, :, 1] = 0.0
    f2, s2 = rows % 3, T - 1 - (rows // 3) % 3
    X_far[rows, f2, 1] = 1.0
    X_far[rows, s2, 1] = 1.0
    return _case("test_training", "adding", f"{N} new sequences of the adding problem (T={T})", F32, X=X, X_far=X_far,
                 perturb_seed=d.int(0, 2**31))


# --------------------------------------------------------------------------- multi-head attention


def _mask_with_a_key_per_query(d, shape):
    m = d.rand(*shape) > 0.5
    m[..., d.int(0, shape[-1] - 1)] = True  # every query keeps at least this key
    return m


def _attention(d):
    r = d.int
    out = []

    def add(q, k, v, mask, tol, label, expect_error=False):
        out.append(_case("test_attention", "attention", label, tol, q=q, k=k, v=v, mask=mask,
                         expect_error=expect_error))

    N, L, S, E, Ev = r(1, 3), r(2, 6), r(2, 7), r(2, 8), r(1, 6)
    add(d.randn(N, L, E), d.randn(N, S, E), d.randn(N, S, Ev), None, F32, f"no mask (N={N}, L={L}, S={S}, E={E})")
    add(d.randn(N, L, E), d.randn(N, S, E), d.randn(N, S, Ev), _mask_with_a_key_per_query(d, (N, L, S)), F32,
        f"a mask (N, L, S) = {(N, L, S)}")
    H, L = r(2, 4), r(2, 6)
    add(d.randn(2, H, L, E), d.randn(2, H, L, E), d.randn(2, H, L, Ev), torch.ones(L, L, dtype=torch.bool).tril(),
        F32, f"4-D (N, heads, L, E) with a causal (L, S) mask, L={L}")
    S = r(3, 7)
    pad = torch.ones(2, 1, 1, S, dtype=torch.bool)
    pad[0, ..., r(1, S - 1):] = False
    add(d.randn(2, H, 3, E), d.randn(2, H, S, E), d.randn(2, H, S, Ev), pad, F32, f"a padding mask (N, 1, 1, S), S={S}")
    N, L = r(1, 3), r(2, 6)
    add(d.randn(N, L, 7, dtype="float64"), d.randn(N, L, 7, dtype="float64"), d.randn(N, L, 5, dtype="float64"),
        None, F64, f"float64 (N={N}, L={L})")
    add(d.randn(1, 1, 4), d.randn(1, 1, 4), d.randn(1, 1, 3), None, F32, "L = S = 1")
    add(d.randn(2, 4, 16, scale=40), d.randn(2, 6, 16, scale=40), d.randn(2, 6, 16), None,
        dict(atol=1e-4, rtol=1e-4), "large scores (softmax must be stable)")
    add(d.randn(2, 5, 64), d.randn(2, 7, 64), d.randn(2, 7, 3), None, F32, "E = 64")
    empty = _mask_with_a_key_per_query(d, (2, 3, 4))
    empty[r(0, 1), r(0, 2)] = False  # one query with no key left: the given check must raise ValueError
    add(d.randn(2, 3, 4), d.randn(2, 4, 4), d.randn(2, 4, 4), empty, F32, "a query whose keys are all masked",
        expect_error=True)
    return out


def _heads(d):
    r = d.int
    out = []
    for N, L, H, hd, dtype in ((r(1, 3), r(1, 5), r(2, 4), r(1, 4), "float32"), (2, 3, 1, r(2, 5), "float32"),
                               (r(1, 3), r(2, 4), 8, 1, "float32"), (1, 1, 3, 2, "float32"),
                               (2, r(2, 5), 2, r(2, 4), "float64")):
        x = d.randn(N, L, H * hd, dtype=dtype)
        heads = d.randn(N, H, L, hd, dtype=dtype)
        out.append(_case("test_heads", "heads", f"N={N}, L={L}, d_model={H * hd}, {H} heads, {dtype}",
                         dict(atol=0.0, rtol=0.0), x=x, num_heads=H, heads=heads))
    H = r(3, 5)
    d_model = 2 * H + 1  # never divisible by H >= 3
    out.append(_case("test_heads", "heads_not_divisible", f"d_model={d_model}, {H} heads", dict(atol=0.0, rtol=0.0),
                     d_model=d_model, num_heads=H))
    return out


def _masks(d):
    r = d.int
    out = []
    N, H, L, S = r(1, 3), r(2, 4), r(2, 5), r(2, 6)

    def add(kpm, attn, n, h, l_, s, label):
        out.append(_case("test_masks", "masks", label, dict(atol=0.0, rtol=0.0), kpm=kpm, attn=attn,
                         sizes=[n, h, l_, s]))

    add(None, None, N, H, L, S, "no masks")
    add(d.rand(N, S) > 0.6, None, N, H, L, S, f"key_padding_mask (N, S) only, N={N}, S={S}")
    add(None, d.rand(L, S) > 0.6, N, H, L, S, f"attn_mask (L, S) only, L={L}, S={S}")
    add(d.rand(N, S) > 0.6, d.rand(L, S) > 0.6, N, H, L, S, "both masks, attn_mask (L, S)")
    add(None, d.rand(N * H, L, S) > 0.5, N, H, L, S, f"attn_mask (N * num_heads, L, S), N={N}, {H} heads")
    add(d.rand(N, S) > 0.5, d.rand(N * H, L, S) > 0.5, N, H, L, S, "both masks, attn_mask (N * num_heads, L, S)")
    add(d.rand(3, 2) > 0.5, d.rand(3, 2) > 0.5, 3, 1, 3, 2, "one head, L != S")
    return out


def _mha_state(d, E, dtype, bias_scale=0.5):
    b = math.sqrt(6 / (E + 3 * E))  # xavier_uniform of (3E, E), as PyTorch
    return {"in_proj_weight": d.uniform(3 * E, E, bound=b, dtype=dtype),
            "in_proj_bias": d.randn(3 * E, dtype=dtype, scale=bias_scale),
            "out_proj.weight": d.uniform(E, E, bound=1 / math.sqrt(E), dtype=dtype),
            "out_proj.bias": d.randn(E, dtype=dtype, scale=bias_scale)}


def _mha_case(d, part, N, L, S, E, H, *, dtype="float32", self_attention=False, kpm=None, attn=None, tol=F32,
              label=""):
    state = _mha_state(d, E, dtype)
    query = d.randn(N, L, E, dtype=dtype)
    key, value = (query, query) if self_attention else (d.randn(N, S, E, dtype=dtype), d.randn(N, S, E, dtype=dtype))
    calls = [[query, key, value]]
    if kpm is not None:  # the same, with the padded keys and values changed: the output must not change
        key2, value2 = key.clone(), value.clone()
        n_pad = int(kpm.sum())
        key2[kpm], value2[kpm] = d.randn(n_pad, E, dtype=dtype, scale=100), d.randn(n_pad, E, dtype=dtype, scale=100)
        calls.append([query, key2, value2])
    if attn is not None and attn.dim() == 2 and self_attention and L > 2:  # causality: change the last token
        x2 = query.clone()
        x2[:, -1] = d.randn(N, E, dtype=dtype)
        calls.append([x2, x2, x2])
    setting = f"{label} (N={N}, L={L}, S={S}, E={E}, {H} heads, {dtype})"
    return _case(part, "mha", setting, tol, sizes=[E, H], state=state, calls=calls, kpm=kpm, attn=attn, dtype=dtype)


def _mha(d):
    r = d.int
    out = [
        _mha_case(d, "test_mha", r(1, 3), 5, 5, 16, 4, self_attention=True, label="self-attention"),
        _mha_case(d, "test_mha", 2, r(1, 4), r(4, 7), 8, 2, label="encoder-decoder attention, L != S"),
        _mha_case(d, "test_mha", 3, 4, 4, 8, 1, self_attention=True, label="one head"),
        _mha_case(d, "test_mha", 2, 4, 5, 8, 8, label="8 heads of size 1"),
        _mha_case(d, "test_mha", 1, 1, 1, 12, 3, label="N = L = S = 1"),
        _mha_case(d, "test_mha", 2, 3, 5, 16, 2, dtype="float64", tol=dict(atol=1e-10, rtol=1e-4), label="float64"),
    ]
    N, H, L, S = 2, r(2, 4), r(3, 5), r(4, 7)
    E = 4 * H
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[0, r(1, L - 1):] = True  # padding at the end: every query keeps key 0
    kpm[1, L - 1] = True
    future = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)  # True = may NOT attend
    attn3 = d.rand(N * H, L, S) > 0.5
    attn3[..., 0] = False  # every query keeps key 0
    kpm_s = torch.zeros(N, S, dtype=torch.bool)
    kpm_s[1, r(1, S - 1):] = True
    m = "test_mha_masked"
    out += [
        _mha_case(d, m, N, L, L, E, H, self_attention=True, kpm=kpm, label="key_padding_mask"),
        _mha_case(d, m, N, L, L, E, H, self_attention=True, attn=future, label="causal attn_mask"),
        _mha_case(d, m, N, L, L, E, H, self_attention=True, kpm=kpm, attn=future, label="both masks"),
        _mha_case(d, m, N, L, S, E, H, attn=attn3, label="3-D attn_mask (N * num_heads, L, S), one per head"),
        _mha_case(d, m, N, L, S, E, H, attn=attn3, kpm=kpm_s, label="3-D attn_mask and key_padding_mask"),
        _mha_case(d, m, N, L, L, 8, 1, self_attention=True, kpm=kpm, attn=future, label="one head, both masks"),
        _mha_case(d, m, N, L, L, 8, 2, self_attention=True, kpm=kpm, attn=future, dtype="float64",
                  tol=dict(atol=1e-10, rtol=1e-4), label="float64, both masks"),
    ]
    return out


def _block_case(d, N, L, E, H, ff, *, dtype="float32", padded=False, tol=F32, label=""):
    state = {f"self_attn.{k}": v for k, v in _mha_state(d, E, dtype).items()}
    state.update({"linear1.weight": d.uniform(ff, E, bound=1 / math.sqrt(E), dtype=dtype),
                  "linear1.bias": d.uniform(ff, bound=1 / math.sqrt(E), dtype=dtype),
                  "linear2.weight": d.uniform(E, ff, bound=1 / math.sqrt(ff), dtype=dtype),
                  "linear2.bias": d.uniform(E, bound=1 / math.sqrt(ff), dtype=dtype),
                  "norm1.weight": 1 + d.uniform(E, bound=0.5, dtype=dtype),
                  "norm1.bias": d.randn(E, dtype=dtype, scale=0.5),
                  "norm2.weight": 1 + d.uniform(E, bound=0.5, dtype=dtype),
                  "norm2.bias": d.randn(E, dtype=dtype, scale=0.5)})
    kpm = None
    if padded:
        kpm = torch.zeros(N, L, dtype=torch.bool)
        kpm[0, L // 2 + 1:] = True
    return _case("test_block", "block", f"{label} (N={N}, L={L}, d_model={E}, {H} heads, {dtype})", tol,
                 sizes=[E, H, ff], state=state, x=d.randn(N, L, E, dtype=dtype), kpm=kpm, dtype=dtype)


def _mha_assignment(d, constants):
    r = d.int
    cases = _attention(d) + _heads(d)
    cases += [_case("test_causal", "causal", f"causal_mask({L})", dict(atol=0.0, rtol=0.0), L=L)
              for L in (1, r(2, 5), r(6, 12))]
    cases += _masks(d) + _mha(d)
    cases += [_case("test_positional", "positional", f"sinusoidal_positional_encoding({T}, {D})",
                    dict(atol=1e-4 if T * D > 500 else 1e-5, rtol=0.0), T=T, D=D)
              for T, D in ((r(2, 15), 2 * r(1, 6)), (1, 4), (r(40, 80), 64), (r(80, 120), 2 * r(2, 4)))]
    cases += [
        _block_case(d, 2, r(3, 6), 16, 4, 32, label="4 heads"),
        _block_case(d, 2, r(4, 6), 16, 4, 32, padded=True, label="with a key padding mask"),
        _block_case(d, 3, 4, 8, 1, 8, label="one head"),
        _block_case(d, 1, 1, 8, 2, 16, label="N = L = 1"),
        _block_case(d, 2, 6, 12, 3, 24, dtype="float64", padded=True, tol=dict(atol=1e-10, rtol=1e-4),
                    label="float64, padded"),
    ]
    T, V = int(constants.get("num_steps", 10)), int(constants.get("vocab_size", 10))
    X = torch.randint(0, V, (500, T), generator=d.gen)
    cases.append(_case("test_training", "reverser", "500 new sequences of the reversal task", F32, X=X,
                       perturb_seed=d.int(0, 2**31)))
    return cases


def draw(assignment, seed, constants=None):
    """The cases of ``assignment`` ("lstm" or "multi_head_attention") for ``seed`` (an int).

    constants: the given cells' constants as the graded run sets them (``extract.given_constants``):
    the training parts' sequences have the length the model was trained on (``num_steps``).
    """
    d, constants = _Draw(seed), constants or {}
    if assignment == "lstm":
        return _lstm(d, constants)
    if assignment == "multi_head_attention":
        return _mha_assignment(d, constants)
    raise ValueError(f"assignment: expected one of {sorted(PARTS)}, got {assignment!r}")
