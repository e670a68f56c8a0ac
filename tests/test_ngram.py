"""utils.data.NGramLM: add-k n-gram counts checked against a brute-force count, normalisation, errors."""

import math
from collections import Counter

import pytest
import torch

from utils.data import NGramLM


def _brute_log_prob(train, order, vocab_size, k, context, token):
    """The add-k probability from Python Counters over every n-gram of train (lists of ints)."""
    grams = Counter(tuple(train[i:i + order]) for i in range(len(train) - order + 1))
    contexts = Counter(g[:-1] for g in grams.elements())
    num = grams[tuple(context) + (token,)] + k
    den = contexts[tuple(context)] + k * vocab_size
    return math.log(num / den)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_log_probs_match_brute_force_counts(order):
    g = torch.Generator().manual_seed(order)
    vocab_size = 5
    train = torch.randint(0, vocab_size, (300,), generator=g)
    test = torch.randint(0, vocab_size, (60,), generator=g)
    model = NGramLM(train, order, vocab_size)
    for k in (0.1, 1.0):
        got = model.log_probs(test, k)
        assert got.shape == (len(test) - order + 1,) and got.dtype == torch.float64
        for j, i in enumerate(range(order - 1, len(test))):
            want = _brute_log_prob(train.tolist(), order, vocab_size, k, test[i - order + 1:i].tolist(), test[i].item())
            assert abs(got[j].item() - want) < 1e-12, f"order {order}, k {k}, position {i}: {got[j].item()} != {want}"


@pytest.mark.parametrize("order", [1, 2, 3])
def test_probabilities_sum_to_one_for_every_context(order):
    g = torch.Generator().manual_seed(0)
    vocab_size = 4
    train = torch.randint(0, vocab_size, (200,), generator=g)
    model = NGramLM(train, order, vocab_size)
    contexts = {1: [[]], 2: [[0], [3]], 3: [[1, 3], [2, 2]]}[order]
    for context in contexts:
        seqs = torch.tensor([context + [v] for v in range(vocab_size)])  # (V, order)
        total = sum(model.log_probs(s, 0.3).exp().item() for s in seqs)
        assert abs(total - 1) < 1e-12, f"context {context}: probabilities sum to {total}"


def test_smoothing_and_perplexity():
    train = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    model = NGramLM(train, 2, 3)
    # With k = 0 the model is the maximum-likelihood estimate: after 0 always 1; token 2 never seen.
    assert model.log_probs(torch.tensor([0, 1]), 0).item() == 0.0
    assert model.log_probs(torch.tensor([0, 2]), 0).item() == -math.inf
    # A huge k washes the counts out: every continuation gets 1 / V, so the perplexity tends to V.
    assert abs(model.perplexity(torch.tensor([0, 1, 2, 0, 2]), 1e9) - 3) < 1e-6
    # Perplexity is exp(-mean log p).
    ids = torch.tensor([1, 0, 1, 0, 0])
    assert abs(model.perplexity(ids, 0.5) - math.exp(-model.log_probs(ids, 0.5).mean().item())) < 1e-12


def test_more_context_helps_on_a_deterministic_sequence():
    train = torch.tensor([0, 1, 2, 3] * 50)
    ppl = [NGramLM(train, order, 4).perplexity(torch.tensor([0, 1, 2, 3] * 5), 0.01) for order in (1, 2)]
    assert ppl[0] > 3.9 and ppl[1] < 1.1, ppl


def test_errors_name_the_argument():
    train = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="train_ids"):
        NGramLM(train.float(), 2, 3)
    with pytest.raises(ValueError, match="train_ids.*vocab_size"):
        NGramLM(torch.tensor([0, 5]), 2, 3)
    with pytest.raises(ValueError, match="order"):
        NGramLM(train, 0, 3)
    with pytest.raises(ValueError, match="at least order"):
        NGramLM(train, 4, 3)
    model = NGramLM(train, 2, 3)
    with pytest.raises(ValueError, match="ids: expected a 1-D"):
        model.log_probs(torch.tensor([[0, 1]]), 0.1)
    with pytest.raises(ValueError, match="k: expected a number >= 0"):
        model.log_probs(train, -1)


def test_num_distinct_counts_the_table():
    model = NGramLM(torch.tensor([0, 1, 0, 1, 2]), 2, 3)  # bigrams 01, 10, 01, 12
    assert model.num_distinct == 3 and model.num_train == 4
