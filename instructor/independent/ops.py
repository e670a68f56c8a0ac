"""What a graded answer actually runs: the operators and PyTorch functions it reaches.

The in-notebook tests hide names (``utils.checks.forbid``) while a test runs, so an answer that bound
``F.scaled_dot_product_attention`` under another name, built the name from strings, or went through
``torch.ops.aten`` / ``torch._C._VariableFunctions`` escapes them. This module looks at what runs
instead, with two recorders that the check process (``student_run``) turns on around each graded
call:

1. **PyTorch's profiler (RecordFunction), at dispatcher entry.** It sees every ATen operator as it
   is called, *including* the CompositeImplicitAutograd ones that decompose before reaching a kernel
   (``aten::lstm``, ``aten::lstm_cell``, ``aten::gru``, ``aten::scaled_dot_product_attention``,
   ``aten::_scaled_dot_product_attention_math``): a ``TorchDispatchMode`` sits below autograd and
   never sees those (measured on CPU with torch 2.13: it saw ``aten::mkldnn_rnn_layer`` for
   ``nn.LSTM`` but nothing for ``nn.LSTMCell``, ``torch.ops.aten._scaled_dot_product_attention_math``
   or ``nn.GRU``). The profiler also sees the autograd engine run
   (``autograd::engine::evaluate_function: ...``): that is how a hand-written backward pass that
   calls ``torch.autograd.grad``, ``Tensor.backward`` or ``torch.func.grad``/``vjp`` is found.
2. **A Python profile hook (``sys.setprofile``) on PyTorch's own Python functions.** Some
   delegations reach no distinctive operator: ``nn.MultiheadAttention`` with ``need_weights=True``
   computes attention with ``bmm`` and ``softmax`` in Python (``F.multi_head_attention_forward``).
   The hook records calls whose code object is one of PyTorch's re-implemented functions, and calls
   of the C functions behind ``torch.lstm``/``torch._VF``, however they were reached.

The references to both recorders are bound when this module is imported, before any student code
runs, and each recording checks afterwards that the recorders were still on.

**What an attacker inside the check process can still do.** The student's code shares the check
process with the recorders, so a determined attacker can turn them off (``sys.setprofile(None)`` and
``torch.autograd._disable_profiler()`` mid-call: both are detected and fail the part, but a subtler
attack, e.g. re-enabling them afterwards, or running PyTorch's implementation in a thread or a
subprocess the recorders do not follow, or a C extension, is not), or write its own output file.
What it cannot do is read the reference values: they are computed in another process, on inputs
drawn at grading time, and compared in the grading process, which never runs student code. So a
cheating answer must still compute the right numbers on unseen inputs, which, apart from writing
the code, means running PyTorch's implementation while defeating the recorders on purpose. The
static audit of the answer cells remains a second opinion for that (it flags only the spellings it
knows, e.g. ``sys.modules`` or ``setattr``).
"""

import secrets
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch._C._profiler import ProfilerActivity, _ExperimentalConfig
from torch.autograd import (
    ProfilerConfig,
    ProfilerState,
    _disable_profiler,
    _enable_profiler,
    _prepare_profiler,
    _profiler_enabled,
)
from torch.autograd import profiler as _profiler

from utils import torch_parts

__all__ = ["Recorder", "FORBIDDEN_OPS", "AUTOGRAD_EVENTS", "forbidden_reached", "describe"]

# Bound at import, before student code runs.
_setprofile, _getprofile = sys.setprofile, sys.getprofile
_CPU = {ProfilerActivity.CPU}

# ATen operators (prefixes) that each assignment's answers must not reach.
LSTM_OPS = ("aten::lstm", "aten::_thnn_fused_lstm_cell", "aten::mkldnn_rnn_layer", "aten::_cudnn_rnn",
            "aten::rnn_tanh", "aten::rnn_relu", "aten::gru", "aten::_thnn_fused_gru_cell",
            "aten::quantized_lstm", "aten::quantized_gru", "aten::quantized_rnn")
ATTENTION_OPS = ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product", "aten::_fused_sdp_choice",
                 "aten::_native_multi_head_attention", "aten::_transformer_encoder_layer_fwd",
                 "aten::_flash_attention", "aten::_efficient_attention")
AUTOGRAD_EVENTS = ("autograd::engine::evaluate_function",)
FORBIDDEN_OPS = {"lstm": LSTM_OPS, "multi_head_attention": ATTENTION_OPS}

# PyTorch's Python-level implementations, by code object (however the answer reached them).
_PY_FORBIDDEN = {
    "lstm": [nn.LSTM.forward, nn.LSTMCell.forward, nn.RNNBase.forward, nn.GRU.forward, nn.GRUCell.forward,
             nn.RNNCell.forward],
    "multi_head_attention": [nn.MultiheadAttention.forward, F.multi_head_attention_forward,
                             nn.TransformerEncoderLayer.forward, nn.TransformerDecoderLayer.forward],
    "autograd": [torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward],
}
# The course's stand-ins for earlier parts (PyTorch's own implementations with the assignments' signatures):
# an answer may not reach them either (the check process runs them itself, as trusted code: Recorder.trusted).
for _kind in ("lstm", "multi_head_attention"):
    _PY_FORBIDDEN[_kind] = _PY_FORBIDDEN[_kind] + list(torch_parts.STAND_INS)
_PY_CODES = {kind: {f.__code__: f"{f.__module__}.{f.__qualname__}" for f in funcs}
             for kind, funcs in _PY_FORBIDDEN.items()}
_C_FUNCS = {
    "lstm": {id(getattr(torch._C._VariableFunctions, n)): f"torch._C._VariableFunctions.{n}"
             for n in ("lstm", "lstm_cell", "gru", "gru_cell", "rnn_tanh", "rnn_relu", "rnn_tanh_cell",
                       "rnn_relu_cell") if hasattr(torch._C._VariableFunctions, n)},
    "multi_head_attention": {id(f): name for f, name in (
        (torch._C._nn.scaled_dot_product_attention, "torch._C._nn.scaled_dot_product_attention"),)},
}

_NAMES = {
    "aten::lstm_cell": "PyTorch's LSTM cell (what nn.LSTMCell runs)",
    "aten::lstm": "PyTorch's LSTM (what nn.LSTM runs)",
    "aten::scaled_dot_product_attention": "PyTorch's attention (F.scaled_dot_product_attention)",
    "aten::_native_multi_head_attention": "PyTorch's multi-head attention (nn.MultiheadAttention)",
    "autograd::engine::evaluate_function": "PyTorch's autograd engine (a backward pass run by autograd)",
    "utils.torch_parts.": "the course's stand-in for an earlier part, which runs PyTorch's own implementation",
}


def describe(op):
    """A short, student-readable name for a recorded operator or function."""
    for key, text in _NAMES.items():
        if op.startswith(key):
            return f"{op} ({text})"
    return op


def forbidden_reached(recorded, kinds):
    """The recorded operators/functions that are forbidden for ``kinds`` ("lstm",
    "multi_head_attention", "autograd"), in a stable order."""
    bad = []
    for name in recorded:
        for kind in kinds:
            prefixes = AUTOGRAD_EVENTS if kind == "autograd" else FORBIDDEN_OPS.get(kind, ())
            if name.startswith(prefixes) or name in _PY_CODES.get(kind, {}).values() \
                    or name in _C_FUNCS.get(kind, {}).values():
                bad.append(name)
                break
    return sorted(set(bad))


class Recorder:
    """Record what runs inside ``with Recorder() as rec:``; afterwards ``rec.ops`` is a sorted list
    of ATen operator names, autograd engine events and forbidden PyTorch functions reached, and
    ``rec.intact`` is False when the recorders were switched off or replaced during the block.

    ``rec.trusted(obj)`` wraps a stand-in (a function, or a module class: its ``forward``) that the check
    process itself puts in place of an earlier part: what runs inside it is not recorded (its operators
    run inside a profiler scope whose name is drawn at random, and are dropped afterwards)."""

    def __init__(self):
        self.ops, self.intact, self._calls, self._depth = [], True, set(), 0
        self._scope = f"course::trusted::{secrets.token_hex(8)}"

    def _hook(self, frame, event, arg):
        if self._depth:
            return
        if event == "call":
            for codes in _PY_CODES.values():
                name = codes.get(frame.f_code)
                if name:
                    self._calls.add(name)
        elif event == "c_call":
            for funcs in _C_FUNCS.values():
                name = funcs.get(id(arg))
                if name:
                    self._calls.add(name)

    def trusted(self, obj):
        """``obj`` (a function or an nn.Module class) run as trusted code: nothing it reaches is recorded."""
        if isinstance(obj, type):
            return type(obj.__name__, (obj,), {"forward": self.trusted(obj.forward)})
        recorder = self

        def run(*args, **kwargs):
            recorder._depth += 1
            try:
                with _profiler.record_function(recorder._scope):
                    return obj(*args, **kwargs)
            finally:
                recorder._depth -= 1
        run.__name__ = getattr(obj, "__name__", "stand_in")
        return run

    def __enter__(self):
        config = ProfilerConfig(ProfilerState.KINETO, False, False, False, False, False, _ExperimentalConfig(), "")
        _prepare_profiler(config, _CPU)
        _enable_profiler(config, _CPU)
        _setprofile(self._hook)
        return self

    def _untrusted(self, events):
        """The names of the events that ran outside every trusted scope (same thread)."""
        scopes = [(e.start_thread_id(), e.start_ns(), e.end_ns()) for e in events if e.name() == self._scope]
        return {e.name() for e in events if e.name() != self._scope and not any(
            t == e.start_thread_id() and start <= e.start_ns() <= end for t, start, end in scopes)}

    def __exit__(self, *exc):
        hook_ok = _getprofile() == self._hook
        _setprofile(None)
        names = set()
        if _profiler_enabled():
            try:
                names = self._untrusted(_disable_profiler().events())
            except Exception:
                self.intact = False
        else:
            self.intact = False
        self.intact = self.intact and hook_ok
        self.ops = sorted(names | self._calls)
        return False
