"""The nbgrader round trip of the multi_head_attention assignment.

One grading run (one release, five submissions) checks that: the source gets full automatic marks;
the untouched student version gets 0; a submission with parts 1-3 answered gets exactly their
points; two typical wrong answers (PyTorch's masks passed on without inverting them together with
sin/cos swapped in the positional encoding; attention without the division by sqrt(d_k)) lose the
points of their parts and only those. Cheaper checks (no kernel) cover the points table and the
grader's static audit of the answer cells.
"""

import pathlib
import re
import shutil

import nbformat
import pytest

from instructor import grading
from utils import mha_checks
from utils.checks import CheckError, report_parts

NAME = "multi_head_attention"
ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "solutions" / NAME / f"{NAME}.ipynb"

# test cell -> points, in notebook order (parts 1-9 of the notebook's table)
POINTS = {"test_attention": 4, "test_heads": 2, "test_causal": 1, "test_masks": 2, "test_mha": 4,
          "test_mha_masked": 3, "test_positional": 2, "test_block": 2, "test_training": 4}
WRITTEN = {"q1_sqrt_dk": 2, "q2_heads": 2, "q3_lengths": 2}

# Typical wrong answers: (answer cell, text in the solution, replacement).
MASKS_NOT_INVERTED = [("masks", "allowed = ~key_padding_mask", "allowed = key_padding_mask"),
                      ("masks", "from_attn = ~attn_mask[None, None]", "from_attn = attn_mask[None, None]"),
                      ("masks", "from_attn = ~attn_mask.reshape", "from_attn = attn_mask.reshape")]
SIN_COS_SWAPPED = [("positional", "pe[:, 0::2] = torch.sin(angle)", "pe[:, 0::2] = torch.cos(angle)"),
                   ("positional", "pe[:, 1::2] = torch.cos(angle)", "pe[:, 1::2] = torch.sin(angle)")]
NO_SQRT = [("attention", "/ math.sqrt(d_k)", "")]


def _meta(cell):
    return cell.metadata.get("nbgrader", {})


def _by_id(nb):
    return {_meta(c).get("grade_id"): c for c in nb.cells if _meta(c).get("grade_id")}


def _answer_ids(nb):
    return [_meta(c)["grade_id"] for c in nb.cells if c.cell_type == "code" and _meta(c).get("solution")]


def _submission(student, source, answered, edits=()):
    """The student version with the answer cells ``answered`` taken from the source, then ``edits``."""
    return grading.make_submission(student, source, answered, edits)


@pytest.fixture(scope="module")
def source():
    return nbformat.read(str(SOURCE), as_version=4)


@pytest.fixture(scope="module")
def graded(tmp_path_factory, source):
    tmp = tmp_path_factory.mktemp(NAME)
    released = grading.release_notebook(NAME)
    try:
        student = nbformat.read(str(released), as_version=4)
    finally:
        shutil.rmtree(released.parents[2], ignore_errors=True)
    everything = _answer_ids(source)
    submissions = {
        "full": source,
        "untouched": student,
        "partial": _submission(student, source, ["attention", "heads", "causal"]),
        "masksign": _submission(student, source, everything, MASKS_NOT_INVERTED + SIN_COS_SWAPPED),
        "nosqrt": _submission(student, source, everything, NO_SQRT),
    }
    for who, nb in submissions.items():
        path = tmp / "in" / who / f"{NAME}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, str(path))
    results = grading.grade_folder(NAME, tmp / "in", out=tmp / "out", work=tmp / "course", log=lambda *_: None)
    return {r.student: r for r in results}


def _scores(result):
    assert result.status == "graded", f"{result.student}: {result.status} ({result.reason})"
    return {gid: result.cells[gid]["score"] for gid in POINTS}


def test_the_source_gets_full_automatic_marks(graded):
    result = graded["full"]
    assert _scores(result) == POINTS, result.reason
    assert result.auto_score == result.auto_max == sum(POINTS.values())
    assert result.max_score == sum(POINTS.values()) + sum(WRITTEN.values())


def test_the_untouched_student_version_scores_zero(graded):
    result = graded["untouched"]
    assert _scores(result) == dict.fromkeys(POINTS, 0.0)
    assert result.auto_score == 0


def test_a_partial_submission_gets_exactly_the_points_of_its_parts(graded):
    expected = dict.fromkeys(POINTS, 0.0) | {"test_attention": 4, "test_heads": 2, "test_causal": 1}
    assert _scores(graded["partial"]) == expected
    assert graded["partial"].auto_score == 7


def test_uninverted_masks_and_swapped_sin_cos_lose_their_parts(graded):
    # parts 6 and 8 run on the reference mask conversion and module: only parts 4 and 7 are lost
    scores = _scores(graded["masksign"])
    lost = {"test_masks", "test_positional"}
    assert {gid for gid, s in scores.items() if s == 0} == lost, scores


def test_attention_without_sqrt_dk_loses_its_parts(graded):
    # parts 5, 6 and 8 run on the reference attention; part 9 trains the student's own parts together
    scores = _scores(graded["nosqrt"])
    assert scores["test_attention"] == 0, scores
    kept = set(POINTS) - {"test_attention", "test_training"}
    assert {gid for gid in kept if scores[gid] == POINTS[gid]} == kept, scores


def test_cells_and_points_table_agree(source):
    tests = [(_meta(c)["grade_id"], _meta(c)["points"]) for c in source.cells
             if _meta(c).get("grade") and not _meta(c).get("solution")]
    assert dict(tests) == POINTS and [g for g, _ in tests] == list(POINTS)
    written = {_meta(c)["grade_id"]: _meta(c)["points"] for c in source.cells
               if c.cell_type == "markdown" and _meta(c).get("grade")}
    assert written == WRITTEN
    # The closing "Submit" cells are plain cells (no nbgrader metadata): the student edits that code cell
    # (SUBMIT = True), which a locked cell would forbid where nbgrader's extension enforces read-only cells.
    cells = source.cells[:-2] if source.cells[-2].source.startswith("## Submit") else source.cells
    assert all(not _meta(c) for c in source.cells[len(cells):])
    ids = [_meta(c).get("grade_id") for c in cells]
    assert all(ids) and len(ids) == len(set(ids)), "every cell needs a unique grade_id"
    table = re.findall(r"^\| (\d+) \|.*\| (\d+) \|$", source.cells[0].source, flags=re.M)
    assert [int(p) for _, p in table] == list(POINTS.values()) + [sum(WRITTEN.values())]
    assert f"**{sum(POINTS.values()) + sum(WRITTEN.values())}**" in source.cells[0].source


def test_the_answer_cells_pass_the_graders_audit(source):
    assert grading.audit(source, NAME) == []


def test_the_audit_flags_an_answer_that_calls_pytorchs_attention(source):
    nb = _submission(source, source, [], [("attention", "    output = weights @ v",
                                           "    output = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)")])
    kinds = {(gid, kind) for _, gid, kind, _ in grading.audit(nb, NAME)}
    assert ("attention", "forbidden") in kinds


# ------------------------------------------------ re-run as a student: each mistake names its cause
# Each mistake of issue 16 (and the same kind of mistake as in the LSTM assignment) is a mutation of
# the solution's answer; the visible test of its part must fail with a message naming the cause.

PRE_NORM = ("""        attended, _ = self.self_attn(x, x, x, key_padding_mask=key_padding_mask)  # (N, L, d_model)
        x = self.norm1(x + attended)  # (N, L, d_model)
        x = self.norm2(x + self.linear2(torch.relu(self.linear1(x))))  # (N, L, d_model)""",
            """        h = self.norm1(x)
        attended, _ = self.self_attn(h, h, h, key_padding_mask=key_padding_mask)
        x = x + attended
        x = x + self.linear2(torch.relu(self.linear1(self.norm2(x))))""")
MISTAKES = {
    "3-D attn_mask reshaped head-major": (
        [("masks", "from_attn = ~attn_mask.reshape(-1, num_heads, L, S)",
          "from_attn = ~attn_mask.reshape(num_heads, -1, L, S).transpose(0, 1)")], 4, ["head-major"]),
    "lecture 5's mask convention in part 1": (
        [("attention", "scores.masked_fill(~mask,", "scores.masked_fill(mask,")], 1,
        ["mask convention inverted", "lecture 5"]),
    "PyTorch's masks passed straight to part 1": (
        [("mha", "mask = self.allowed_mask(key_padding_mask, attn_mask)",
          "mask = attn_mask if attn_mask is not None else key_padding_mask")], 6,
        ["mask convention", "self.allowed_mask"]),
    "forgotten [0] in the encoder block": (
        [("block", "attended, _ = self.self_attn(", "attended = self.self_attn(")], 8, ["part 8", "[0]", "tuple"]),
    "pre-norm block": ([("block", *PRE_NORM)], 8, ["pre-norm"]),
    "positional exponent i / d": (
        [("positional", "two_i = torch.arange(0, d_model, 2, dtype=torch.float64)",
          "two_i = torch.arange(0, d_model // 2, dtype=torch.float64)")], 7, ["exponent", "10000 ** (i / d_model)"]),
    "sin and cos swapped": (SIN_COS_SWAPPED, 7, ["sin and cos swapped"]),
    "float32 buffer in attention": (
        [("attention", "output = weights @ v  # (..., L, Ev)",
          "output = torch.zeros(*q.shape[:-1], v.shape[-1])\n    output[:] = weights @ v")], 1,
        ["float64", "dtype=x.dtype"]),
    "missing transpose of the projections": (
        [("mha", "query @ w_q.T", "query @ w_q"), ("mha", "key @ w_k.T", "key @ w_k"),
         ("mha", "value @ w_v.T", "value @ w_v")], 5, ["missing transpose"]),
    "Q and K blocks swapped": (
        [("mha", "w_q, w_k, w_v = self.in_proj_weight", "w_k, w_q, w_v = self.in_proj_weight"),
         ("mha", "b_q, b_k, b_v = self.in_proj_bias", "b_k, b_q, b_v = self.in_proj_bias")], 5,
        ["(K, Q, V)", "PyTorch's order is (Q, K, V)"]),
    "no division by sqrt(d_k)": (NO_SQRT, 1, ["without the division by sqrt(d_k)"]),
    "split by reshape alone": (
        [("heads", "return x.reshape(N, L, num_heads, head_dim).transpose(1, 2)",
          "return x.reshape(N, num_heads, L, head_dim)")], 2, ["transpose(1, 2)"]),
    "causal mask inverted": ([("causal", ".tril()", ".triu(diagonal=1)")], 3, ["inverted"]),
    "causal mask ignores the device": ([("causal", ", device=device)", ")")], 3, ["device"]),
    "weights averaged with keepdim": (
        [("mha", "weights.mean(dim=1)", "weights.mean(dim=1, keepdim=True)")], 5, ["squeeze"]),
    "module calls part 1 by its global name": (
        [("mha", "self.attention_fn(q, k, v, mask)", "dot_product_attention(q, k, v, mask)")], 5,
        ["never called self.attention_fn"]),
    "unwritten module": ([("mha", "E = self.embed_dim\n", "raise NotImplementedError()\n")], 5, ["not written yet"]),
    "softmax over the queries": ([("attention", "torch.softmax(scores, dim=-1)", "torch.softmax(scores, dim=-2)")], 1,
                                 ["over the keys", "dim=-1"]),
    "mask applied by multiplication": (
        [("attention", 'scores = scores.masked_fill(~mask, float("-inf"))', "scores = scores * mask")], 1,
        ["-inf before the softmax"]),
    "softmax by hand, overflowing": (
        [("attention", "weights = torch.softmax(scores, dim=-1)  # (..., L, S)",
          "weights = torch.exp(scores) / torch.exp(scores).sum(-1, keepdim=True)")], 1, ["overflows", "torch.softmax"]),
    "merge by reshape alone": ([("heads", "return x.transpose(1, 2).reshape(N, L, H * head_dim)",
                                 "return x.reshape(N, L, H * head_dim)")], 2, ["transpose(1, 2), then reshape"]),
    "forgotten bias b_Q": ([("mha", "query @ w_q.T + b_q", "query @ w_q.T")], 5, ["leaves out its bias b_Q"]),
    "weights not averaged over heads": ([("mha", "weights.mean(dim=1)", "weights")], 5, ["weights.mean(dim=1)"]),
    "no out_proj": ([("mha", "self.out_proj(self.merge_fn(z))", "self.merge_fn(z)")], 5, ["without out_proj"]),
    "float64 positional encoding": ([("positional", "return pe.float()", "return pe")], 7,
                                    ["float32 result is expected"]),
    "block without the first residual": ([("block", "self.norm1(x + attended)", "self.norm1(attended)")], 8,
                                         ["no residual connection"]),
    "masks combined with or": ([("masks", "allowed & from_attn", "allowed | from_attn")], 4, ["not | (or)"]),
    "padding mask indexed (N, 1, S, 1)": ([("masks", "~key_padding_mask[:, None, None, :]",
                                            "~key_padding_mask[:, None, :, None]")], 4, ["m[:, None, None, :]"]),
}
ARGS = {1: ["dot_product_attention"], 2: ["split_heads", "merge_heads"], 3: ["causal_mask"], 4: ["mha_allowed_mask"],
        5: ["MultiHeadAttention"], 6: ["MultiHeadAttention"], 7: ["sinusoidal_positional_encoding"],
        8: ["EncoderBlock"]}


def _mutated(source, edits):
    ns = {}
    for cell in source.cells:
        meta = _meta(cell)
        if cell.cell_type != "code" or not (meta.get("solution") or meta.get("grade_id") in ("imports",
                                                                                              "check_mask_helper")):
            continue
        src = cell.source
        for gid, old, new in edits:
            if gid == meta["grade_id"]:
                assert old in src, (gid, old)
                src = src.replace(old, new)
        exec(compile(src, meta["grade_id"], "exec"), ns)
    return ns


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_student_sees_the_cause(mistake, source):
    edits, part, expected = MISTAKES[mistake]
    ns = _mutated(source, edits)
    with pytest.raises(CheckError) as err:
        getattr(mha_checks, f"visible_part{part}")(*(ns[name] for name in ARGS[part]))
    for text in expected:
        assert text in str(err.value), f"{mistake}: {text!r} not in\n{err.value}"


def test_the_solution_passes_every_visible_part(source):
    ns = _mutated(source, [])
    for part, names in ARGS.items():
        getattr(mha_checks, f"visible_part{part}")(*(ns[name] for name in names))


def test_a_wrong_part_costs_only_itself(source):
    # wrong attention, heads and masks: the module, its masks and the block still pass their visible tests
    ns = _mutated(source, NO_SQRT + MASKS_NOT_INVERTED + [MISTAKES["split by reshape alone"][0][0]])
    for part in (5, 6, 8):
        getattr(mha_checks, f"visible_part{part}")(*(ns[name] for name in ARGS[part]))
    # a wrong module: the block test runs on the reference module
    ns = _mutated(source, MISTAKES["Q and K blocks swapped"][0])
    mha_checks.visible_part8(ns["EncoderBlock"])


def test_the_table_of_parts(source, capsys):
    ns = _mutated(source, NO_SQRT)
    results = report_parts([(f"part {p}", lambda p=p: getattr(mha_checks, f"visible_part{p}")(
        *(ns[name] for name in ARGS[p]))) for p in ARGS])
    assert [label for label, m in results.items() if m is not None] == ["part 1"]
    assert "7 of 8 parts pass" in capsys.readouterr().out


def test_no_blanket_warning_filter(source):
    text = "\n".join(c.source for c in source.cells)
    assert "filterwarnings(\"ignore\")" not in text
