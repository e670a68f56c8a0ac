"""Unit tests for utils.translation (the task of lectures 4 and 5), bad input included."""

import math

import pytest
import torch

from utils import translation as tr
from utils.data import Vocab, number_to_words


@pytest.fixture(scope="module")
def task():
    return tr.make_task("numbers", num_train=3000, num_test=200, seed=0)


def test_tokenize_words_and_chars():
    assert tr.tokenize("forty-two thousand") == ["forty", "-", "two", "thousand"]
    assert tr.tokenize("march 3rd, 1998") == ["march", "3rd", ",", "1998"]
    assert tr.tokenize("ab c", "char") == ["a", "b", " ", "c"]
    with pytest.raises(ValueError, match="level"):
        tr.tokenize("ab", "byte")
    with pytest.raises(TypeError, match="text"):
        tr.tokenize(["ab"])


def test_pad_sequences_and_errors():
    ids, lengths = tr.pad_sequences([[5, 6, 7], [8]])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    assert ids.dtype == torch.long
    with pytest.raises(ValueError, match="empty"):
        tr.pad_sequences([[1], []])
    with pytest.raises(ValueError, match="non-empty"):
        tr.pad_sequences([])


def test_encode_texts_appends_eos_and_checks_vocab():
    v = Vocab([["one", "two"]], specials=tr.SPECIALS)
    ids, lengths = tr.encode_texts(["one two", "two"], v)
    assert ids.shape == (2, 3) and lengths.tolist() == [3, 2]
    assert ids[0, -1] == tr.EOS and ids[1, 1] == tr.EOS and ids[1, 2] == tr.PAD
    with pytest.raises(KeyError, match="three"):
        tr.encode_texts(["three"], v)
    with pytest.raises(TypeError, match="one str"):
        tr.encode_texts("one", v)
    with pytest.raises(ValueError, match="specials"):
        tr.encode_texts(["one"], Vocab(["one"]))


def test_shift_right():
    y = torch.tensor([[5, 6, 2], [7, 2, 0]])
    assert tr.shift_right(y).tolist() == [[1, 5, 6], [1, 7, 2]]
    with pytest.raises(ValueError, match="targets"):
        tr.shift_right(torch.tensor([1, 2]))


def test_split_keeps_held_out_sources_out_of_training():
    pairs = [("a", "1"), ("b", "2"), ("a", "1"), ("c", "3")]
    train, test = tr.split_pairs(pairs, [("a", "1"), ("a", "1"), ("d", "4")], 2)
    assert test == [("a", "1"), ("d", "4")] and train == [("b", "2"), ("c", "3")]
    with pytest.raises(ValueError, match="only 1 distinct"):
        tr.split_pairs(pairs, [("a", "1")], 2)
    with pytest.raises(ValueError, match="num_test"):
        tr.split_pairs(pairs, [("a", "1")], 0)


def test_make_task_is_fixed_disjoint_and_consistent(task):
    again = tr.make_task("numbers", num_train=3000, num_test=200, seed=0)
    assert again.test_pairs == task.test_pairs and torch.equal(again.train_src, task.train_src)
    train_sources = {s for s, _ in task.train_pairs}
    assert not train_sources & {s for s, _ in task.test_pairs}
    assert len({s for s, _ in task.test_pairs}) == 200
    assert all(int(t) >= 100 and number_to_words(int(t)) == s for s, t in task.test_pairs)
    assert task.src_vocab.itos[:3] == list(tr.SPECIALS) == task.tgt_vocab.itos[:3]
    # tensors match the pairs: decode a source row and a target row back
    row = task.train_src[0, :task.train_src_len[0] - 1]
    assert [task.src_vocab.itos[i] for i in row] == task.src_tokens(task.train_pairs[0][0])
    assert task.decode_targets(task.test_tgt[:3]) == [t for _, t in task.test_pairs[:3]]
    assert task.max_tgt_len == 7  # six digits + <eos>


def test_make_task_dates_and_bad_arguments():
    dates = tr.make_task("dates", num_train=500, num_test=50)
    assert dates.level == "char" and dates.max_tgt_len == 11
    with pytest.raises(ValueError, match="name"):
        tr.make_task("poems")
    with pytest.raises(ValueError, match="level"):
        tr.make_task("numbers", num_train=100, num_test=10, level="byte")
    with pytest.raises(ValueError, match="max_digits"):
        tr.make_task("numbers", max_digits=2)
    with pytest.raises(ValueError, match="num_train"):
        tr.make_task("numbers", num_train=0)


def test_batches_are_trimmed_shuffled_and_cover_the_data(task):
    make = task.batches(32, seed=1)
    first, again, second = make(0), make(0), make(1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], second[0][0])
    assert sum(len(b[1]) for b in first) == len(task.train_src)
    for src, src_len, dec_in, dec_out in first:
        assert src.shape == (len(src_len), int(src_len.max()))
        assert torch.equal(dec_in, tr.shift_right(dec_out))
    with pytest.raises(ValueError, match="batch_size"):
        task.batches(0)


def test_greedy_decode_stops_at_eos_and_pads():
    script = torch.tensor([[5, 6, tr.EOS, 7], [tr.EOS, 5, 5, 5]])  # what each row "wants" to emit

    def step(ys, state):
        logits = torch.full((2, 8), -1.0)
        t = ys.shape[1] - 1
        logits[torch.arange(2), script[:, t]] = 1.0
        return logits, state + 1

    ids, calls = tr.greedy_decode(step, 2, 10, state=0)
    assert ids.tolist() == [[5, 6, tr.EOS], [tr.EOS, tr.PAD, tr.PAD]]
    assert calls == 3  # stopped as soon as both rows were done
    ids, _ = tr.greedy_decode(step, 2, 2, state=0)
    assert ids.shape == (2, 2)
    with pytest.raises(ValueError, match="logits"):
        tr.greedy_decode(lambda ys, s: (torch.zeros(3, 4), s), 2, 5)
    with pytest.raises(ValueError, match="max_len"):
        tr.greedy_decode(step, 2, 0)


def test_exact_match_and_accuracy_by_length():
    preds, targets = ["12", "7", "300", "45"], ["12", "8", "300", "45"]
    assert tr.exact_match(preds, targets) == 0.75
    rows = tr.accuracy_by_length([1, 2, 5, 9], preds, targets, [1, 3, 6, 8, 9])
    assert [r["bucket"] for r in rows] == ["1-2", "3-5", "6-7", "8"]
    assert [r["n"] for r in rows] == [2, 1, 0, 0]
    assert rows[0]["acc"] == 0.5 and rows[1]["acc"] == 1.0 and math.isnan(rows[2]["acc"])
    table = tr.format_length_table({"plain": rows, "attention": rows})
    assert "plain" in table and "3-5" in table
    with pytest.raises(ValueError, match="predictions"):
        tr.exact_match(["1"], ["1", "2"])
    with pytest.raises(ValueError, match="edges"):
        tr.accuracy_by_length([1], ["1"], ["1"], [3, 3])
    with pytest.raises(ValueError, match="buckets differ"):
        tr.format_length_table({"a": rows, "b": rows[:2]})
