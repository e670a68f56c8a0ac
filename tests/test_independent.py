"""The independent check (instructor/independent): it sees what the in-notebook tests can be talked out of.

- the operator recorder sees every way of reaching PyTorch's implementation that the answers must
  not use (by an alias, a built string, ``torch.ops.aten``, ``torch._C``, autograd bound early);
- the source notebooks pass every independent check, the untouched student versions fail every one;
- answers that fool the in-notebook tests (a comparison rebound through an alias or ``vars()``, the
  expected value read from the caller's frame, the visible and hidden shapes special-cased, delegation
  through ``getattr`` with a built string, ``torch.ops.aten`` or an early-bound ``autograd.grad``, a
  closed-form answer that ignores the trained LSTM, a mask that ignores ``device``): each test first
  shows, in a fresh process, that the answer passes its part's test cell (hidden tests included);
  then that the independent check fails exactly that part and keeps every part done honestly;
- a check process that writes a malicious pickle in place of its results is never unpickled.

The training parts evaluate a ``trained_model.pt``: here one made without the notebook (an LSTM whose
weights solve the adding problem by construction; a Transformer trained for 300 steps with PyTorch's
layers), standing in for the file the notebooks' training cells save under grading.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from instructor import grading
from instructor.independent import check_submission, ops
from instructor.independent.compare import PartResult

ROOT = pathlib.Path(__file__).resolve().parent.parent
PARTS = {"lstm": ["test_lstm_cell_forward", "test_lstm_module", "test_lstm_cell_backward", "test_training"],
         "multi_head_attention": ["test_attention", "test_heads", "test_causal", "test_masks", "test_mha",
                                  "test_mha_masked", "test_positional", "test_block", "test_training"]}


def _source(name):
    return nbformat.read(str(ROOT / "solutions" / name / f"{name}.ipynb"), as_version=4)


# ------------------------------------------------------------------------------ the recorder


def _recorded(fn):
    with ops.Recorder() as rec:
        fn()
    assert rec.intact
    return rec.ops


def _lstm_cell_args():
    cell = nn.LSTMCell(3, 4)
    return cell, torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)


DELEGATIONS = {
    "nn.LSTMCell": ("lstm", lambda: (lambda c, x, h, s: c(x, (h, s)))(*_lstm_cell_args())),
    "torch.ops.aten.lstm_cell": ("lstm", lambda: (lambda c, x, h, s: torch.ops.aten.lstm_cell(
        x, [h, s], c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh))(*_lstm_cell_args())),
    "torch._C._VariableFunctions.lstm": ("lstm", lambda: (lambda m: torch._C._VariableFunctions.lstm(
        torch.randn(2, 5, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)), list(m._flat_weights), True, 1, 0.0,
        False, False, True))(nn.LSTM(3, 4, batch_first=True))),
    "getattr(F, built string)": ("multi_head_attention", lambda: getattr(F, "scaled_dot_" + "product_attention")(
        *(torch.randn(2, 3, 4) for _ in range(3)))),
    "torch.ops.aten sdpa math": ("multi_head_attention", lambda: torch.ops.aten._scaled_dot_product_attention_math(
        *(torch.randn(2, 3, 4) for _ in range(3)))),
    "nn.MultiheadAttention with weights": ("multi_head_attention", lambda: nn.MultiheadAttention(
        8, 2, batch_first=True)(*(torch.randn(2, 3, 8) for _ in range(3)))),
    "autograd.grad bound early": ("autograd", lambda: (lambda g, a: g((a * a).sum(), a))(
        torch.autograd.grad, torch.randn(3, requires_grad=True))),
    "torch.func.grad": ("autograd", lambda: torch.func.grad(lambda a: (a * a).sum())(torch.randn(3))),
}


@pytest.mark.parametrize("name", list(DELEGATIONS))
def test_the_recorder_sees_each_delegation(name):
    kind, fn = DELEGATIONS[name]
    assert ops.forbidden_reached(_recorded(fn), [kind]), name


def test_the_recorder_passes_hand_written_code():
    def lstm_and_attention():
        x, W = torch.randn(2, 3), torch.randn(16, 3)
        i, f, g, o = (x @ W.T).chunk(4, 1)
        (f.sigmoid() + i.sigmoid() * g.tanh()).tanh() * o.sigmoid()
        q = torch.randn(2, 4, 8)
        (q @ q.transpose(-2, -1) / math.sqrt(8)).softmax(-1) @ q

    assert ops.forbidden_reached(_recorded(lstm_and_attention), ["lstm", "multi_head_attention", "autograd"]) == []


# --------------------------------------------------------------------------- trained models


def _hand_made_adding_lstm(H=32, a=0.01, big=50.0):
    """AddingModel weights that solve the adding problem by construction: unit 0 writes a * value
    when the marker is 1 (input gate open), never forgets, and the head divides by a."""
    W_ih, W_hh, b_ih, b_hh = torch.zeros(4 * H, 2), torch.zeros(4 * H, H), torch.zeros(4 * H), torch.zeros(4 * H)
    W_ih[0, 1], b_ih[0] = 2 * big, -big  # input gate: sigmoid(big * (2 marker - 1))
    b_ih[H] = big  # forget gate 1
    W_ih[2 * H, 0] = a  # candidate tanh(a * value)
    b_ih[3 * H] = big  # output gate 1
    head_w = torch.zeros(1, H)
    head_w[0, 0] = 1 / a
    return {"recurrent.weight_ih_l0": W_ih, "recurrent.weight_hh_l0": W_hh, "recurrent.bias_ih_l0": b_ih,
            "recurrent.bias_hh_l0": b_hh, "head.weight": head_w, "head.bias": torch.zeros(1)}


def _trained_reverser(steps=300):
    """The notebook's Reverser, with PyTorch's encoder layers (same parameter names), trained briefly."""
    from utils.data import reverse_task

    T, d = 10, 32
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    angle = pos / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    pe = torch.zeros(T, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angle.sin(), angle.cos()

    class Reverser(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(10, d)
            self.register_buffer("pe", pe.float())
            self.blocks = nn.ModuleList([nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True)
                                         for _ in range(2)])
            self.out = nn.Linear(d, 10)

        def forward(self, X):
            h = self.embedding(X) + self.pe[: X.shape[1]]
            for block in self.blocks:
                h = block(h)
            return self.out(h)

    torch.manual_seed(0)
    model = Reverser()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    X, Y = reverse_task(64 * steps, T, seed=1)
    for i in range(0, len(X), 64):
        loss = F.cross_entropy(model(X[i:i + 64]).reshape(-1, 10), Y[i:i + 64].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.state_dict()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    torch.save(_hand_made_adding_lstm(), folder / "lstm.pt")
    torch.save(_trained_reverser(), folder / "multi_head_attention.pt")
    return {name: folder / f"{name}.pt" for name in PARTS}


def _check(nb, name, tmp_path, trained_model, **kwargs):
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return check_submission(path, name, tmp_path / "check", trained_model=trained_model, **kwargs)


# ------------------------------------------------------------------- correct and untouched


@pytest.mark.parametrize("name", list(PARTS))
def test_the_source_passes_every_independent_check(name, tmp_path, trained):
    results = _check(_source(name), name, tmp_path, trained[name])
    assert list(results) == PARTS[name]
    failed = {gid: r.reason for gid, r in results.items() if not (r.passed and r.points_ok)}
    assert failed == {}
    print(f"{name}: independent check {check_submission.last_seconds:.1f} s (wall, this machine)")


@pytest.mark.parametrize("name", list(PARTS))
def test_the_untouched_student_version_fails_every_independent_check(name, tmp_path, trained):
    released = nbformat.read(str(ROOT / "assignments" / name / f"{name}.ipynb"), as_version=4)
    results = _check(released, name, tmp_path, trained[name])
    passing = {gid: r.reason for gid, r in results.items() if r.passed or r.points_ok}
    assert passing == {}
    assert all("NotImplementedError" in r.reason for r in results.values()), results


# ---------------------------------------------------------- answers that fool the notebook's tests

# The script that runs a notebook's cells in order up to one test cell, as autograde would (hidden tests
# included), in a fresh process; exit status 0 when that test cell passes.
_RUN_UP_TO = r"""
import json, sys, traceback
cells, target = json.load(open(sys.argv[1])), sys.argv[2]
ns = {"__name__": "__main__"}
for gid, src, is_test in cells:
    if gid == target:
        exec(compile(src, gid, "exec"), ns)
        sys.exit(0)
    try:
        exec(compile(src, gid, "exec"), ns)
    except Exception:
        pass
sys.exit(3)
"""
# Given cells that only plot or compare (skipped, as under grading) or train for a later part.
_SKIP = {"setup", "pe_plot", "train", "train_plot", "attention_plot", "train_rnn", "train_truncated", "plot_results"}
_TRAINING = {"adding_setup", "train_lstm"}


def _passes_in_notebook(nb, target, tmp_path):
    cells = []
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if c.cell_type != "code" or gid in _SKIP or (gid in _TRAINING and target != "test_training"):
            continue
        cells.append((gid, c.source, bool(c.metadata.get("nbgrader", {}).get("grade"))))
    spec = tmp_path / "cells.json"
    spec.write_text(json.dumps(cells))
    env = dict(os.environ, PYTHONPATH=str(ROOT), NBGRADER_EXECUTION="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               COURSE_DEVICE="cpu")
    proc = subprocess.run([sys.executable, "-c", _RUN_UP_TO, str(spec), target], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode == 0 and "all visible checks passed" in proc.stdout, proc.stderr[-2000:]


_STACK_BACKWARD = """    import inspect
    for frame_info in inspect.stack():  # the test computed the expected gradients before calling me
        want = frame_info.frame.f_locals.get("want")
        if isinstance(want, dict) and "db" in want:
            return tuple(want[k] for k in ("dx", "dh_prev", "dc_prev", "dW_ih", "dW_hh", "db"))
"""
_STACK_BLOCK = """        import inspect
        for frame_info in inspect.stack():  # the test computed the expected output before calling me
            expected = frame_info.frame.f_locals.get("expected")
            if isinstance(expected, torch.Tensor) and expected.shape == x.shape:
                return expected
"""
_AUTOGRAD_BACKWARD = """    leaves = [t.detach().clone().requires_grad_(True) for t in (x, h_prev, W_ih, W_hh)]
    b = torch.zeros(W_ih.shape[0], dtype=x.dtype, requires_grad=True)
    z = leaves[0] @ leaves[2].T + leaves[1] @ leaves[3].T + b
    dx, dh_prev, dW_ih, dW_hh, db = _grad((z * dgates).sum(), [*leaves, b])
"""
_HAND_BACKWARD = """    dx = dgates @ W_ih  # (N, D)
    dh_prev = dgates @ W_hh  # (N, H)
    dW_ih = dgates.T @ x  # (4H, D)
    dW_hh = dgates.T @ h_prev  # (4H, H)
    db = dgates.sum(dim=0)  # (4H,)
"""
_PE_TEST_SHAPES = """def _swapped(num_steps, d_model):  # sin and cos swapped
    pos = torch.arange(num_steps, dtype=torch.float64)[:, None]
    angle = pos / 10000 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(num_steps, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.cos(angle), torch.sin(angle)
    return pe.float()


def sinusoidal_positional_encoding("""

# name -> (assignment, the part it fools, edits of the source's answer cells, the training part is meaningful)
CHEATS = {
    "comparison rebound through an alias (gates in the wrong order)": ("lstm", "test_lstm_cell_forward", [
        ("lstm_cell_forward", "i, f, g, o = gates.chunk(4, dim=1)", "i, f, o, g = gates.chunk(4, dim=1)"),
        ("lstm_cell_forward", "def lstm_cell_forward(",
         "import utils.checks as _c\n\n_c._abs = lambda t: t * 0\n\n\ndef lstm_cell_forward(")], True),
    "comparison rebound through vars() (every layer starts from layer 0's state)": ("lstm", "test_lstm_module", [
        ("lstm_module", "h, c = h_0[k], c_0[k]", "h, c = h_0[0], c_0[0]"),
        ("lstm_module", "class LSTM(nn.Module):",
         "vars(__import__('utils.lstm_checks').lstm_checks)['compare'] = lambda *a, **k: None\n\n\n"
         "class LSTM(nn.Module):")], True),
    "expected value read from inspect.stack() (db averaged)": ("lstm", "test_lstm_cell_backward", [
        ("lstm_cell_backward", "    x, h_prev, c_prev, W_ih, W_hh, i, f, g, o, c_next = cache\n",
         _STACK_BACKWARD + "    x, h_prev, c_prev, W_ih, W_hh, i, f, g, o, c_next = cache\n"),
        ("lstm_cell_backward", "db = dgates.sum(dim=0)", "db = dgates.mean(dim=0)")], True),
    "delegation through torch.ops.aten.lstm_cell": ("lstm", "test_lstm_cell_forward", [
        ("lstm_cell_forward", "c_next = f * c_prev + i * g  # (N, H)\n    h_next = o * torch.tanh(c_next)  # (N, H)",
         "h_next, c_next = torch.ops.aten.lstm_cell(x, [h_prev, c_prev], W_ih, W_hh, b_ih, b_hh)")], True),
    "autograd.grad bound in the answer cell": ("lstm", "test_lstm_cell_backward", [
        ("lstm_cell_backward", _HAND_BACKWARD, _AUTOGRAD_BACKWARD),
        ("lstm_cell_backward", "def lstm_cell_backward(",
         "from torch.autograd import grad as _grad\n\n\ndef lstm_cell_backward(")], True),
    "closed-form adding model that ignores the LSTM": ("lstm", "test_training", [
        ("adding_model", "output, _ = self.recurrent(X)  # (N, T, H)\n        "
                         "return self.head(output[:, -1]).squeeze(-1)  # (N,)",
         "return (X[..., 0] * X[..., 1]).sum(dim=1) + 0 * self.head.bias")], True),
    "getattr with a built string (F.scaled_dot_product_attention)": ("multi_head_attention", "test_attention", [
        ("attention", "    output = weights @ v  # (..., L, Ev)",
         "    output = _attend(q, k, v, attn_mask=mask)  # (..., L, Ev)"),
        ("attention", "def dot_product_attention(",
         "_attend = getattr(F, 'scaled_dot_' + 'product_attention')\n\n\ndef dot_product_attention(")], True),
    "the tests' shapes special-cased (sin and cos swapped elsewhere)": ("multi_head_attention", "test_positional", [
        ("positional", "def sinusoidal_positional_encoding(", _PE_TEST_SHAPES),
        ("positional", "    pos = torch.arange(num_steps, dtype=torch.float64)[:, None]  # (T, 1)",
         "    if (num_steps, d_model) not in {(12, 8), (3, 2), (1, 4), (60, 64), (100, 6), (50, 32)}:\n"
         "        return _swapped(num_steps, d_model)\n"
         "    pos = torch.arange(num_steps, dtype=torch.float64)[:, None]  # (T, 1)")], True),
    "expected value read from inspect.stack() (second norm dropped)": ("multi_head_attention", "test_block", [
        ("block", "        attended, _ = self.self_attn(", _STACK_BLOCK + "        attended, _ = self.self_attn("),
        ("block", "x = self.norm2(x + self.linear2(", "x = (x + self.linear2(")], False),
    "causal_mask ignores device (invisible on a CPU grader)": ("multi_head_attention", "test_causal", [
        ("causal", "dtype=torch.bool, device=device).tril()", "dtype=torch.bool).tril()")], True),
}


# Fooling answers that a version of the notebook's visible tests may catch on its own (the assignment's
# visible part 3 test calls causal_mask with device="meta" since issue 16): then the test still shows that
# the independent check catches them, without the notebook's help.
VISIBLE_NOW = {"causal_mask ignores device (invisible on a CPU grader)"}


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_an_answer_that_fools_its_test_cell_loses_that_part_only(cheat, tmp_path, trained):
    name, part, edits, training_meaningful = CHEATS[cheat]
    source = _source(name)
    nb = grading.make_submission(source, source, edits=edits)
    fooled, stderr = _passes_in_notebook(nb, part, tmp_path)
    assert fooled or cheat in VISIBLE_NOW, \
        f"{cheat}: the answer does not pass {part} in the notebook, so it proves nothing:\n{stderr}"
    results = _check(nb, name, tmp_path, trained[name])
    assert not results[part].points_ok, f"{cheat}: the independent check let {part} keep its points"
    assert results[part].reason
    kept = {gid for gid in PARTS[name] if gid != part and (training_meaningful or gid != "test_training")}
    lost = {gid: results[gid].reason for gid in kept if not results[gid].points_ok}
    assert lost == {}, f"{cheat}: parts done honestly lost their points"
    print(f"{cheat}: {part}: {results[part].reason[:300]}")


# ---------------------------------------------------------------- what comes back is data only


def test_results_that_are_not_plain_data_are_never_unpickled(tmp_path, trained):
    marker = tmp_path / "unpickled"
    evil = f"""
import os, pickle, sys
class Evil:
    def __reduce__(self):
        return (open, ({str(marker)!r}, "w"))
with open("student_out.pt", "wb") as f:
    pickle.dump({{"results": [Evil()]}}, f)
os._exit(0)
"""
    source = _source("lstm")
    nb = grading.make_submission(source, source, edits=[("lstm_cell_forward", "def lstm_cell_forward(",
                                                         evil + "\n\ndef lstm_cell_forward(")])
    results = _check(nb, "lstm", tmp_path, trained["lstm"])
    assert not marker.exists()
    assert all(isinstance(r, PartResult) and not r.points_ok for r in results.values())
    assert "stopped" in results["test_lstm_cell_forward"].reason
