"""Tests of the optional splits of utils.translation.make_task (validation, longer inputs) and of
mean_over_seeds: lecture 4 tunes on validation, reports the test split once and measures length
generalisation on sources longer than any seen in training."""

import math

import pytest
import torch

from utils import translation as tr
from utils.data import date_pairs


@pytest.fixture(scope="module")
def default():
    return tr.make_task("numbers", num_train=3000, num_test=200, seed=0)


@pytest.fixture(scope="module")
def split():
    return tr.make_task("numbers", num_train=3000, num_test=200, seed=0, num_val=100, max_src_len=9, num_long=50)


def sources(pairs):
    return {s for s, _ in pairs}


def test_defaults_leave_the_task_unchanged(default):
    again = tr.make_task("numbers", num_train=3000, num_test=200, seed=0, num_val=0, max_src_len=None, num_long=0)
    assert again.train_pairs == default.train_pairs and again.test_pairs == default.test_pairs
    assert default.val_pairs == [] and default.long_pairs == [] and default.val_src is None
    assert default.max_src_len is None and default.max_tgt_len == 7


def test_validation_is_disjoint_from_training_and_test(default):
    task = tr.make_task("numbers", num_train=3000, num_test=200, seed=0, num_val=100)
    assert task.test_pairs == default.test_pairs  # the test split does not move when a validation split is added
    assert len(task.val_pairs) == len(sources(task.val_pairs)) == 100
    assert not sources(task.val_pairs) & sources(task.test_pairs)
    assert not sources(task.val_pairs) & sources(task.train_pairs)
    assert all(int(t) >= 100 for _, t in task.val_pairs)
    # training lost exactly the pairs whose source went to validation
    assert len(task.train_pairs) == sum(s not in sources(task.val_pairs) for s, _ in default.train_pairs)
    assert task.decode_targets(task.val_tgt[:5]) == [t for _, t in task.val_pairs[:5]]
    row = task.val_src[0, :task.val_src_len[0] - 1]
    assert [task.src_vocab.itos[i] for i in row] == task.src_tokens(task.val_pairs[0][0])
    assert task.pairs("val") is task.val_pairs and task.pairs("train") is task.train_pairs


def test_long_split_is_longer_than_every_training_source(split):
    def lengths(name):
        return [len(split.src_tokens(s)) for s, _ in split.pairs(name)]

    assert split.max_src_len == 9
    for name in ("train", "val", "test"):
        assert max(lengths(name)) <= 9, name
    assert len(split.long_pairs) == len(sources(split.long_pairs)) == 50
    assert min(lengths("long")) > max(lengths("train"))
    assert not sources(split.long_pairs) & sources(split.train_pairs)
    assert all(int(t) >= 100 for _, t in split.long_pairs)
    assert split.long_src.shape[0] == 50 and int(split.long_src_len.min()) == min(lengths("long")) + 1  # + <eos>
    # training sources fit the cap: the encoded tensor is no wider than max_src_len + <eos>
    assert split.train_src.shape[1] <= 10


def test_dates_with_validation_and_long_split():
    task = tr.make_task("dates", num_train=2000, num_test=100, num_val=50, max_src_len=20, num_long=30)
    assert task.level == "char" and len(task.val_pairs) == 50 and len(task.long_pairs) == 30
    assert max(len(s) for s, _ in task.train_pairs) <= 20 < min(len(s) for s, _ in task.long_pairs)
    assert not sources(task.val_pairs) & (sources(task.train_pairs) | sources(task.test_pairs))


def test_bad_split_arguments():
    with pytest.raises(ValueError, match="num_val"):
        tr.make_task("numbers", num_train=100, num_test=10, num_val=-1)
    with pytest.raises(ValueError, match="max_src_len"):
        tr.make_task("numbers", num_train=100, num_test=10, max_src_len=0)
    with pytest.raises(ValueError, match="num_long"):
        tr.make_task("numbers", num_train=100, num_test=10, num_long=5)
    with pytest.raises(ValueError, match="split"):
        tr.make_task("numbers", num_train=100, num_test=10).pairs("dev")


def test_date_fields_recover_the_date_from_every_format():
    months = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
              "october", "november", "december"]
    assert tr.date_fields("tue 3 mar 1998") == [""] * 4 + ["day", ""] + ["month"] * 3 + [""] + ["year"] * 4
    assert tr.date_fields("12.3.1989")[:3] == ["day", "day", ""]
    assert tr.date_fields("1950/3/16")[-2:] == ["day", "day"]
    for src, tgt in date_pairs(3000, seed=5):
        labels = tr.date_fields(src)
        assert len(labels) == len(src)
        part = {name: "".join(c for c, lab in zip(src, labels) if lab == name) for name in ("year", "month", "day")}
        year = int(part["year"]) + (1900 if len(part["year"]) == 2 else 0)
        month = int(part["month"]) if part["month"].isdigit() else 1 + [m[:3] for m in months].index(part["month"][:3])
        day = int(part["day"].rstrip("stndrh"))
        assert f"{year:04d}-{month:02d}-{day:02d}" == tgt, (src, labels)
    with pytest.raises(TypeError, match="source"):
        tr.date_fields(["3.3.1998"])


def test_mean_over_seeds_and_spread_table():
    preds, targets = ["1", "2", "3", "4"], ["1", "2", "3", "4"]
    a = tr.accuracy_by_length([1, 1, 3, 3], preds, targets, [1, 3, 5])
    b = tr.accuracy_by_length([1, 1, 3, 3], ["1", "x", "3", "x"], targets, [1, 3, 5])
    rows = tr.mean_over_seeds([a, b])
    assert [r["acc"] for r in rows] == [0.75, 0.75]
    assert math.isclose(rows[0]["sd"], math.sqrt(0.125)) and rows[0]["accs"] == [1.0, 0.5]
    assert tr.mean_over_seeds([a])[0]["sd"] == 0.0
    table = tr.format_length_table({"model": rows}, spread=True)
    assert "0.750 ± 0.354" in table
    assert "±" not in tr.format_length_table({"model": a})  # the default table is unchanged
    with pytest.raises(ValueError, match="runs"):
        tr.mean_over_seeds([])
    with pytest.raises(ValueError, match=r"runs\[1\]"):
        tr.mean_over_seeds([a, a[:1]])
    assert torch.tensor([r["n"] for r in rows]).tolist() == [2, 2]
