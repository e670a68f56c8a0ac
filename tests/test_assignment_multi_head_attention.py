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

from utils import grading

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
    scores = _scores(graded["masksign"])
    lost = {"test_masks", "test_mha_masked", "test_positional", "test_block"}  # the block test pads keys
    assert {gid for gid in lost if scores[gid] == 0} == lost, scores
    kept = {"test_attention", "test_heads", "test_causal", "test_mha"}
    assert {gid for gid in kept if scores[gid] == POINTS[gid]} == kept, scores


def test_attention_without_sqrt_dk_loses_its_parts(graded):
    scores = _scores(graded["nosqrt"])
    lost = {"test_attention", "test_mha", "test_mha_masked", "test_block"}  # all use part 1
    assert {gid for gid in lost if scores[gid] == 0} == lost, scores
    kept = {"test_heads", "test_causal", "test_masks", "test_positional"}
    assert {gid for gid in kept if scores[gid] == POINTS[gid]} == kept, scores


def test_cells_and_points_table_agree(source):
    tests = [(_meta(c)["grade_id"], _meta(c)["points"]) for c in source.cells
             if _meta(c).get("grade") and not _meta(c).get("solution")]
    assert dict(tests) == POINTS and [g for g, _ in tests] == list(POINTS)
    written = {_meta(c)["grade_id"]: _meta(c)["points"] for c in source.cells
               if c.cell_type == "markdown" and _meta(c).get("grade")}
    assert written == WRITTEN
    ids = [_meta(c).get("grade_id") for c in source.cells]
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
