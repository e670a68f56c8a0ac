"""Comparison, in the grading process, of the check process's outputs with the reference's.

Runs no student code: it reads two lists of plain outputs (loaded with ``weights_only=True``) and
decides, part by part, whether the answer agrees with PyTorch on every drawn case (with the visible
tests' tolerances) and whether it reached an operator it must re-implement. Messages say what differs
in a student's words: which gate, time step, gradient or head, and how far.
"""

import dataclasses

import torch

from utils.checks import compare

from .ops import describe, forbidden_reached

__all__ = ["PartResult", "compare_part", "WHAT", "FORBIDDEN_KINDS", "TRAINING_BARS"]


@dataclasses.dataclass
class PartResult:
    """The independent check of one graded part (a test cell's grade_id).

    - passed: the answer agrees with PyTorch on every new case (None: the part was not checked,
      e.g. no trained model to evaluate because the release does not save one);
    - points_ok: passed, and it reached no operator it must re-implement: the part may keep its points;
    - reason: what went wrong, for the student ("" when nothing did); may carry a note when it passed;
    - ops: the forbidden operators or functions reached; seed: the seed the inputs were drawn from.
    """

    passed: object
    points_ok: bool
    reason: str = ""
    ops: tuple = ()
    seed: int = 0


WHAT = {
    "test_lstm_cell_forward": "`lstm_cell_forward`", "test_lstm_module": "`LSTM`",
    "test_lstm_cell_backward": "`lstm_cell_backward`", "test_attention": "`dot_product_attention`",
    "test_heads": "`split_heads` / `merge_heads`", "test_causal": "`causal_mask`", "test_masks": "`mha_allowed_mask`",
    "test_mha": "`MultiHeadAttention`", "test_mha_masked": "`MultiHeadAttention` (with masks)",
    "test_positional": "`sinusoidal_positional_encoding`", "test_block": "`EncoderBlock`",
}
FORBIDDEN_KINDS = {"lstm": {"test_lstm_cell_backward": ("lstm", "autograd")}, "multi_head_attention": {}}
DEFAULT_KINDS = {"lstm": ("lstm",), "multi_head_attention": ("multi_head_attention",)}
# The graded bars of the training parts (the notebooks' bars under grading).
TRAINING_BARS = {"lstm": 0.05, "multi_head_attention": 0.6}
GATES = ("i", "f", "g", "o")
GATE_NAMES = {"i": "input gate i", "f": "forget gate f", "g": "candidate g", "o": "output gate o"}


def _is_tensor(t):
    return isinstance(t, torch.Tensor)


def _seq(value, n):
    return isinstance(value, list) and len(value) >= n


def _cmp(got, want, name, case, dims=None, check_dtype=True, atol=None, rtol=None):
    return compare(got, want, name, atol=case["atol"] if atol is None else atol,
                   rtol=case["rtol"] if rtol is None else rtol, dims=dims, check_dtype=check_dtype)


# ---------------------------------------------------------------------------------------- LSTM


def _probed(calls):
    """Gates recovered from the probe calls' (h, c) outputs (see inputs._cell_forward_case)."""
    (_, c1), (_, c0), (_, ci), (_, cg), (ho, _) = calls
    return {"f": c1 - c0, "i": ci, "g": cg, "o": ho}


def cell_forward(case, out, ref):
    r = out.get("result")
    if not _seq(r, 3):
        return "expected to return (h_next, c_next, cache)"
    (h_ref, c_ref), probes_ref = ref["calls"][0], ref["calls"][1:]
    problems = [m for m in (_cmp(r[1], c_ref, "c_next", case, ("batch", "unit")),
                            _cmp(r[0], h_ref, "h_next", case, ("batch", "unit"))) if m]
    want_gates = _probed(probes_ref)
    probes = out.get("probes")
    if probes and len(probes) == 5 and all(_seq(p, 2) and all(_is_tensor(t) for t in p) for p in probes) \
            and all(p[0].shape == h_ref.shape and p[1].shape == c_ref.shape for p in probes):
        got_gates = _probed(probes)
        lines = []
        for k in GATES:
            m = _cmp(got_gates[k], want_gates[k], GATE_NAMES[k], case, ("batch", "unit"), check_dtype=False)
            if m:
                lines.append(m)
        if lines:
            head = "gate by gate" if problems else "h_next and c_next agree, but not when a gate saturates"
            problems.append(head + ": " + "; ".join(lines))
    if not problems:
        cache = r[2]
        names = ("x", "h_prev", "c_prev", "W_ih", "W_hh", "i", "f", "g", "o", "c_next")
        if not _seq(cache, 10) or len(cache) != 10:
            return "cache: expected the tuple (" + ", ".join(names) + ")"
        want = [*case["calls"][0][:5], want_gates["i"], want_gates["f"], want_gates["g"], want_gates["o"], c_ref]
        for k, name in enumerate(names):
            m = _cmp(cache[k], want[k], f"cache[{k}] ({name})", case, check_dtype=False)
            if m:
                return m
    return "; ".join(problems) or None


def _first_step(got, want, time_dim, case):
    for t in range(want.shape[time_dim]):
        if _cmp(got.select(time_dim, t), want.select(time_dim, t), "", case, check_dtype=False):
            return t
    return None


def _module_message(case, r, ref):
    if "error" in r:
        return f"raised {r['error']}"
    if r.get("names") != ref["names"]:
        want = {k: s for k, s in ref["names"]}
        got = {k: s for k, s in r.get("names") or []}
        missing = [k for k in want if k not in got]
        wrong = [f"{k} {tuple(got[k])} instead of {tuple(want[k])}" for k in want if k in got and got[k] != want[k]]
        return "parameters: " + "; ".join(filter(None, [", ".join(missing) and f"missing {', '.join(missing)}",
                                                           ", ".join(wrong)])) if (missing or wrong) else \
            "parameters: not PyTorch's names and shapes"
    bf = case["batch_first"]
    time_dim = 1 if bf else 0
    dims = ("batch", "time step", "unit") if bf else ("time step", "batch", "unit")
    m = _cmp(r["output"], ref["output"], "output", case, dims)
    if m:
        if _is_tensor(r["output"]) and r["output"].shape == ref["output"].shape:
            t = _first_step(r["output"], ref["output"], time_dim, case)
            if t is not None:
                step = _cmp(r["output"].select(time_dim, t), ref["output"].select(time_dim, t),
                            f"output at time step {t}", case, ("batch", "unit"), check_dtype=False)
                before = f"steps 0..{t - 1} agree" if t else "the very first step is already off"
                return f"output first differs at time step {t} ({before}): {step}"
        return m
    for name in ("h_n", "c_n"):
        m = _cmp(r[name], ref[name], name, case, ("layer", "batch", "unit"))
        if m:
            return m
    if case["grads"]:
        pairs = [("gradient of the input", "grad_x"), ("gradient of h_0", "grad_h0"), ("gradient of c_0", "grad_c0")]
        for label, key in pairs:
            if key in ref:
                m = _cmp(r.get(key), ref[key], label, case, check_dtype=False)
                if m:
                    return "outputs agree but gradients differ: " + m
        for name, want in ref["grad_params"].items():
            m = _cmp((r.get("grad_params") or {}).get(name), want, f"gradient of {name}", case, check_dtype=False)
            if m:
                return "outputs agree but gradients differ: " + m
    return None


def lstm_module(case, out, ref):
    return _module_message(case, out, ref)


def _gate_blocks(got, want, case):
    H = want.shape[0] // 4
    if not _is_tensor(got) or got.shape != want.shape:
        return ""
    g4, w4 = got.reshape(4, H, *want.shape[1:]), want.reshape(4, H, *want.shape[1:])
    bad = [GATES[k] for k in range(4) if _cmp(g4[k], w4[k], "", case, check_dtype=False)]
    return f" (gate blocks that differ: {', '.join(bad)})" if bad else ""


def cell_backward(case, out, ref):
    r = out.get("result")
    if not _seq(r, 6):
        return "expected to return (dx, dh_prev, dc_prev, dW_ih, dW_hh, db)"
    problems = []
    for k, (name, dims) in enumerate((("dx", ("batch", "input unit")), ("dh_prev", ("batch", "unit")),
                                      ("dc_prev", ("batch", "unit")), ("dW_ih", None), ("dW_hh", None), ("db", None))):
        m = _cmp(r[k], ref["result"][k], name, case, dims, check_dtype=False)
        if m:
            problems.append(m + (_gate_blocks(r[k], ref["result"][k], case) if k >= 3 else ""))
    return "; ".join(problems) or None


def adding(case, out, ref, bar):
    if "error" in out:
        return f"evaluating your trained model on new sequences raised {out['error']}"
    X = case["X"]
    y = (X[..., 0] * X[..., 1]).sum(dim=1)
    y_far = (case["X_far"][..., 0] * case["X_far"][..., 1]).sum(dim=1)
    if not out.get("uses_your_lstm"):
        return "AddingModel must use your LSTM (self.recurrent)"
    if out.get("torch_rnn"):
        return f"the model contains PyTorch's {', '.join(out['torch_rnn'])}"
    pred = out.get("pred")
    if not _is_tensor(pred) or pred.shape != y.shape:
        return f"predictions: shape {tuple(y.shape)} expected, got {tuple(getattr(pred, 'shape', ()))}"
    mse = float(((pred.double() - y.double()) ** 2).mean())
    if not mse < bar:
        return f"your trained model's MSE on {len(y)} new sequences is {mse:.4f}, it should be below {bar}"
    far = out.get("pred_far")
    far_mse = float(((far.double() - y_far.double()) ** 2).mean()) if _is_tensor(far) and far.shape == y.shape else 1e9
    if not far_mse < 2 * bar:
        return f"MSE {far_mse:.4f} on new sequences with the longest gaps, it should be below {2 * bar}"
    pert = out.get("pred_perturbed")
    pert_mse = float(((pert.double() - y.double()) ** 2).mean()) if _is_tensor(pert) and pert.shape == y.shape else 1e9
    if pert_mse < bar:
        return (f"with the LSTM's trained weights replaced by random ones, your model still reaches MSE "
                f"{pert_mse:.4f}: its predictions do not come from the LSTM "
                "(AddingModel.forward must use self.recurrent)")
    return None


def reverser(case, out, ref, bar):
    if "error" in out:
        return f"evaluating your trained model on new sequences raised {out['error']}"
    Y = case["X"].flip(1)
    if not out.get("your_attention_modules"):
        return "the model must use your MultiHeadAttention"
    if out.get("torch_attention"):
        return f"the model contains PyTorch's {', '.join(out['torch_attention'])}"
    pred = out.get("pred")
    if not _is_tensor(pred) or pred.shape != Y.shape:
        return f"predictions: shape {tuple(Y.shape)} expected, got {tuple(getattr(pred, 'shape', ()))}"
    acc = float((pred == Y).double().mean())
    if not acc >= bar:
        return f"your trained model reverses {acc:.1%} of the tokens of {len(Y)} new sequences, {bar:.0%} needed"
    pert = out.get("pred_perturbed")
    pert_acc = float((pert == Y).double().mean()) if _is_tensor(pert) and pert.shape == Y.shape else 0.0
    if pert_acc >= bar:
        return (f"with the attention weights replaced by random ones, your model still reverses {pert_acc:.1%} of the "
                "tokens: its predictions do not come from attention (EncoderBlock.forward must use self.self_attn)")
    return None


# --------------------------------------------------------------------------- multi-head attention


def _attention_dims(q):
    lead = ("batch", "head")[: q.dim() - 2] if q.dim() <= 4 else tuple(f"dim {i}" for i in range(q.dim() - 2))
    return lead + ("query", "feature"), lead + ("query", "key")


def attention(case, out, ref):
    if case["expect_error"]:
        if out.get("raised") != "ValueError":
            return "a query with no allowed key must raise ValueError (keep the given check_attention_mask call)"
        return None
    r = out.get("result")
    if not _seq(r, 2):
        return "expected to return (output, weights)"
    (o, w), (o_ref, w_ref) = r[:2], ref["result"]
    out_dims, w_dims = _attention_dims(case["q"])
    m = _cmp(w, w_ref, "weights", case, w_dims)
    if m:
        return m
    m = _cmp(w.sum(-1), torch.ones_like(w_ref.sum(-1)), "sum of the weights over the keys", case, w_dims[:-1],
             check_dtype=False, rtol=0.0)
    if m:
        return m
    m = _cmp(o, o_ref, "output", case, out_dims)
    if m:
        return m
    mask = case["mask"]
    if mask is not None:
        leaked = (w != 0) & ~mask.broadcast_to(w.shape)
        if bool(leaked.any()):
            where = [int(i) for i in leaked.nonzero()[0]]
            return f"a masked pair got weight {w[tuple(where)].item():.3g} at {dict(zip(w_dims, where))}; it must be 0"
    return None


def heads(case, out, ref):
    for key, name, dims in (("split", "split_heads(x)", ("batch", "head", "position", "feature")),
                            ("merged", "merge_heads(split_heads(x))", ("batch", "position", "feature")),
                            ("merged_heads", "merge_heads(heads)", ("batch", "position", "feature"))):
        m = _cmp(out.get(key), ref[key], name, case, dims)
        if m:
            return m
    return None


def heads_not_divisible(case, out, ref):
    if out.get("raised") != "ValueError":
        got = out.get("raised")
        return (f"split_heads with {case['label']} must raise ValueError, "
                + (f"it raised {got}" if got else "it raised nothing"))
    return None


def causal(case, out, ref):
    m = out.get("mask")
    if not _is_tensor(m) or m.dtype != torch.bool:
        return f"expected a bool tensor, got {getattr(m, 'dtype', type(m).__name__)}"
    msg = _cmp(m.to(torch.float64), ref["mask"].to(torch.float64), case["label"], case, ("query", "key"),
               check_dtype=False)
    if msg:
        return msg + " (True = may attend, keys <= query)"
    if out.get("meta_device") != "meta":
        call = case["label"].replace(")", ", device='meta')")
        return f"{call} gave a tensor on {out.get('meta_device')}: put the mask on the given device"
    return None


def masks(case, out, ref):
    if ref["is_none"]:
        return None if out.get("is_none") else "mha_allowed_mask(None, None, H) must return None"
    got = out.get("mask")
    N, H, L, S = case["sizes"]
    if not _is_tensor(got) or got.dtype != torch.bool:
        return f"expected a bool tensor, got {getattr(got, 'dtype', type(got).__name__)}"
    try:
        got = got.broadcast_to(N, H, L, S)
    except RuntimeError:
        return f"shape {tuple(got.shape)} does not broadcast to (N, H, L, S) = {(N, H, L, S)}"
    wrong = got != ref["mask"]
    if bool(wrong.any()):
        n, h, q, k = (int(i) for i in wrong.nonzero()[0])
        return (f"at [batch {n}, head {h}, query {q}, key {k}] got {bool(got[n, h, q, k])}, expected "
                f"{bool(ref['mask'][n, h, q, k])}; {int(wrong.sum())} of {wrong.numel()} entries differ")
    return None


def _mha_message(case, r, ref):
    if "error" in r:
        return f"raised {r['error']}"
    names = ("the case itself", "the padded keys and values changed", "the last token changed")
    for i, (got, want) in enumerate(zip(r.get("calls") or [], ref["calls"])):
        if not _seq(got, 2):
            return "expected to return (output, weights)"
        what = "" if i == 0 else f" ({names[min(i, 2)]}: the result must not change where it is masked)"
        m = _cmp(got[1], want[1], "weights averaged over heads", case, ("batch", "query", "key"))
        m = m or _cmp(got[0], want[0], "output", case, ("batch", "query", "feature"))
        if m:
            return m + what
    if len(r.get("calls") or []) != len(ref["calls"]):
        return "not every call returned"
    return None


def mha(case, out, ref):
    return _mha_message(case, out, ref)


def positional(case, out, ref):
    return _cmp(out.get("pe"), ref["pe"], case["label"], case, ("position", "feature"))


def _block_message(case, r, ref):
    if "error" in r:
        return f"raised {r['error']}"
    return _cmp(r.get("output"), ref["output"], "EncoderBlock output", case, ("batch", "position", "feature"))


def block(case, out, ref):
    return _block_message(case, out, ref)


# ------------------------------------------------------------------------------------ per part


# The parts that build on an earlier one, and that earlier part (named when it was put in place).
EARLIER = {"lstm_module": "`lstm_cell_forward`", "adding": "`lstm_cell_forward`",
           "mha": "`dot_product_attention`, `split_heads` and `merge_heads`", "block": "`MultiHeadAttention`",
           "reverser": "`dot_product_attention`, `split_heads` and `merge_heads`"}


def _judge(case, res, ref, assignment, kinds):
    """(message, reached, tampered, note) of one case: message None when the values agree."""
    kind = case["kind"]
    handler = globals()[kind]
    if kind in ("adding", "reverser"):
        def check(out):
            return handler(case, out, ref, case.get("bar", TRAINING_BARS[assignment]))
    else:
        def check(out):
            return handler(case, out, ref)
    if kind not in EARLIER:
        return (check(res["outputs"]), forbidden_reached(res.get("ops") or [], kinds),
                not res.get("intact", False), "")
    variants = [(name, res["outputs"].get(name)) for name in ("own", "subst")]
    judged = []
    for name, out in variants:
        if not isinstance(out, dict):
            continue
        judged.append((name, check(out), forbidden_reached(out.get("ops") or [], kinds), not out.get("intact", False)))
    if not judged:
        return "the check could not read your results", [], False, ""
    for name, msg, reached, tampered in judged:  # a variant that agrees and runs only what it may
        if msg is None and not reached and not tampered:
            note = ""
            if name == "subst":
                note = (f"checked with a correct {EARLIER[kind]} in place of yours (the mistake there costs only "
                        "its own part)")
            return None, [], False, note
    for _name, msg, reached, tampered in judged:  # agrees, but reached what it must re-implement
        if msg is None:
            return None, reached, tampered, ""
    own = judged[0]
    return own[1], own[2], own[3], ""


def _ops_in_words(reached):
    """The forbidden operators reached, the autograd engine's many events as one entry."""
    engine = sorted(o.split(": ", 1)[-1] for o in reached if o.startswith("autograd::engine"))
    words = [describe(o) for o in sorted(reached) if not o.startswith("autograd::engine")]
    if engine:
        more = f", ... ({len(engine)} in all)" if len(engine) > 3 else ""
        words.append("PyTorch's autograd engine (a backward pass that autograd ran: "
                     + ", ".join(engine[:3]) + more + ")")
    return ", ".join(words)


def compare_part(assignment, part, cases, student, reference, seed=0):
    """PartResult of ``part`` from its cases, the student's results and the reference outputs.

    ``student`` holds, per case, {"outputs", "error", "ops", "intact"} or None (the check process
    stopped before it). A part that builds on an earlier one passes when either the student's code as
    it is, or the same with a correct version of the earlier part in its place, agrees with PyTorch
    and reaches no operator it must re-implement.
    """
    kinds = FORBIDDEN_KINDS[assignment].get(part, DEFAULT_KINDS[assignment])
    failures, notes, reached, tampered = [], [], set(), False
    for case, res, ref in zip(cases, student, reference):
        if res is None:
            failures.append(f"{case['label']}: the check process stopped before this case "
                            "(your code ended or crashed the process, or took too long)")
            continue
        if res.get("error"):
            failures.append(f"{case['label']}: your code raised {res['error']}")
            continue
        msg, case_reached, case_tampered, note = _judge(case, res, ref, assignment, kinds)
        reached.update(case_reached)
        tampered = tampered or case_tampered
        if note:
            notes.append(note)
        if msg:
            training = case["kind"] in ("adding", "reverser")
            failures.append(msg if training else f"{case['label']}: {msg}")
    what = WHAT.get(part, "your trained model")
    reasons = []
    if failures:
        more = f" ({len(failures)} of {len(cases)} cases fail)" if len(cases) > 1 else ""
        reasons.append(f"{what} does not agree with PyTorch on new inputs drawn at grading time{more}: {failures[0]}"
                       if part in WHAT else failures[0])
    if reached:
        ops = _ops_in_words(reached)
        reasons.append(f"while the check ran {what}, your code reached {ops}: this part asks you to write it yourself")
    if tampered:
        reasons.append(f"while the check ran {what}, the operator recorder was switched off")
    passed = not failures
    points_ok = passed and not reached and not tampered
    if points_ok and notes:
        reasons.append(notes[0])
    return PartResult(passed=passed, points_ok=points_ok, reason="; ".join(reasons), ops=tuple(sorted(reached)),
                      seed=seed)
