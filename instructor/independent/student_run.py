"""The check process: run a student's answers on the drawn inputs and write plain tensors.

Run as ``python RUNNER/student_run.py WORKDIR`` in a fresh process (in the grading sandbox when there is
one), from a copy of this file and ``ops.py`` in the check's folder (``RUNNER``): that copy is all the
sandbox sees of the instructors' code; the helpers it imports are the student edition's ``utils``.
It reads ``WORKDIR/job.json`` (the assignment and the given constants),
``WORKDIR/cells.json`` (the cells chosen by :mod:`.extract`: given cells and the student's answer
cells, never the test cells), ``WORKDIR/inputs.pt`` and, for the training parts,
``WORKDIR/trained_model.pt`` (both with ``weights_only=True``), and writes
``WORKDIR/student_out.pt``: for each case its outputs (plain tensors, numbers, strings), the error it
raised, and the operators it reached (:mod:`.ops`). Nothing in here decides a grade: the grading
process compares these outputs with the reference process's, and never runs student code.

The parts that build on an earlier part (the LSTM module on the cell, the multi-head module on
attention and the head split, the encoder block on the multi-head module) are also run a second time
with a correct version of the earlier part put in place of the student's (``subst``): PyTorch's own
implementation (``utils.torch_parts``), run as trusted code, so that the grading process can score each
part on its own code.
"""

import base64
import builtins
import inspect
import io
import json
import math
import os
import pathlib
import signal
import sys

import torch
from torch import nn

if __package__:  # imported by the grading process (read_stream) or the tests
    from .ops import Recorder
else:  # run as a script: the copy in the check's folder, with ops.py beside it (see check_submission)
    from ops import Recorder  # bound before any student code runs

# Correct versions of the earlier parts, substituted for the student's (``subst``): the student edition's
# stand-ins, which run PyTorch's own implementations (utils/torch_parts.py; the same ones the notebooks' tests
# use), bound before any student code runs and run as trusted code (``Recorder.trusted``). No answer key.
from utils.torch_parts import MultiHeadAttention as _TorchMultiHeadAttention
from utils.torch_parts import dot_product_attention as _torch_dot_product_attention
from utils.torch_parts import lstm_cell_forward as _torch_lstm_cell_forward
from utils.torch_parts import merge_heads as _torch_merge_heads
from utils.torch_parts import mha_allowed_mask as _torch_allowed_mask
from utils.torch_parts import split_heads as _torch_split_heads

CASE_SECONDS = 30


# ------------------------------------------------------------------------------------- helpers


class _Timeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Timeout(f"took longer than {CASE_SECONDS} s")


def plain(value, depth=0):
    """``value`` as plain data for torch.save: CPU tensors of the base class, lists, dicts, numbers."""
    if depth > 8:
        return f"<{type(value).__name__}>"
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            return f"<tensor on meta, shape {tuple(value.shape)}>"
        out = torch.empty(tuple(value.shape), dtype=value.dtype)
        with torch.no_grad():
            out.copy_(torch.Tensor.detach(value).to("cpu"))
        return out
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value[:64]]
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in list(value.items())[:64]}
    if value is None or type(value) in (bool, int, float, str):
        return value
    return f"<{type(value).__name__}>"


def _clone(args):
    return [a.clone() if isinstance(a, torch.Tensor) else a for a in args]


def _dtype(name):
    return {"float32": torch.float32, "float64": torch.float64}[name]


class _Substituted:
    """Within the block, the namespace's names ``replacements`` (name -> object) are replaced."""

    def __init__(self, ns, replacements):
        self.ns, self.replacements, self.saved = ns, replacements, {}

    def __enter__(self):
        for name, obj in self.replacements.items():
            self.saved[name] = self.ns.get(name, _MISSING)
            self.ns[name] = obj

    def __exit__(self, *exc):
        for name, obj in self.saved.items():
            if obj is _MISSING:
                self.ns.pop(name, None)
            else:
                self.ns[name] = obj
        return False


_MISSING = object()


def _default_kwargs(func, originals, replacements):
    """Keyword arguments that replace a parameter default which is one of the student's functions
    being substituted (for a class that takes the cell function as an argument with a default)."""
    kwargs = {}
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return kwargs
    for name, p in params.items():
        for key, original in originals.items():
            if original is not _MISSING and p.default is original and key in replacements:
                kwargs[name] = replacements[key]
    return kwargs


# ------------------------------------------------------------------------------------ handlers


class Runner:
    def __init__(self, ns, job, workdir):
        self.ns, self.job, self.workdir = ns, job, pathlib.Path(workdir)

    def get(self, name):
        if name not in self.ns:
            raise NameError(f"{name} is not defined by your answer cells")
        return self.ns[name]

    # ---- LSTM
    def cell_forward(self, case):
        f = self.get("lstm_cell_forward")
        calls = case["calls"]
        r = f(*_clone(calls[0]))
        out = {"result": r if isinstance(r, (tuple, list)) else [r]}
        probes = []
        try:
            for call in calls[1:]:
                p = f(*_clone(call))
                probes.append([p[0], p[1]])
        except Exception:
            probes = None
        out["probes"] = probes
        return out

    def _lstm_module_run(self, case, replacements):
        LSTM = self.get("LSTM")
        originals = {k: self.ns.get(k, _MISSING) for k in replacements}
        with _Substituted(self.ns, replacements):
            D, H, L = case["sizes"]
            dtype = _dtype(case["dtype"])
            mine = LSTM(D, H, num_layers=L, batch_first=case["batch_first"],
                        **_default_kwargs(LSTM.__init__, originals, replacements))
            names = [[k, list(v.shape)] for k, v in mine.state_dict().items()]
            mine.to(dtype)
            mine.load_state_dict(case["state"])
            grads = case["grads"]
            leaves = [t.clone().requires_grad_(grads) for t in (case["x"], case["h0"], case["c0"])]
            fkw = _default_kwargs(type(mine).forward, originals, replacements)
            with torch.set_grad_enabled(grads):
                result = mine(leaves[0], (leaves[1], leaves[2]), **fkw) if case["initial_state"] else \
                    mine(leaves[0], **fkw)
            out, (h_n, c_n) = result
            rec = {"names": names, "output": out, "h_n": h_n, "c_n": c_n}
            if grads:
                loss = (out * case["w_out"]).sum() + (h_n * case["w_h"]).sum() + (c_n * case["w_c"]).sum()
                loss.backward()
                rec["grad_x"] = leaves[0].grad
                if case["initial_state"]:
                    rec["grad_h0"], rec["grad_c0"] = leaves[1].grad, leaves[2].grad
                rec["grad_params"] = {k: p.grad for k, p in mine.named_parameters()}
            return rec

    def lstm_module(self, case):
        return self._variants(self._lstm_module_run, case, LSTM_SUBST)

    def cell_backward(self, case):
        f = self.get("lstm_cell_backward")
        r = f(case["dh"].clone(), case["dc"].clone(), tuple(_clone(case["cache"])))
        return {"result": r if isinstance(r, (tuple, list)) else [r]}

    def _trained(self):
        path = self.workdir / "trained_model.pt"
        if not path.exists():
            raise FileNotFoundError("no trained_model.pt: the training cell did not save the model it trained")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError("trained_model.pt does not hold a state dict")
        return state

    def adding(self, case):
        return self._variants(self._adding_run, case, LSTM_SUBST)

    def _adding_run(self, case, replacements):
        state = self._trained()
        H = int(state["head.weight"].shape[1])
        with _Substituted(self.ns, replacements):
            return self._adding_eval(case, state, H)

    def _adding_eval(self, case, state, H):
        model = self.get("AddingModel")(H)
        info = {"uses_your_lstm": isinstance(getattr(model, "recurrent", None), self.get("LSTM")),
                "torch_rnn": [type(m).__name__ for m in model.modules() if isinstance(m, (nn.RNNBase, nn.LSTMCell))]}
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            info["pred"] = model(case["X"].clone())
            info["pred_far"] = model(case["X_far"].clone())
            g = torch.Generator().manual_seed(case["perturb_seed"])
            bound = 1 / math.sqrt(H)
            for p in model.recurrent.parameters():
                p.copy_((torch.rand(p.shape, generator=g, dtype=p.dtype) * 2 - 1) * bound)
            info["pred_perturbed"] = model(case["X"].clone())
        return info

    # ---- multi-head attention
    def attention(self, case):
        f = self.get("dot_product_attention")
        try:
            r = f(case["q"].clone(), case["k"].clone(), case["v"].clone(),
                  None if case["mask"] is None else case["mask"].clone())
        except Exception as err:
            if case["expect_error"]:
                return {"raised": type(err).__name__}
            raise
        if case["expect_error"]:
            return {"raised": None}
        return {"result": r if isinstance(r, (tuple, list)) else [r]}

    def heads(self, case):
        split, merge = self.get("split_heads"), self.get("merge_heads")
        s = split(case["x"].clone(), case["num_heads"])
        return {"split": s, "merged": merge(s.clone() if isinstance(s, torch.Tensor) else s),
                "merged_heads": merge(case["heads"].clone())}

    def heads_not_divisible(self, case):
        try:
            self.get("split_heads")(torch.zeros(1, 2, case["d_model"]), case["num_heads"])
        except ValueError:
            return {"raised": "ValueError"}
        except NameError:
            raise
        except Exception as err:
            return {"raised": type(err).__name__}
        return {"raised": None}

    def causal(self, case):
        f = self.get("causal_mask")
        m = f(case["L"])
        meta = f(case["L"], device="meta")
        return {"mask": m, "meta_device": getattr(getattr(meta, "device", None), "type", type(meta).__name__),
                "meta_dtype": str(getattr(meta, "dtype", "")), "meta_shape": list(getattr(meta, "shape", []))}

    def masks(self, case):
        r = self.get("mha_allowed_mask")(case["kpm"], case["attn"], case["sizes"][1])
        return {"is_none": r is None, "mask": r}

    def _mha_run(self, case, replacements):
        with _Substituted(self.ns, replacements):
            E, H = case["sizes"]
            mine = self.get("MultiHeadAttention")(E, H).to(_dtype(case["dtype"]))
            mine.load_state_dict(case["state"])
            masks = {k: case[n] for k, n in (("key_padding_mask", "kpm"), ("attn_mask", "attn")) if case[n] is not None}
            outs = []
            for q, k, v in case["calls"]:
                r = mine(q.clone(), k.clone(), v.clone(), **masks)
                outs.append(list(r) if isinstance(r, (tuple, list)) else [r])
            return {"calls": outs}

    def mha(self, case):
        return self._variants(self._mha_run, case, ATTENTION_SUBST)

    def positional(self, case):
        return {"pe": self.get("sinusoidal_positional_encoding")(case["T"], case["D"])}

    def _block_run(self, case, replacements):
        with _Substituted(self.ns, replacements):
            E, H, ff = case["sizes"]
            mine = self.get("EncoderBlock")(E, H, ff).to(_dtype(case["dtype"]))
            mine.load_state_dict(case["state"])
            kpm = None if case["kpm"] is None else case["kpm"].clone()
            return {"output": mine(case["x"].clone(), key_padding_mask=kpm)}

    def block(self, case):
        return self._variants(self._block_run, case, {"MultiHeadAttention": _TorchMultiHeadAttention})

    def reverser(self, case):
        return self._variants(self._reverser_run, case, ATTENTION_SUBST)

    def _reverser_run(self, case, replacements):
        state = self._trained()
        with _Substituted(self.ns, replacements):
            return self._reverser_eval(case, state)

    def _reverser_eval(self, case, state):
        c = self.job["constants"]
        model = self.get("Reverser")(c["vocab_size"], c["num_hiddens"], c["num_heads"], c["num_layers"],
                                     c["num_steps"])
        mha_class = self.get("MultiHeadAttention")
        info = {"your_attention_modules": sum(isinstance(m, mha_class) for m in model.modules()),
                "torch_attention": [type(m).__name__ for m in model.modules()
                                    if isinstance(m, (nn.MultiheadAttention, nn.TransformerEncoderLayer))]}
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            info["pred"] = model(case["X"].clone()).argmax(dim=-1)
            g = torch.Generator().manual_seed(case["perturb_seed"])
            for m in model.modules():
                if isinstance(m, mha_class):
                    for p in m.parameters():
                        bound = 1 / math.sqrt(p.shape[-1])
                        p.copy_((torch.rand(p.shape, generator=g, dtype=p.dtype) * 2 - 1) * bound)
            info["pred_perturbed"] = model(case["X"].clone()).argmax(dim=-1)
        return info

    def _variants(self, fn, case, replacements):
        """Run ``fn(case, {})`` (the student's code as it is) and, when the names to replace are
        defined, ``fn(case, replacements)``, each with its own operator recording."""
        out = {"own": self._recorded(fn, case, {})}
        if all(name in self.ns for name in replacements):
            out["subst"] = self._recorded(fn, case, replacements)
        return out

    def _recorded(self, fn, case, replacements):
        rec = Recorder()
        replacements = {name: rec.trusted(obj) for name, obj in replacements.items()}
        try:
            with rec:
                out = dict(fn(case, replacements))
        except _Timeout:
            raise
        except BaseException as err:  # noqa: BLE001 (the student's code may raise anything)
            out = {"error": _describe(err)}
        out.update(ops=rec.ops, intact=rec.intact)
        return out


def _describe(err):
    text = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


LSTM_SUBST = {"lstm_cell_forward": _torch_lstm_cell_forward}
ATTENTION_SUBST = {"dot_product_attention": _torch_dot_product_attention, "split_heads": _torch_split_heads,
                   "merge_heads": _torch_merge_heads, "mha_allowed_mask": _torch_allowed_mask}
VARIANTS = {"lstm_module", "adding", "mha", "block", "reverser"}  # recorded per variant (own, subst)


def run_case(runner, case):
    rec = Recorder()
    outputs, error = {}, None
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(CASE_SECONDS)
    try:
        if case["kind"] in VARIANTS:
            outputs = getattr(runner, case["kind"])(case)
        else:
            with rec:
                outputs = getattr(runner, case["kind"])(case)
    except BaseException as err:  # noqa: BLE001
        error = _describe(err)
    finally:
        signal.alarm(0)
    try:
        outputs = plain(outputs)
    except Exception as err:  # noqa: BLE001
        outputs, error = {}, error or f"the outputs could not be read: {_describe(err)}"
    return {"outputs": outputs, "error": error, "ops": rec.ops, "intact": rec.intact}


MARKER = "@@independent-check@@ "  # starts each line of results on the private stdout (``--stream``)


class _Sink:
    """Where the results go: ``WORKDIR/student_out.pt`` after each part and, with ``stream`` (a sandbox
    whose files are lost with it), one line per part on the process's original stdout, which is moved
    away from fd 1 before any student code runs (what the student prints goes to stderr)."""

    def __init__(self, path, stream):
        self.path, self.fd, self.sent = path, None, 0
        if stream:
            self.fd = os.dup(1)
            os.dup2(2, 1)

    def save(self, cell_errors, results):
        torch.save({"cell_errors": cell_errors, "results": results}, self.path)
        if self.fd is not None:
            buf = io.BytesIO()
            torch.save({"cell_errors": cell_errors, "results": results[self.sent:], "start": self.sent}, buf)
            os.write(self.fd, (MARKER + base64.b64encode(buf.getvalue()).decode() + "\n").encode())
            self.sent = len(results)


def main(workdir, stream=False):
    workdir = pathlib.Path(workdir)
    job = json.loads((workdir / "job.json").read_text())
    cells = json.loads((workdir / "cells.json").read_text())
    cases = torch.load(workdir / "inputs.pt", weights_only=True)
    sink = _Sink(workdir / "student_out.pt", stream)
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["COURSE_DEVICE"] = "cpu"
    ns = {"__name__": "__main__", "__builtins__": builtins}
    cell_errors = {}
    for cell in cells:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(CASE_SECONDS)
        try:
            exec(compile(cell["source"], f"<cell {cell['grade_id']}>", "exec"), ns)  # noqa: S102
        except BaseException as err:  # noqa: BLE001
            cell_errors[cell["grade_id"]] = _describe(err)
        finally:
            signal.alarm(0)
    runner = Runner(ns, job, workdir)
    results, part = [], None
    for case in cases:
        if part is not None and case["part"] != part:
            sink.save(cell_errors, results)
        part = case["part"]
        results.append(run_case(runner, case))
    sink.save(cell_errors, results)
    os._exit(0)  # nothing the student's code registered (atexit, threads) runs after this


def read_stream(text):
    """The results a ``--stream`` run printed (``text``: its stdout), as plain data (weights_only), in the
    form of ``student_out.pt``; None when there are none. Runs in the grading process."""
    cell_errors, results = {}, []
    for line in (text or "").splitlines():
        if not line.startswith(MARKER):
            continue
        try:
            chunk = torch.load(io.BytesIO(base64.b64decode(line[len(MARKER):], validate=True)), map_location="cpu",
                               weights_only=True)
        except Exception:  # noqa: BLE001 (not ours, or cut short)
            continue
        if not isinstance(chunk, dict) or chunk.get("start") != len(results) \
                or not isinstance(chunk.get("results"), list):
            continue
        results += chunk["results"]
        if isinstance(chunk.get("cell_errors"), dict):
            cell_errors = chunk["cell_errors"]
    return {"cell_errors": cell_errors, "results": results} if results else None


if __name__ == "__main__":
    main(sys.argv[1], stream="--stream" in sys.argv[2:])
