"""The LSTM assignment: its checks, and the nbgrader round trip of typical submissions.

- the checks in utils/lstm_checks.py pass the source's answers and catch typical wrong answers, saying
  which gate, time step or gradient is off (in-process, fast);
- autograde (one nbgrader course, four submissions): the source gets full marks on the automatic parts,
  the untouched student version 0, a submission with parts 1 and 3 solved exactly their points, and
  one with a wrong module (state detached: only the hidden gradient test sees it) and a wrong backward
  (gates stacked in the wrong order) loses exactly those two parts.
"""

import pathlib
import tempfile

import nbformat
import pytest
import torch

from instructor import grading
from utils import lstm_checks, torch_parts
from utils.checks import CheckError

NAME = "lstm"
ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "solutions" / NAME / f"{NAME}.ipynb"
TESTS = {"test_lstm_cell_forward": 3, "test_lstm_module": 4, "test_lstm_cell_backward": 4, "test_training": 2}


def _cells(nb):
    return {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}


def _source():
    return nbformat.read(str(SOURCE), as_version=4)


def _answers(gids):
    """Exec the source's answer cells ``gids`` (and the imports) in a fresh namespace; return it."""
    cells = _cells(_source())
    ns = {}
    for gid in ["imports", *gids]:
        exec(compile(cells[gid].source, gid, "exec"), ns)
    return ns


# ------------------------------------------------------------------------------ the notebook itself


def test_points_table_matches_the_test_cells():
    nb = _source()
    points = {gid: c.metadata["nbgrader"]["points"] for gid, c in _cells(nb).items()
              if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"}
    assert points == TESTS
    written = [c.metadata["nbgrader"]["points"] for c in nb.cells
               if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")]
    assert written == [1, 1, 1]
    assert "**16**" in nb.cells[0].source


def test_the_source_answers_pass_the_grading_audit():
    # the audit zeroes tests after an answer cell that names LSTMCell, nn.LSTM(, setattr, ...
    assert grading.audit(_source(), NAME) == []


# --------------------------------------------------------------- the checks, in-process (fast)


def test_checks_pass_the_source_answers(capsys):
    ns = _answers(["lstm_cell_forward", "lstm_module", "lstm_cell_backward"])
    torch.manual_seed(0)
    ref = torch.nn.LSTMCell(3, 4).double()
    x, h, c = (torch.randn(2, n, dtype=torch.float64) for n in (3, 4, 4))
    lstm_checks.check_cell_forward(ns["lstm_cell_forward"], ref, x, h, c, atol=1e-12, rtol=1e-10)
    lstm_checks.check_cell_backward(ns["lstm_cell_backward"], ref, x, h, c, torch.randn(2, 4).double(),
                                    torch.randn(2, 4).double(), atol=1e-12, rtol=1e-10)
    lstm_checks.check_lstm_module(ns["LSTM"], 3, 3, num_layers=3, initial_state=True, grads=True,
                                  dtype=torch.float64, atol=1e-12, rtol=1e-10)
    lstm_checks.check_lstm_module(ns["LSTM"], 3, 3, num_layers=2, grads=True,
                                  cell_forward=torch_parts.lstm_cell_forward)
    assert capsys.readouterr().out.count("ok:") == 4


def test_probed_gates_are_the_gates():
    torch.manual_seed(1)
    cell = torch.nn.LSTMCell(3, 4).double()
    x, h, c = (torch.randn(5, n, dtype=torch.float64) for n in (3, 4, 4))
    W_ih, W_hh, b_ih, b_hh = (p.detach() for p in cell.parameters())
    z = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh
    zi, zf, zg, zo = z.chunk(4, 1)
    want = {"i": zi.sigmoid(), "f": zf.sigmoid(), "g": zg.tanh(), "o": zo.sigmoid()}
    got = lstm_checks.probe_gates(lstm_checks._torch_step, x, h, c, W_ih, W_hh, b_ih, b_hh)
    for k in "ifgo":
        torch.testing.assert_close(got[k], want[k], atol=1e-12, rtol=0)


def _forward_variant(old, new):
    ns = _answers(["lstm_cell_forward"])
    src = _cells(_source())["lstm_cell_forward"].source
    assert old in src
    exec(src.replace(old, new), ns)
    return ns["lstm_cell_forward"]


@pytest.mark.parametrize("old,new,expect", [
    ("i, f, g, o = gates.chunk(4, dim=1)", "i, f, o, g = gates.chunk(4, dim=1)", "gate order"),
    (" + h_prev @ W_hh.T + b_hh", " + h_prev @ W_hh.T", "c_next: differs"),
    ("torch.tanh(g), torch.sigmoid(o)", "torch.sigmoid(g), torch.sigmoid(o)", "candidate g (cell update): differs"),
    ("torch.sigmoid(i), torch.sigmoid(f)", "torch.sigmoid(i), torch.sigmoid(f) * 0 + 1", "forget gate f: differs"),
    ("h_next = o * torch.tanh(c_next)", "h_next = o * c_next", "output gate o: differs"),
])
def test_cell_check_names_the_wrong_gate(old, new, expect):
    torch.manual_seed(0)
    ref = torch.nn.LSTMCell(3, 5)
    with pytest.raises(CheckError, match="i, f, g, o") as err:
        lstm_checks.check_cell_forward(_forward_variant(old, new), ref, torch.randn(4, 3), torch.randn(4, 5),
                                       torch.randn(4, 5))
    assert expect in str(err.value), str(err.value)


def test_cell_check_catches_a_forbidden_call_and_an_unstable_sigmoid():
    torch.manual_seed(0)
    ref = torch.nn.LSTMCell(3, 5)
    x, h, c = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 5)

    def cheat(x, h, c, W_ih, W_hh, b_ih, b_hh):
        cell = torch.nn.LSTMCell(3, 5)
        return (*cell(x, (h, c)), None)

    with pytest.raises(CheckError, match="calls torch.nn.LSTMCell"):
        lstm_checks.check_cell_forward(cheat, ref, x, h, c)
    unstable = _forward_variant("i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)",
                                "sig = lambda z: torch.exp(z) / (1 + torch.exp(z))\n"
                                "    i, f, g, o = sig(i), sig(f), torch.tanh(g), sig(o)")
    with pytest.raises(CheckError, match="saturates"):
        lstm_checks.check_cell_forward(unstable, ref, x, h, c)


def _module_variant(old, new):
    ns = _answers(["lstm_cell_forward"])
    src = _cells(_source())["lstm_module"].source
    assert old in src
    exec(src.replace(old, new), ns)
    return ns["LSTM"]


STEP = "h, c, _ = self.cell_forward(layer_input[:, t], h, c, *weights)"


@pytest.mark.parametrize("old,new,kwargs,expect", [
    (STEP, STEP.replace("h, c, *", "h.detach(), c.detach(), *"), dict(grads=True), "gradients differ"),
    (STEP, STEP.replace("h, c, *", "h_0[k], c_0[k], *"), {}, "first differs at time step 1 of 6"),
    ("h, c = h_0[k], c_0[k]", "h, c = 0 * h_0[k], 0 * c_0[k]", dict(initial_state=True),
     "the very first time step is already off"),
    ("layer_input_size = input_size if k == 0 else hidden_size", "layer_input_size = input_size",
     dict(num_layers=2), "weight_ih_l1: shape (20, 5) expected, got (20, 4)"),
])
def test_module_check_says_what_differs(old, new, kwargs, expect):
    with pytest.raises(CheckError) as err:
        lstm_checks.check_lstm_module(_module_variant(old, new), 4, 5, cell_forward=torch_parts.lstm_cell_forward,
                                      **kwargs)
    assert expect in str(err.value), str(err.value)


def _backward_variant(old, new):
    ns = _answers([])
    src = _cells(_source())["lstm_cell_backward"].source
    assert old in src
    exec(src.replace(old, new), ns)
    return ns["lstm_cell_backward"]


@pytest.mark.parametrize("old,new,expect", [
    ("dc = dc_next + dh_next * o * (1 - tanh_c**2)", "dc = dc_next", "dc_prev: differs"),
    ("dg * (1 - g**2), do * o * (1 - o)]", "do * o * (1 - o), dg * (1 - g**2)]", "gate blocks that differ: g, o"),
    ("dg * (1 - g**2), do * o * (1 - o)]", "do * o * (1 - o), dg * (1 - g**2)]", "order (i, f, o, g)"),
    ("db = dgates.sum(dim=0)", "db = dgates.mean(dim=0)", "db: differs"),
])
def test_backward_check_names_the_wrong_gradient(old, new, expect):
    torch.manual_seed(0)
    ref = torch.nn.LSTMCell(3, 5)
    with pytest.raises(CheckError) as err:
        lstm_checks.check_cell_backward(_backward_variant(old, new), ref, torch.randn(4, 3), torch.randn(4, 5),
                                        torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5))
    assert expect in str(err.value), str(err.value)


# ------------------------------------------------ re-run as a student: each mistake names its cause
# Each mistake of issue 16 is a mutation of the solution's answer; the visible test of its part (the
# function its test cell calls) must fail with a message naming the cause.

BUFFER_LOOP = [("lstm_module", "outputs = []", "outputs = torch.zeros(N, T, self.hidden_size)  # float32 buffer"),
               ("lstm_module", "outputs.append(h)", "outputs[:, t] = h"),
               ("lstm_module", "layer_input = torch.stack(outputs, dim=1)", "layer_input = outputs")]
MISTAKES = {
    "float32 buffer in the module": (BUFFER_LOOP, "visible_part2", ["part 2", "float64", "dtype=x.dtype"]),
    "float32 buffer in the step": (
        [("lstm_cell_forward", "h_next = o * torch.tanh(c_next)  # (N, H)",
          "h_next = torch.zeros(x.shape[0], c_prev.shape[1])\n    h_next[:] = o * torch.tanh(c_next)")],
        "visible_part1", ["dtype torch.float64 expected, got torch.float32", "float64 in must give float64 out"]),
    "gates in CS231n's order": ([("lstm_cell_forward", "i, f, g, o = gates.chunk(4, dim=1)",
                                  "i, f, o, g = gates.chunk(4, dim=1)")], "visible_part1",
                                ["gate order", "(i, f, o, g)", "PyTorch's order is (i, f, g, o)"]),
    "missing transpose": ([("lstm_cell_forward", "x @ W_ih.T", "x @ W_ih")], "visible_part1",
                          ["part 1", "lstm_cell_forward raised RuntimeError", "mat1 and mat2", "transpose",
                           "(4, 3) float32"]),
    "missing transpose in the backward": ([("lstm_cell_backward", "dW_ih = dgates.T @ x", "dW_ih = dgates @ x")],
                                          "visible_part3", ["part 3", "transpose"]),
    "backward gates in the wrong order": ([("lstm_cell_backward", "dg * (1 - g**2), do * o * (1 - o)]",
                                            "do * o * (1 - o), dg * (1 - g**2)]")], "visible_part3", ["gate order"]),
    "global step instead of self.cell_forward": ([("lstm_module", "self.cell_forward(layer_input",
                                                   "lstm_cell_forward(layer_input")],
                                                 "visible_part2", ["never called self.cell_forward"]),
    "layers not chained": ([("lstm_module", "layer_input = torch.stack(outputs, dim=1)", "pass")], "visible_part2",
                           ["output: shape (3, 6, 5) expected, got (3, 6, 4)", "chained"]),
    "head without squeeze": ([("adding_model", ".squeeze(-1)", "")], "check_adding_model",
                             ["shape (3,) expected, got (3, 1)", ".squeeze(-1)"]),
    "AddingModel without unpacking": ([("adding_model", "output, _ = self.recurrent(X)",
                                        "output = self.recurrent(X)")], "check_adding_model",
                                      ["part 4", "(3, 7, 2) float32", "unpacking"]),
    "head on the first time step": ([("adding_model", "output[:, -1]", "output[:, 0]")], "check_adding_model",
                                    ["output[:, -1]"]),
    "float32 buffer in the backward": ([("lstm_cell_backward", "db = dgates.sum(dim=0)",
                                         "db = torch.zeros(dgates.shape[1])\n    db += dgates.sum(dim=0)")],
                                       "visible_part3", ["db: dtype torch.float64 expected", "dtype=x.dtype"]),
    "gates chunked along the batch": ([("lstm_cell_forward", "gates.chunk(4, dim=1)", "gates.chunk(4, dim=0)")],
                                      "visible_part1", ["part 1", "chunk(4, dim=1)"]),
    "unwritten step": ([("lstm_cell_forward", "gates = x @ W_ih.T",
                         "raise NotImplementedError()\n    gates = x @ W_ih.T")],
                       "visible_part1", ["not written yet"]),
}


def _mutated(edits):
    cells = _cells(_source())
    ns = {}
    for gid in ["imports", "lstm_cell_forward", "lstm_module", "lstm_cell_backward", "adding_model"]:
        src = cells[gid].source
        for g, old, new in edits:
            if g == gid:
                assert old in src, (gid, old)
                src = src.replace(old, new)
        exec(compile(src, gid, "exec"), ns)
    return ns


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_student_sees_the_cause(mistake, capsys):
    edits, check, expected = MISTAKES[mistake]
    ns = _mutated(edits)
    target = {"visible_part1": "lstm_cell_forward", "visible_part2": "LSTM", "visible_part3": "lstm_cell_backward",
              "check_adding_model": "AddingModel"}[check]
    with pytest.raises(CheckError) as err:
        getattr(lstm_checks, check)(ns[target])
    for text in expected:
        assert text in str(err.value), f"{mistake}: {text!r} not in\n{err.value}"


def test_each_part_is_tested_with_pytorchs_parts_below():
    # a wrong step costs part 1 only: the module test (PyTorch's step) and the training's choice of parts
    ns = _mutated(MISTAKES["gates in CS231n's order"][0])
    lstm_checks.visible_part2(ns["LSTM"])
    cell, lstm_class, note = lstm_checks.working_parts(ns["lstm_cell_forward"], ns["LSTM"])
    assert cell is torch_parts.lstm_cell_forward and lstm_class is ns["LSTM"] and "fails part 1" in note
    ns = _mutated(BUFFER_LOOP)
    cell, lstm_class, note = lstm_checks.working_parts(ns["lstm_cell_forward"], ns["LSTM"])
    assert cell is ns["lstm_cell_forward"] and lstm_class is lstm_checks.TorchLSTM and "fails part 2" in note


def test_the_table_of_parts(capsys):
    ns = _mutated(MISTAKES["gates in CS231n's order"][0])
    from utils.checks import report_parts

    results = report_parts([("part 1", lambda: lstm_checks.visible_part1(ns["lstm_cell_forward"])),
                            ("part 2", lambda: lstm_checks.visible_part2(ns["LSTM"])),
                            ("part 4", lambda: eval("X_test", {}))])  # a part whose cells were not run
    out = capsys.readouterr().out
    assert results["part 2"] is None and "gate order" in results["part 1"]
    assert "FAILED: gate order" in out and "1 of 3 parts pass" in out
    assert results["part 4"].startswith("not run yet")


def test_no_blanket_warning_filter_and_no_global_swap():
    text = "\n".join(c.source for c in _source().cells)
    assert "filterwarnings(\"ignore\")" not in text and "itertools" not in text
    assert "lstm_cell_forward = " not in text  # nothing rebinds the student's function


# ------------------------------------------------------------------- nbgrader round trip (slow)


@pytest.fixture(scope="module")
def graded():
    """Autograde four submissions in one temporary nbgrader course; results by student."""
    source = _source()
    student = nbformat.read(str(grading.release_notebook(NAME)), as_version=4)

    # parts 1 and 3 filled in from the source, the rest untouched
    partial = grading.make_submission(student, source, ["lstm_cell_forward", "lstm_cell_backward"])
    wrong = grading.make_submission(source, source, edits=[
        ("lstm_module", STEP, STEP.replace("h, c, *", "h.detach(), c.detach(), *")),
        ("lstm_cell_backward", "dg * (1 - g**2), do * o * (1 - o)]", "do * o * (1 - o), dg * (1 - g**2)]")])

    folder = pathlib.Path(tempfile.mkdtemp(prefix="lstm-submissions-"))
    for who, nb in (("source", source), ("untouched", student), ("partial", partial), ("wrong", wrong)):
        (folder / who).mkdir()
        nbformat.write(nb, str(folder / who / f"{NAME}.ipynb"))
    results = grading.grade_folder(NAME, folder, out=folder.parent / f"{folder.name}-out",
                                   work=folder.parent / f"{folder.name}-course", log=lambda *_: None)
    return {r.student: r for r in results}


def _scores(result):
    assert result.status == "graded", result.reason
    return {gid: result.cells[gid]["score"] for gid in TESTS}


def test_source_gets_full_marks(graded):
    r = graded["source"]
    assert _scores(r) == TESTS, r.reason
    assert (r.auto_score, r.auto_max, r.max_score) == (13, 13, 16)


def test_untouched_student_version_scores_zero(graded):
    r = graded["untouched"]
    assert _scores(r) == dict.fromkeys(TESTS, 0)
    assert r.auto_score == 0


def test_partly_solved_gets_exactly_its_parts(graded):
    r = graded["partial"]
    assert _scores(r) == {"test_lstm_cell_forward": 3, "test_lstm_module": 0, "test_lstm_cell_backward": 4,
                          "test_training": 0}
    assert r.auto_score == 7


def test_wrong_answers_lose_their_parts(graded):
    # the detached state is only caught by the hidden gradient tests; the gate order by the visible ones
    r = graded["wrong"]
    assert _scores(r) == {"test_lstm_cell_forward": 3, "test_lstm_module": 0, "test_lstm_cell_backward": 0,
                          "test_training": 2}
    assert r.auto_score == 5
