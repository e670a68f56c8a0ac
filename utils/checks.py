"""Checks for students: compare an answer with a reference and say where and how far it is off.

``assert_close(actual, expected, name="h", dims=("batch", "time step", "unit"))`` passes silently
or raises ``AssertionError`` with a message such as::

    h: differs at [batch 1, time step 3, unit 4]: got 0.1230, expected 0.4560 (|diff| 3.3e-01,
    allowed 1.0e-05); 12 of 80 entries differ, largest |diff| 5.0e-01

The torch functions used here are bound when this module is imported (before any answer cell
runs), so an answer that rebinds ``torch.allclose`` or friends does not change what the checks do.
"""

import contextlib
import importlib

import torch

__all__ = ["compare", "assert_close", "forbid", "CheckError", "describe", "call_answer", "report_parts"]

# Bound at import time: later rebinding of torch attributes does not reach the checks.
_isfinite = torch.isfinite
_abs = torch.abs
_argmax = torch.argmax
_unravel = torch.unravel_index
_as_tensor = torch.as_tensor
_Tensor = torch.Tensor


class CheckError(AssertionError):
    """An answer differs from the reference; the message says where."""


def _fmt_index(index, dims):
    if dims and len(dims) == len(index):
        return "[" + ", ".join(f"{d} {i}" for d, i in zip(dims, index)) + "]"
    return "[" + ", ".join(str(i) for i in index) + "]"


def _shape_hint(got, want):
    if len(got) == len(want) and sorted(got) == sorted(want):
        return " (same sizes in another order: transposed or permuted dimensions?)"
    if got == tuple(reversed(want)):
        return " (reversed dimensions?)"
    if len(got) == len(want) + 1 and 1 in got:
        return " (an extra dimension of size 1: squeeze it?)"
    if len(got) + 1 == len(want) and 1 in want:
        return " (a dimension of size 1 is missing: unsqueeze?)"
    import math

    if math.prod(got) == math.prod(want):
        return " (same number of entries: reshaped the wrong way?)"
    return ""


def compare(actual, expected, name="output", *, atol=1e-5, rtol=1e-4, dims=None, check_dtype=False):
    """Compare ``actual`` with ``expected``; return None when they agree, else a message saying where.

    Inputs:
    - actual: the answer, a tensor (or something ``torch.as_tensor`` accepts).
    - expected: the reference, a tensor.
    - name: what is compared, used in the message ("h_next", "dW_x", "attention weights").
    - atol, rtol: entries agree when |actual - expected| <= atol + rtol * |expected|.
    - dims: optional names of the dimensions, e.g. ("batch", "time step", "unit").
    - check_dtype: also require the same dtype.
    """
    if actual is None:
        return f"{name}: got None, expected a tensor of shape {tuple(expected.shape)} (did the function return?)"
    if not isinstance(actual, _Tensor):
        try:
            actual = _as_tensor(actual)
        except Exception:
            return f"{name}: expected a tensor of shape {tuple(expected.shape)}, got {type(actual).__name__}"
    expected = _as_tensor(expected)
    got_shape, want_shape = tuple(actual.shape), tuple(expected.shape)
    if got_shape != want_shape:
        return f"{name}: shape {want_shape} expected, got {got_shape}{_shape_hint(got_shape, want_shape)}"
    if check_dtype and actual.dtype != expected.dtype:
        hint = ""
        if expected.dtype == torch.float64 and actual.dtype == torch.float32:
            hint = (" (float64 in must give float64 out: make new tensors with the inputs' dtype, e.g. "
                    "x.new_zeros(...) or torch.zeros(..., dtype=x.dtype), not torch.zeros(...) alone)")
        elif expected.dtype == torch.float32 and actual.dtype == torch.float64:
            hint = " (a float32 result is expected here: convert it at the end, e.g. .float())"
        return f"{name}: dtype {expected.dtype} expected, got {actual.dtype}{hint}"
    if actual.numel() == 0:
        return None
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    finite = _isfinite(a)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        return (f"{name}: non-finite value {a[tuple(bad)].item()} at {_fmt_index(bad, dims)} "
                f"({int((~finite).sum())} of {a.numel()} entries are NaN or inf)")
    diff = _abs(a - e)
    allowed = atol + rtol * _abs(e)
    wrong = diff > allowed
    if not bool(wrong.any()):
        return None
    excess = (diff - allowed).masked_fill(~wrong, -1.0)
    flat = int(_argmax(excess.reshape(-1)))
    index = [int(i) for i in _unravel(_as_tensor(flat), a.shape)] if a.dim() else []
    where = " at " + _fmt_index(index, dims) if index else ""
    got, want = a.reshape(-1)[flat].item(), e.reshape(-1)[flat].item()
    return (f"{name}: differs{where}: got {got:.6g}, expected {want:.6g} "
            f"(|diff| {abs(got - want):.1e}, allowed {atol + rtol * abs(want):.1e}); "
            f"{int(wrong.sum())} of {a.numel()} entries differ, largest |diff| {diff.max().item():.1e}")


def assert_close(actual, expected, name="output", *, atol=1e-5, rtol=1e-4, dims=None, check_dtype=False):
    """Like :func:`compare`, but raise :class:`CheckError` (an AssertionError) with the message."""
    message = compare(actual, expected, name, atol=atol, rtol=rtol, dims=dims, check_dtype=check_dtype)
    if message is not None:
        raise CheckError(message)


def _resolve(target):
    module_name, _, attr = target.rpartition(".")
    if not module_name:
        raise ValueError(f"targets: expected dotted names such as 'torch.nn.LSTMCell', got {target!r}")
    obj = importlib.import_module(module_name.split(".")[0])
    for part in module_name.split(".")[1:]:
        obj = getattr(obj, part)
    return obj, attr


@contextlib.contextmanager
def forbid(*targets, reason="this part asks you to write it yourself"):
    """Within the block, calling any of ``targets`` (dotted names) raises ``CheckError``.

    Used by the tests while they run an answer, so that an answer that calls the PyTorch module it
    re-implements (``torch.nn.LSTMCell``, ``torch.nn.functional.scaled_dot_product_attention``, ...)
    fails that part with a clear message instead of passing.
    """
    saved = []
    for target in targets:
        owner, attr = _resolve(target)
        if not hasattr(owner, attr):
            continue

        def stub(*args, _target=target, **kwargs):
            raise CheckError(f"your answer calls {_target}: {reason}")

        saved.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, stub)
    try:
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


# ----------------------------------------------------------------- errors raised inside an answer


def describe(value):
    """A short description of an argument: ``(4, 3) float32`` for a tensor, the type name otherwise."""
    if isinstance(value, _Tensor):
        return f"{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, (tuple, list)) and len(value) <= 4:
        return "(" + ", ".join(describe(v) for v in value) + ")"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    return type(value).__name__


# (pattern of the error message, what it usually means): the first that matches is added to the message.
ERROR_HINTS = [
    (r"mat1 and mat2 shapes cannot be multiplied|size mismatch|shapes cannot be multiplied",
     "a matrix product got mismatched shapes: PyTorch stores weights as (out, in), so x @ W.T needs "
     "the transpose .T"),
    (r"expected .*(?:same dtype|scalar type)|dtype.*(?:Float|Double)|(?:Float|Double).*(?:Float|Double)",
     "float32 and float64 tensors met: with float64 inputs, make new tensors with the inputs' dtype "
     "(x.new_zeros(...), torch.zeros(..., dtype=x.dtype)) instead of the float32 default"),
    (r"cannot unpack non-iterable|not enough values to unpack|too many values to unpack",
     "a function returned a different number of values than the code unpacks"),
    (r"unsupported operand type\(s\).*tuple|'tuple' object has no attribute|tuple indices must be integers",
     "a tuple was used as a tensor: a function or module that returns a pair, (output, weights) or "
     "(output, state), needs [0] or unpacking (output, _ = ...)"),
]


def call_answer(fn, *args, part="", name=None, hints=(), **kwargs):
    """Call ``fn(*args, **kwargs)``; an exception other than CheckError raised inside it is re-raised
    as a :class:`CheckError` that names the part, the function, the error, the arguments' shapes and
    dtypes, and (from ``hints`` then :data:`ERROR_HINTS`, pairs of regex and text) its likely cause.
    """
    try:
        return fn(*args, **kwargs)
    except CheckError:
        raise
    except NotImplementedError:
        label = name or getattr(fn, "__name__", "the answer")
        raise CheckError(f"{part + ': ' if part else ''}{label} is not written yet (it raises "
                         "NotImplementedError)") from None
    except Exception as err:  # noqa: BLE001 (any error inside the answer is reported, with its cause)
        import re

        label = name or getattr(fn, "__name__", "the answer")
        text = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        shown = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
        cause = next((h for pattern, h in [*hints, *ERROR_HINTS] if re.search(pattern, text)), None)
        message = (f"{part + ': ' if part else ''}{label} raised {text}\n  called with: {', '.join(shown)}"
                   + (f"\n  likely cause: {cause}" if cause else ""))
        raise CheckError(message) from None


# --------------------------------------------------------------------------- the table of parts


def report_parts(parts, *, file=None):
    """Run each part's visible checks and print a table: part, passed or failed, the first message line.

    Inputs:
    - parts: a list of (label, check) pairs, ``check()`` raising on failure.
    Returns a dict label -> None (passed) or the first line of the failure's message.
    """
    import contextlib
    import io

    results = {}
    for label, check in parts:
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                check()
                results[label] = None
            except Exception as err:  # noqa: BLE001 (the table reports every failure)
                text = str(err).strip() or type(err).__name__
                if isinstance(err, NameError):  # a name this part defines or computes is missing
                    text = f"not run yet ({text}): run this part's cells first"
                elif not isinstance(err, AssertionError):
                    text = f"{type(err).__name__}: {text}"
                results[label] = text.splitlines()[0]
    width = max(len(label) for label in results)
    lines = [f"{'part':<{width}}  result", f"{'-' * width}  {'-' * 50}"]
    for label, message in results.items():
        lines.append(f"{label:<{width}}  " + ("passed" if message is None else f"FAILED: {message[:160]}"))
    passed = sum(m is None for m in results.values())
    lines.append(f"{passed} of {len(results)} parts pass their visible checks")
    print("\n".join(lines), file=file)
    return results
