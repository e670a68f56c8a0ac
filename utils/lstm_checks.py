"""Checks for the LSTM assignment: a hand-written LSTM against PyTorch's, saying what differs and where.

Every check runs PyTorch's own module with the same weights as the answer, runs the answer with
PyTorch's LSTM implementations switched off (``utils.checks.forbid``), and raises
``utils.checks.CheckError`` with a message that names the gate, the time step or the gradient that
differs. When everything agrees it prints one line and returns None.

- ``check_cell_forward(lstm_cell_forward, ref_cell, x, h_prev, c_prev)``: one step against
  ``torch.nn.LSTMCell``; also recovers the four gates of both by probing (see :func:`probe_gates`)
  and says which gate is off.
- ``check_lstm_module(LSTM, input_size, hidden_size, ...)``: a sequence module against
  ``torch.nn.LSTM`` with a copied state dict: parameter names, the first time step that differs,
  the final states per layer, and (``grads=True``) every gradient.
- ``check_cell_backward(lstm_cell_backward, ref_cell, x, h_prev, c_prev, dh_next, dc_next)``: a
  hand-written backward step against ``torch.autograd`` on ``torch.nn.LSTMCell``.

Gate order and weight layout are PyTorch's: rows ``[0:H]`` input gate i, ``[H:2H]`` forget gate f,
``[2H:3H]`` candidate g, ``[3H:4H]`` output gate o of ``W_ih`` (4H, D), ``W_hh`` (4H, H) and the
two biases (4H,).
"""

import itertools
import re

import torch

from . import torch_parts
from .checks import CheckError, call_answer, compare, forbid

__all__ = ["FORBIDDEN", "GATES", "probe_gates", "check_cell_forward", "check_lstm_module",
           "check_cell_backward", "first_differing_step", "visible_part1", "visible_part2", "visible_part3",
           "check_adding_model", "check_adding_predictions", "working_parts", "TorchLSTM"]

# What an answer must not call: PyTorch's LSTM modules and the functions behind them.
FORBIDDEN = ("torch.nn.LSTM", "torch.nn.LSTMCell", "torch.lstm", "torch.lstm_cell",
             "torch._VF.lstm", "torch._VF.lstm_cell")
# What a hand-written backward must not call either.
NO_AUTOGRAD = ("torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward",
               "torch.func.grad", "torch.func.vjp", "torch.func.grad_and_value")
GATES = ("i", "f", "g", "o")
GATE_NAMES = {"i": "input gate i", "f": "forget gate f", "g": "candidate g (cell update)", "o": "output gate o"}
HINT = ("Reminder: PyTorch stacks the gates as i, f, g, o (rows 0:H, H:2H, 2H:3H, 3H:4H of W_ih, W_hh, "
        "b_ih, b_hh); i, f, o use sigmoid, g uses tanh; both biases are added.")
_BIG = 1e4  # added to a gate's bias: sigmoid/tanh of it is exactly 1.0 in float32 and float64


def _torch_cell(W_ih, W_hh, b_ih, b_hh):
    cell = torch.nn.LSTMCell(W_ih.shape[1], W_hh.shape[1]).to(dtype=W_ih.dtype, device=W_ih.device)
    with torch.no_grad():
        cell.weight_ih.copy_(W_ih)
        cell.weight_hh.copy_(W_hh)
        cell.bias_ih.copy_(b_ih)
        cell.bias_hh.copy_(b_hh)
    return cell


def _torch_step(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    with torch.no_grad():
        return _torch_cell(W_ih, W_hh, b_ih, b_hh)(x, (h_prev, c_prev))


def _weights(ref_cell):
    return tuple(p.detach().clone() for p in (ref_cell.weight_ih, ref_cell.weight_hh,
                                                ref_cell.bias_ih, ref_cell.bias_hh))


def _outputs(result, name, count):
    if not isinstance(result, (tuple, list)) or len(result) < count:
        got = f"a {type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise CheckError(f"{name}: expected a tuple of {count} values, got {got} (did the function return?)")
    return result


def probe_gates(step, x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    """Recover the gate activations of one LSTM step from its outputs (h_next, c_next) alone.

    Inputs:
    - step: ``step(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh) -> (h_next, c_next, ...)``.
    - x: (N, D); h_prev, c_prev: (N, H); W_ih: (4H, D); W_hh: (4H, H); b_ih, b_hh: (4H,).

    Probes, each one call of ``step`` (c_next = f * c_prev + i * g, h_next = o * tanh(c_next)):
    - f = c_next(c_prev = 1) - c_next(c_prev = 0)
    - i = c_next(c_prev = 0) with g's bias raised by 1e4 (so g = 1)
    - g = c_next(c_prev = 0) with i's bias raised by 1e4 (so i = 1)
    - o = h_next with f's bias raised (f = 1) and c_prev = 100 (so tanh(c_next) = 1)

    Returns a dict gate name -> (N, H) tensor, for "i", "f", "g", "o".
    """
    H = h_prev.shape[1]
    zeros, ones = torch.zeros_like(c_prev), torch.ones_like(c_prev)

    def raised(k):
        b = b_ih.clone()
        b[k * H:(k + 1) * H] += _BIG
        return b

    def c_of(c, b=b_ih):
        return _outputs(step(x, h_prev, c, W_ih, W_hh, b, b_hh), "the step function", 2)[1]

    gates = {
        "f": c_of(ones) - c_of(zeros),
        "i": c_of(zeros, raised(2)),
        "g": c_of(zeros, raised(0)),
        "o": _outputs(step(x, h_prev, 100 * ones, W_ih, W_hh, raised(1), b_hh), "the step function", 2)[0],
    }
    return {k: gates[k] for k in GATES}


_CELL_HINTS = [(r"shapes cannot be multiplied",
                "W_ih is (4H, D) and W_hh is (4H, H), PyTorch's (out, in) layout: the product is x @ W_ih.T "
                "(a missing transpose .T?)"),
               (r"size of tensor a \(\d+\) must match the size of tensor b",
                "the pre-activations x @ W_ih.T + ... are (N, 4H): cut them into the four gates along the "
                "features, gates.chunk(4, dim=1) (or slices [:, 0:H], [:, H:2H], ...), not along the batch")]


def _permuted(W, order):
    """W's four row blocks put in the order ``order`` (indices into i, f, g, o)."""
    return torch.cat([W.chunk(4, dim=0)[k] for k in order], dim=0)


def _gate_order(student_step, args, want, atol, rtol):
    """The gate order the student's step reads, if another order of the row blocks makes it agree."""
    x, h_prev, c_prev, *weights = args
    for perm in itertools.permutations(range(4)):
        if perm == (0, 1, 2, 3):
            continue
        try:
            with forbid(*FORBIDDEN), torch_parts.refuse("lstm_cell_forward"):
                out = student_step(x, h_prev, c_prev, *(_permuted(w, perm) for w in weights))
            if all(compare(out[k], want[k], atol=atol, rtol=rtol) is None for k in (0, 1)):
                return [GATES[k] for k in perm]
        except Exception:  # noqa: BLE001 (a probe that fails tells nothing)
            return None
    return None


def _gate_lines(student_step, args, atol, rtol):
    """One line per gate: 'ok' or where it differs."""
    want = probe_gates(_torch_step, *args)
    with forbid(*FORBIDDEN), torch_parts.refuse("lstm_cell_forward"):
        got = probe_gates(student_step, *args)
    lines, bad = [], []
    for k in GATES:
        msg = compare(got[k], want[k], GATE_NAMES[k], atol=atol, rtol=rtol, dims=("batch", "unit"))
        lines.append(f"  {GATE_NAMES[k]}: " + ("ok" if msg is None else msg.split(": ", 1)[1]))
        if msg is not None:
            bad.append(k)
    return lines, bad


def check_cell_forward(cell_forward, ref_cell, x, h_prev, c_prev, *, atol=1e-5, rtol=1e-4, cache=True,
                       verbose=True):
    """Check ``cell_forward(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh) -> (h_next, c_next, cache)``.

    Inputs:
    - cell_forward: the answer.
    - ref_cell: a ``torch.nn.LSTMCell``: the reference, and where the weights come from.
    - x: (N, D); h_prev, c_prev: (N, H), of the reference's dtype.
    - cache: also check the cache ``(x, h_prev, c_prev, W_ih, W_hh, i, f, g, o, c_next)``.

    Raises CheckError naming the outputs and the gates that differ; prints one line when all agree.
    """
    weights = _weights(ref_cell)
    args = (x, h_prev, c_prev, *weights)
    h_ref, c_ref = _torch_step(*args)
    with forbid(*FORBIDDEN), torch_parts.refuse("lstm_cell_forward"):
        out = _outputs(call_answer(cell_forward, *args, part="part 1", name="lstm_cell_forward", hints=_CELL_HINTS),
                       "lstm_cell_forward", 3 if cache else 2)
    problems = [m for m in (compare(out[1], c_ref, "c_next", atol=atol, rtol=rtol, dims=("batch", "unit"),
                                    check_dtype=True),
                            compare(out[0], h_ref, "h_next", atol=atol, rtol=rtol, dims=("batch", "unit"),
                                    check_dtype=True))
                if m is not None]
    shapes_ok = all(isinstance(o, torch.Tensor) and o.shape == c_ref.shape for o in out[:2])
    if shapes_ok and problems:
        order = _gate_order(cell_forward, args, (h_ref, c_ref), atol, rtol)
        if order is not None:
            shapes_ok = False  # the probes assume PyTorch's order: their gate-by-gate lines would mislead
            problems.insert(0, f"gate order: your step reads the row blocks 0:H, H:2H, 2H:3H, 3H:4H as the gates "
                               f"({', '.join(order)}); PyTorch's order is (i, f, g, o). With the blocks in that "
                               "order your step agrees with torch.nn.LSTMCell.")
    if shapes_ok:
        lines, bad = _gate_lines(cell_forward, args, atol, rtol)
        if bad:
            head = ("Gate by gate (each recovered from the outputs by probing both cells):" if problems else
                    "h_next and c_next agree on these inputs, but not when a gate saturates (the probes raise "
                    "one gate's bias by 1e4; is your sigmoid or tanh stable for large inputs?):")
            problems.append(head + "\n" + "\n".join(lines))
    if cache and not problems:
        c = out[2]
        names = ("x", "h_prev", "c_prev", "W_ih", "W_hh", "i", "f", "g", "o", "c_next")
        if not isinstance(c, (tuple, list)) or len(c) != len(names):
            problems.append(f"cache: expected the tuple ({', '.join(names)}), got {type(c).__name__}"
                            + (f" of length {len(c)}" if isinstance(c, (tuple, list)) else ""))
        else:
            gates = probe_gates(_torch_step, *args)
            want = dict(zip(names, (*args[:5], gates["i"], gates["f"], gates["g"], gates["o"], c_ref)))
            for k, name in enumerate(names):
                m = compare(c[k], want[name], f"cache[{k}] ({name})", atol=atol, rtol=rtol)
                if m is not None:
                    problems.append(m)
    if problems:
        raise CheckError("\n".join(problems) + "\n" + HINT)
    if verbose:
        N, D = x.shape
        print(f"  ok: h_next, c_next and the gates i, f, g, o agree with torch.nn.LSTMCell "
              f"(N={N}, D={D}, H={h_prev.shape[1]}, {str(x.dtype).replace('torch.', '')})")


def first_differing_step(actual, expected, *, time_dim=1, atol=1e-5, rtol=1e-4):
    """The first index along ``time_dim`` where ``actual`` and ``expected`` differ, or None."""
    for t in range(expected.shape[time_dim]):
        a, e = actual.select(time_dim, t), expected.select(time_dim, t)
        if compare(a, e, atol=atol, rtol=rtol) is not None:
            return t
    return None


def _param_report(mine, ref):
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in mine.state_dict().items()}
    lines = []
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    if missing:
        lines.append("missing parameters: " + ", ".join(f"{k} {want[k]}" for k in missing))
    if extra:
        lines.append("unexpected parameters: " + ", ".join(f"{k} {got[k]}" for k in extra))
    for k in want:
        if k in got and got[k] != want[k]:
            lines.append(f"{k}: shape {want[k]} expected, got {got[k]}")
    return lines


_MODULE_HINTS = [(r"shapes cannot be multiplied",
                  "layer k > 0 reads the hidden states of layer k - 1, (N, T, H): its weight_ih is (4H, H); "
                  "are the layers chained (layer_input = this layer's outputs)?")]


def check_lstm_module(lstm_class, input_size, hidden_size, *, num_layers=1, batch_size=3, num_steps=6,
                      batch_first=True, initial_state=False, dtype=torch.float32, grads=False, scale=1.0,
                      seed=0, atol=1e-5, rtol=1e-4, verbose=True, cell_forward=None):
    """Check a sequence LSTM class against ``torch.nn.LSTM`` with the same state dict.

    ``lstm_class(input_size, hidden_size, num_layers=..., batch_first=...)`` must have PyTorch's
    parameter names (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ... per layer), and
    ``forward(x, state=None) -> (output, (h_n, c_n))`` with x (N, T, D) (or (T, N, D) when not
    batch_first), output (N, T, H) (or (T, N, H)), h_n and c_n (num_layers, N, H).

    Inputs: the sizes; initial_state: pass random (h_0, c_0); grads: also compare the gradients of
    the input, the initial state and every parameter; scale: multiplies the input; cell_forward: when
    given, the module is built with ``cell_forward=`` this step (the assignment passes PyTorch's step,
    ``utils.torch_parts.lstm_cell_forward``, so that part 2 is checked on its own), and must call it at every step.
    Raises CheckError saying which parameter, time step, layer or gradient differs.
    """
    torch.manual_seed(seed)
    ref = torch.nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=batch_first).to(dtype)
    calls = [0]
    kwargs = dict(num_layers=num_layers, batch_first=batch_first)
    if cell_forward is not None:
        def counted(*args):
            calls[0] += 1
            return cell_forward(*args)
        kwargs["cell_forward"] = counted
    with forbid(*FORBIDDEN):
        mine = call_answer(lstm_class, input_size, hidden_size, part="part 2", name="LSTM(...)", **kwargs)
    if not isinstance(mine, torch.nn.Module):
        raise CheckError(f"LSTM(...): expected a torch.nn.Module, got {type(mine).__name__}")
    problems = _param_report(mine, ref)
    if problems:
        raise CheckError("parameters (names and shapes must be PyTorch's):\n  " + "\n  ".join(problems))
    mine.to(dtype)
    mine.load_state_dict(ref.state_dict())
    N, T, L, H = batch_size, num_steps, num_layers, hidden_size
    shape = (N, T, input_size) if batch_first else (T, N, input_size)
    x = scale * torch.randn(*shape, dtype=dtype)
    h0, c0 = torch.randn(L, N, H, dtype=dtype), torch.randn(L, N, H, dtype=dtype)
    leaves_ref = [x.clone().requires_grad_(grads), h0.clone().requires_grad_(grads), c0.clone().requires_grad_(grads)]
    leaves_mine = [x.clone().requires_grad_(grads), h0.clone().requires_grad_(grads), c0.clone().requires_grad_(grads)]

    def call(module, leaves):
        return module(leaves[0], (leaves[1], leaves[2])) if initial_state else module(leaves[0])

    with torch.set_grad_enabled(grads):
        out_ref, (h_ref, c_ref) = call(ref, leaves_ref)
        with forbid(*FORBIDDEN), torch_parts.refuse("LSTM"):
            result = call_answer(call, mine, leaves_mine, part="part 2", name="LSTM.forward",
                                 hints=_MODULE_HINTS)
    if (not isinstance(result, (tuple, list)) or len(result) != 2 or not isinstance(result[1], (tuple, list))
            or len(result[1]) != 2):
        raise CheckError("forward: expected to return (output, (h_n, c_n)), got "
                         f"{type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list))
                                                        else ""))
    out, (h_n, c_n) = result
    if cell_forward is not None and calls[0] == 0:
        raise CheckError("LSTM.forward never called self.cell_forward: call the step the module was given, "
                         "self.cell_forward(...), not lstm_cell_forward by its global name (the tests give it a "
                         "step of PyTorch's, part 4 a truncated one)")
    time_dim = 1 if batch_first else 0
    dims = ("batch", "time step", "unit") if batch_first else ("time step", "batch", "unit")
    msg = compare(out, out_ref, "output", atol=atol, rtol=rtol, dims=dims, check_dtype=True)
    if (msg is not None and isinstance(out, torch.Tensor) and out.dim() == 3 and out.shape[-1] == input_size
            and input_size != hidden_size):
        msg += (" (the output has the input's size D: set layer_input to each layer's hidden states, (N, T, H), so "
                "that the layers are chained and the output is the last layer's)")
    if msg is not None and "dtype" not in msg:
        t = first_differing_step(out, out_ref, time_dim=time_dim, atol=atol, rtol=rtol) \
            if isinstance(out, torch.Tensor) and out.shape == out_ref.shape else None
        if t is not None:
            step_msg = compare(out.select(time_dim, t), out_ref.select(time_dim, t), f"output at time step {t}",
                               atol=atol, rtol=rtol, dims=("batch", "unit"))
            before = f"time steps 0..{t - 1} agree" if t else "the very first time step is already off"
            msg = f"output: first differs at time step {t} of {T} ({before}).\n  {step_msg}"
        problems.append(msg)
    for name, got, want in (("h_n", h_n, h_ref), ("c_n", c_n, c_ref)):
        m = compare(got, want, name, atol=atol, rtol=rtol, dims=("layer", "batch", "unit"), check_dtype=True)
        if m is not None:
            problems.append(m)
    setting = (f"N={N}, T={T}, D={input_size}, H={H}, num_layers={L}, batch_first={batch_first}, "
               f"initial state={'given' if initial_state else 'zeros'}, {str(dtype).replace('torch.', '')}")
    if problems:
        raise CheckError(f"against torch.nn.LSTM ({setting}):\n" + "\n".join(problems))
    if grads:
        g = torch.Generator().manual_seed(seed + 1)
        w_out, w_h, w_c = (torch.randn(t.shape, generator=g, dtype=dtype) for t in (out_ref, h_ref, c_ref))
        ((out_ref * w_out).sum() + (h_ref * w_h).sum() + (c_ref * w_c).sum()).backward()
        try:
            ((out * w_out).sum() + (h_n * w_h).sum() + (c_n * w_c).sum()).backward()
        except RuntimeError as err:
            raise CheckError(f"gradients ({setting}): backward through your outputs failed: {str(err)[:200]} "
                             "(are they connected to the parameters? no detach(), .data or torch.no_grad())") from None
        pairs = [("gradient of the input x", leaves_mine[0].grad, leaves_ref[0].grad, dims)]
        if initial_state:
            pairs += [("gradient of h_0", leaves_mine[1].grad, leaves_ref[1].grad, ("layer", "batch", "unit")),
                      ("gradient of c_0", leaves_mine[2].grad, leaves_ref[2].grad, ("layer", "batch", "unit"))]
        mine_params = dict(mine.named_parameters())
        for name, p in ref.named_parameters():
            pairs.append((f"gradient of {name}", mine_params[name].grad, p.grad, None))
        for name, got, want, d in pairs:
            if got is None:
                problems.append(f"{name}: None (is it connected to the outputs? a detach() or .data in the forward?)")
                continue
            m = compare(got, want, name, atol=atol, rtol=rtol, dims=d)
            if m is not None:
                problems.append(m)
        if problems:
            raise CheckError(f"outputs agree but gradients differ ({setting}):\n" + "\n".join(problems))
    if verbose:
        print(f"  ok: output, h_n, c_n{' and all gradients' if grads else ''} agree with torch.nn.LSTM ({setting})")


def _gate_compare(got, want, name, H, second, atol, rtol):
    """Compare a (4H, ...) gradient; on a mismatch, name the gate blocks that differ."""
    msg = compare(got, want, name, atol=atol, rtol=rtol)
    if msg is None or not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return msg
    g4, w4 = got.reshape(4, H, *want.shape[1:]), want.reshape(4, H, *want.shape[1:])
    dims = ("gate", "unit") + ((second,) if want.dim() == 2 else ())
    msg = compare(g4, w4, name, atol=atol, rtol=rtol, dims=dims)
    msg = re.sub(r"gate (\d)", lambda m: f"gate {GATES[int(m.group(1))]}", msg)
    bad = [GATES[k] for k in range(4) if compare(g4[k], w4[k], atol=atol, rtol=rtol) is not None]
    return f"{msg}\n    gate blocks that differ: {', '.join(bad)} (rows: i 0:H, f H:2H, g 2H:3H, o 3H:4H)"


_BACKWARD_HINTS = [(r"shapes cannot be multiplied",
                    "dgates is (N, 4H), W_ih (4H, D), x (N, D): dx = dgates @ W_ih, dW_ih = dgates.T @ x "
                    "(a transpose .T missing or extra?)")]


def _backward_gate_order(got, want, atol, rtol):
    """The order in which the student's dW_ih, dW_hh and db stack the gates, if another order makes them agree."""
    names = ("dW_ih", "dW_hh", "db")
    if not all(isinstance(got[n], torch.Tensor) and got[n].shape == want[n].shape for n in names):
        return None
    for perm in itertools.permutations(range(4)):
        if perm != (0, 1, 2, 3) and all(compare(got[n], _permuted(want[n], perm), atol=atol, rtol=rtol) is None
                                        for n in names):
            return [GATES[k] for k in perm]
    return None


def check_cell_backward(cell_backward, ref_cell, x, h_prev, c_prev, dh_next, dc_next, *, atol=1e-5, rtol=1e-4,
                        verbose=True):
    """Check ``cell_backward(dh_next, dc_next, cache) -> (dx, dh_prev, dc_prev, dW_ih, dW_hh, db)``.

    The reference is ``torch.autograd`` through ``torch.nn.LSTMCell`` (``ref_cell``) on the loss
    ``(h_next * dh_next).sum() + (c_next * dc_next).sum()``. The cache given to the answer is
    ``(x, h_prev, c_prev, W_ih, W_hh, i, f, g, o, c_next)``, built from the reference cell (the
    gates recovered by :func:`probe_gates`), so this check does not depend on the answer's forward.
    ``db`` is the gradient of either bias (they get the same gradient).

    Raises CheckError naming each gradient that differs (and, for weights and bias, which gate block).
    """
    W_ih, W_hh, b_ih, b_hh = _weights(ref_cell)
    H = h_prev.shape[1]
    gates = probe_gates(_torch_step, x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh)
    _, c_next = _torch_step(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh)
    cache = (x.clone(), h_prev.clone(), c_prev.clone(), W_ih.clone(), W_hh.clone(),
             gates["i"], gates["f"], gates["g"], gates["o"], c_next)

    cell = _torch_cell(W_ih, W_hh, b_ih, b_hh)
    leaves = [t.clone().requires_grad_(True) for t in (x, h_prev, c_prev)]
    h_r, c_r = cell(leaves[0], (leaves[1], leaves[2]))
    ((h_r * dh_next).sum() + (c_r * dc_next).sum()).backward()
    want = {"dx": leaves[0].grad, "dh_prev": leaves[1].grad, "dc_prev": leaves[2].grad,
            "dW_ih": cell.weight_ih.grad, "dW_hh": cell.weight_hh.grad, "db": cell.bias_ih.grad}

    with forbid(*FORBIDDEN, *NO_AUTOGRAD, reason="write the backward pass by hand, without autograd"):
        result = call_answer(cell_backward, dh_next.clone(), dc_next.clone(), cache, part="part 3",
                             name="lstm_cell_backward", hints=_BACKWARD_HINTS)
    got = dict(zip(want, _outputs(result, "lstm_cell_backward", 6)))
    # Shapes and dtypes first (a float32 tensor among float64 ones is named as such, not as a tiny difference).
    problems = [m for m in (compare(got[n], want[n], n, atol=float("inf"), check_dtype=True) for n in want)
                if m is not None]
    if problems:
        raise CheckError("against torch.autograd on torch.nn.LSTMCell:\n" + "\n".join(problems))
    for name in ("dx", "dh_prev", "dc_prev"):
        second = "input unit" if name == "dx" else "unit"
        m = compare(got[name], want[name], name, atol=atol, rtol=rtol, dims=("batch", second))
        if m is not None:
            problems.append(m)
    for name, second in (("dW_ih", "input unit"), ("dW_hh", "hidden unit"), ("db", None)):
        m = _gate_compare(got[name], want[name], name, H, second, atol, rtol)
        if m is not None:
            problems.append(m)
    order = _backward_gate_order(got, want, atol, rtol) if problems else None
    if order is not None:
        problems.insert(0, f"gate order: your dgates stacks the four gate gradients in the order ({', '.join(order)}); "
                           "PyTorch's order is (i, f, g, o), the order of the rows of W_ih, W_hh and the biases.")
    if problems:
        raise CheckError("against torch.autograd on torch.nn.LSTMCell:\n" + "\n".join(problems))
    if verbose:
        N, D = x.shape
        print(f"  ok: dx, dh_prev, dc_prev, dW_ih, dW_hh and db agree with torch.autograd "
              f"(N={N}, D={D}, H={H}, {str(x.dtype).replace('torch.', '')})")


# ------------------------------------------------------------------ the visible tests of each part
# The notebook's test cells call these (and add hidden cases); its last cell runs them all again
# through utils.checks.report_parts. Each covers every kind of case the hidden tests grade.


def visible_part1(cell_forward):
    """Part 1: one step against torch.nn.LSTMCell: float32 (N=4, D=3, H=5), a first step from zero
    state, and float64 (N=2, D=4, H=3) to float64 precision."""
    torch.manual_seed(0)
    ref_cell = torch.nn.LSTMCell(3, 5)
    x, h_prev, c_prev = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 5)
    check_cell_forward(cell_forward, ref_cell, x, h_prev, c_prev)
    check_cell_forward(cell_forward, ref_cell, x, torch.zeros(4, 5), torch.zeros(4, 5))
    ref_cell = torch.nn.LSTMCell(4, 3).double()
    f64 = dict(dtype=torch.float64)
    check_cell_forward(cell_forward, ref_cell, torch.randn(2, 4, **f64), torch.randn(2, 3, **f64),
                       torch.randn(2, 3, **f64), atol=1e-12, rtol=1e-10)


def visible_part2(lstm_class):
    """Part 2: the module against torch.nn.LSTM, built with PyTorch's step (``torch_parts.lstm_cell_forward``,
    so that a mistake in part 1 does not show here): one layer, float32; two layers, a given (h_0, c_0),
    float64, gradients."""
    check_lstm_module(lstm_class, 4, 5, cell_forward=torch_parts.lstm_cell_forward)
    check_lstm_module(lstm_class, 4, 3, num_layers=2, initial_state=True, grads=True, dtype=torch.float64,
                      atol=1e-12, rtol=1e-10, cell_forward=torch_parts.lstm_cell_forward)


def visible_part3(cell_backward):
    """Part 3: gradients against torch.autograd: float32 (N=4, D=3, H=5), only through h_next, float64."""
    torch.manual_seed(0)
    ref_cell = torch.nn.LSTMCell(3, 5)
    x, h_prev, c_prev = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 5)
    dh_next, dc_next = torch.randn(4, 5), torch.randn(4, 5)
    check_cell_backward(cell_backward, ref_cell, x, h_prev, c_prev, dh_next, dc_next)
    check_cell_backward(cell_backward, ref_cell, x, h_prev, c_prev, dh_next, torch.zeros(4, 5))
    ref_cell = torch.nn.LSTMCell(2, 3).double()
    f64 = dict(dtype=torch.float64)
    check_cell_backward(cell_backward, ref_cell, *(torch.randn(3, n, **f64) for n in (2, 3, 3, 3, 3)),
                        atol=1e-12, rtol=1e-10)


def check_adding_model(model_class, num_hiddens=4, *, verbose=True):
    """Part 4, before any training: ``model_class(num_hiddens, recurrent)`` with PyTorch's LSTM
    (``torch_parts.LSTM``) must map X (N, T, 2) to predictions of shape (N,) and the inputs' dtype."""
    torch.manual_seed(0)
    model = call_answer(model_class, num_hiddens, torch_parts.LSTM(2, num_hiddens), part="part 4",
                        name="AddingModel(...)")
    X = torch.rand(3, 7, 2)
    with torch.no_grad(), forbid(*FORBIDDEN):
        pred = call_answer(model, X, part="part 4", name="AddingModel.forward")
    msg = compare(pred, torch.zeros(3), "AddingModel.forward(X) for X of shape (3, 7, 2)", atol=float("inf"),
                  check_dtype=True)
    if msg is not None:
        if "(3, 1)" in msg:
            msg += (": self.head returns (N, 1); .squeeze(-1) makes it (N,), the shape of the targets (with (N, 1) "
                    "the loss broadcasts (N, 1) against (N,) to (N, N) and the model learns the mean)")
        raise CheckError(msg)
    # The sum is known only after the last step: the predictions must depend on the last time step's input.
    X_last = X.clone()
    X_last[:, -1] = torch.tensor([0.9, 1.0])  # a marked value at the last step
    with torch.no_grad(), forbid(*FORBIDDEN):
        pred_last = call_answer(model, X_last, part="part 4", name="AddingModel.forward")
    if torch.equal(pred_last, pred):
        raise CheckError("AddingModel.forward: the predictions do not change when the input at the last time step "
                         "changes: the head must read the last hidden state, output[:, -1] (not output[:, 0])")
    if verbose:
        print("  ok: AddingModel maps (N, T, 2) to predictions of shape (N,) that depend on the last time step")


def check_adding_predictions(model, X, y, bar, *, baseline=1 / 6):
    """Part 4 after training: the model's predictions on (X, y) have y's shape and an MSE below ``bar``.
    Returns the MSE."""
    model.eval()
    with torch.no_grad(), forbid(*FORBIDDEN):
        pred = call_answer(model, X, part="part 4", name="the trained model").cpu()
    msg = compare(pred, y, "predictions", atol=float("inf"))
    if msg is not None:
        raise CheckError(msg)
    mse = torch.mean((pred - y) ** 2).item()
    if not mse < bar:
        raise CheckError(f"test MSE {mse:.4f} should be below {bar} (predicting 1.0 gives {baseline:.3f}): check "
                         "AddingModel.forward (the last time step, the head) and the training cell's printout")
    print(f"  ok: test MSE {mse:.4f} < {bar}")
    return mse


class TorchLSTM(torch_parts.LSTM):
    """PyTorch's LSTM (``torch_parts.LSTM``) with the assignment's constructor: ``cell_forward`` is accepted
    and not used (PyTorch runs its own step). What part 4 trains when your LSTM fails part 2."""

    def __init__(self, input_size, hidden_size, num_layers=1, batch_first=True, cell_forward=None):
        super().__init__(input_size, hidden_size, num_layers=num_layers, batch_first=batch_first)


def working_parts(cell_forward, lstm_class):
    """The step and the LSTM class to train in part 4: yours when they pass the checks of parts 1 and 2
    (visible and hidden kinds), else PyTorch's (``utils.torch_parts``), so that part 4 is graded on its own.

    Returns (cell_forward, lstm_class, note), note a sentence saying what is used and why.
    """
    import contextlib
    import io

    notes = []
    quiet = contextlib.redirect_stdout(io.StringIO())
    try:
        with quiet:
            visible_part1(cell_forward)
            check_cell_forward(cell_forward, torch.nn.LSTMCell(8, 3), 50 * torch.randn(6, 8), torch.randn(6, 3),
                               torch.randn(6, 3))
    except Exception as err:  # noqa: BLE001 (any failure of part 1 means: train with PyTorch's step)
        cell_forward = torch_parts.lstm_cell_forward
        notes.append(f"your lstm_cell_forward fails part 1 ({str(err).splitlines()[0][:100]}): "
                     "PyTorch's step is used instead")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            visible_part2(lstm_class)
            check_lstm_module(lstm_class, 2, 3, num_layers=2, batch_first=False, grads=True,
                              cell_forward=torch_parts.lstm_cell_forward, scale=5.0)
    except Exception as err:  # noqa: BLE001
        lstm_class = TorchLSTM
        notes.append(f"your LSTM fails part 2 ({str(err).splitlines()[0][:100]}): PyTorch's LSTM is used instead")
    if notes:
        notes.append("so part 4 grades AddingModel.forward alone; fix the parts above to train your own LSTM")
        return cell_forward, lstm_class, "; ".join(notes)
    return cell_forward, lstm_class, "your lstm_cell_forward and your LSTM pass parts 1 and 2: training them"
