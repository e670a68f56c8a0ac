"""Synthetic sequence data with known ground truth, and a character vocabulary.

Every generator takes a ``seed`` (or a ``torch.Generator``) so that its data can be re-drawn exactly.
"""

import random

import numpy as np
import torch

__all__ = [
    "noisy_sine", "ar_process", "adding_problem", "copy_task", "reverse_task",
    "date_pairs", "number_word_pairs", "number_to_words", "Vocab", "windows", "lm_batches",
]


def _check_int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)


def _generator(seed):
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(_check_int("seed", seed, low=0))


def noisy_sine(num_steps=1000, *, period=50.0, noise=0.2, seed=0):
    """A sine wave plus Gaussian noise: x_t = sin(2 pi t / period) + noise * e_t.

    Returns (t, x, clean), each a float32 tensor of shape (num_steps,); ``clean`` is the noise-free
    signal, the ground truth that no predictor can beat by more than the noise.
    """
    num_steps = _check_int("num_steps", num_steps)
    if not period > 0:
        raise ValueError(f"period: expected a positive number, got {period!r}")
    g = _generator(seed)
    t = torch.arange(num_steps, dtype=torch.float32)
    clean = torch.sin(2 * torch.pi * t / period)
    return t, clean + noise * torch.randn(num_steps, generator=g), clean


def ar_process(coeffs, num_steps=1000, *, noise=0.1, seed=0, burn_in=100):
    """An autoregressive process x_t = sum_i coeffs[i] * x_{t-1-i} + noise * e_t with known coefficients.

    Inputs:
    - coeffs: sequence of p floats (p >= 1); the process should be stable (roots outside the unit circle).

    Returns x, a float32 tensor of shape (num_steps,).
    """
    coeffs = [float(c) for c in coeffs]
    if not coeffs:
        raise ValueError("coeffs: expected at least one coefficient, got none")
    num_steps = _check_int("num_steps", num_steps)
    g = _generator(seed)
    p = len(coeffs)
    e = noise * torch.randn(num_steps + burn_in + p, generator=g, dtype=torch.float64)
    x = torch.zeros_like(e)
    c = torch.tensor(coeffs, dtype=torch.float64)
    for t in range(p, len(x)):
        x[t] = (c * x[t - p:t].flip(0)).sum() + e[t]
    return x[-num_steps:].float()


def windows(series, tau):
    """Cut a series into (features, labels) for the fixed-window model x_t ~ f(x_{t-tau}, ..., x_{t-1}).

    Inputs:
    - series: (T,) tensor; tau: int window length, 1 <= tau < T.

    Returns features (T - tau, tau) and labels (T - tau,). Row i is x_i, ..., x_{i+tau-1}: the oldest
    value first, so a fitted weight vector w pairs w[-1] with x_{t-1} (reverse it to compare with
    ``ar_process``'s ``coeffs``, whose first entry multiplies x_{t-1}).
    """
    if not isinstance(series, torch.Tensor) or series.dim() != 1:
        raise ValueError(f"series: expected a 1-D tensor (T,), got {type(series).__name__} "
                         f"{tuple(getattr(series, 'shape', ()))}")
    tau = _check_int("tau", tau)
    if tau >= len(series):
        raise ValueError(f"tau: expected tau < T = {len(series)}, got {tau}")
    features = series.unfold(0, tau, 1)[:-1]  # (T - tau, tau)
    return features, series[tau:]


def adding_problem(batch_size, num_steps, *, seed=0):
    """The adding problem (Hochreiter & Schmidhuber, 1997).

    Each sequence has two channels: a value in [0, 1) and a marker that is 1 at exactly two
    positions, one in the first half and one in the second. The target is the sum of the two
    marked values. Predicting 1.0 always gives a mean squared error of about 1/6 ~ 0.167.

    Returns X (batch_size, num_steps, 2) and y (batch_size,), float32.
    """
    batch_size = _check_int("batch_size", batch_size)
    num_steps = _check_int("num_steps", num_steps, low=2)
    g = _generator(seed)
    values = torch.rand(batch_size, num_steps, generator=g)
    half = num_steps // 2
    first = torch.randint(0, half, (batch_size,), generator=g)
    second = torch.randint(half, num_steps, (batch_size,), generator=g)
    marker = torch.zeros(batch_size, num_steps)
    rows = torch.arange(batch_size)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    X = torch.stack([values, marker], dim=-1)  # (N, T, 2)
    y = values[rows, first] + values[rows, second]  # (N,)
    return X, y


def copy_task(batch_size, seq_len, *, vocab_size=8, delay=20, seed=0):
    """The copy-memory task: remember ``seq_len`` symbols, wait ``delay`` blanks, then reproduce them.

    Tokens: 0 = blank, 1 = "go" marker, 2 .. vocab_size + 1 = symbols.
    Input  = symbols, then delay - 1 blanks, "go", then seq_len blanks.
    Target = seq_len + delay blanks, then the symbols.
    Guessing blanks then uniform symbols gives cross-entropy
    seq_len * ln(vocab_size) / (2 * seq_len + delay) per step.

    Returns X, Y: int64 tensors (batch_size, 2 * seq_len + delay).
    """
    batch_size = _check_int("batch_size", batch_size)
    seq_len = _check_int("seq_len", seq_len)
    vocab_size = _check_int("vocab_size", vocab_size, low=2)
    delay = _check_int("delay", delay)
    g = _generator(seed)
    symbols = torch.randint(2, vocab_size + 2, (batch_size, seq_len), generator=g)
    total = 2 * seq_len + delay
    X = torch.zeros(batch_size, total, dtype=torch.long)
    Y = torch.zeros(batch_size, total, dtype=torch.long)
    X[:, :seq_len] = symbols
    X[:, seq_len + delay - 1] = 1
    Y[:, seq_len + delay:] = symbols
    return X, Y


def reverse_task(batch_size, seq_len, *, vocab_size=10, seed=0):
    """Reverse a sequence of symbols: Y[:, t] = X[:, seq_len - 1 - t].

    Returns X, Y: int64 tensors (batch_size, seq_len) with values in [0, vocab_size).
    """
    batch_size = _check_int("batch_size", batch_size)
    seq_len = _check_int("seq_len", seq_len)
    vocab_size = _check_int("vocab_size", vocab_size, low=2)
    X = torch.randint(0, vocab_size, (batch_size, seq_len), generator=_generator(seed))
    return X, X.flip(1)


_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]
_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def _ordinal(n):
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _human_date(date, rng):
    d, m, y = date.day, date.month, date.year
    month = _MONTHS[m - 1]
    formats = [
        f"{d} {month} {y}",
        f"{month} {d}, {y}",
        f"{month[:3]} {d} {y}",
        f"{d} {month[:3]} {y}",
        f"{_ordinal(d)} of {month} {y}",
        f"{_DAYS[date.weekday()]}, {month} {_ordinal(d)}, {y}",
        f"{_DAYS[date.weekday()][:3]} {d} {month[:3]} {y}",
        f"{m}/{d}/{y}",
        f"{d}.{m}.{y}",
        f"{y}/{m}/{d}",
        f"{m}/{d}/{y % 100:02d}",
    ]
    return rng.choice(formats)


def date_pairs(n, *, seed=0, start_year=1950, end_year=2049):
    """A translation-like task: dates written in many human formats -> ISO ``YYYY-MM-DD``.

    Example: ("tuesday, march 3rd, 1998", "1998-03-03"). Sources are 6 to 32 characters long;
    targets are always 10. Two-digit years are read as 19xx.

    Returns a list of n (source, target) string pairs.
    """
    import datetime

    n = _check_int("n", n)
    rng = random.Random(_check_int("seed", seed, low=0))
    first = datetime.date(start_year, 1, 1).toordinal()
    last = datetime.date(end_year, 12, 31).toordinal()
    pairs = []
    while len(pairs) < n:
        date = datetime.date.fromordinal(rng.randint(first, last))
        src = _human_date(date, rng)
        if src.endswith(f"/{date.year % 100:02d}") and date.year >= 2000:
            continue  # keep two-digit years unambiguous (19xx only)
        pairs.append((src, date.isoformat()))
    return pairs


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _below_thousand(n):
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else ""))
    elif n > 0 or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n):
    """Write a non-negative integer below 10**9 in English words.

    Example: 342107 -> 'three hundred forty-two thousand one hundred seven'.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n < 10**9:
        raise ValueError(f"n: expected an int in [0, 10**9), got {n!r}")
    n = int(n)
    if n == 0:
        return "zero"
    words = []
    for scale, name in ((10**6, "million"), (10**3, "thousand"), (1, "")):
        if n >= scale:
            words += _below_thousand(n // scale) + ([name] if name else [])
            n %= scale
    return " ".join(words)


def number_word_pairs(n, *, max_digits=6, seed=0):
    """A translation-like task with inputs of very different lengths: number in words -> digits.

    The number of digits is drawn uniformly from 1..max_digits, so sources range from 3 to about
    90 characters. Example: ("four thousand twelve", "4012"). Small numbers repeat (there are only
    10 one-digit numbers): de-duplicate before splitting off a held-out set, as
    ``utils.translation`` does.

    Returns a list of n (source, target) string pairs.
    """
    n = _check_int("n", n)
    max_digits = _check_int("max_digits", max_digits)
    if max_digits > 9:
        raise ValueError(f"max_digits: expected at most 9, got {max_digits}")
    rng = random.Random(_check_int("seed", seed, low=0))
    pairs = []
    for _ in range(n):
        digits = rng.randint(1, max_digits)
        value = rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)
        pairs.append((number_to_words(value), str(value)))
    return pairs


class Vocab:
    """A character (or token) vocabulary with optional special tokens.

    ``Vocab(text_or_tokens, specials=("<pad>", "<bos>", "<eos>"))`` maps each distinct token to an
    id, specials first (so ``<pad>`` is 0 when given), then the other tokens by frequency (most
    frequent first, ties broken alphabetically).

    - ``encode(tokens) -> list[int]``; unknown tokens raise KeyError naming the token, unless
      ``unk`` was given.
    - ``decode(ids, strip=True) -> str`` joins tokens; with ``strip`` it stops at ``<eos>`` and drops
      ``<pad>``/``<bos>``.
    """

    def __init__(self, tokens, specials=(), unk=None):
        from collections import Counter

        if isinstance(tokens, (list, tuple)) and tokens and isinstance(tokens[0], (list, tuple)):
            tokens = [t for seq in tokens for t in seq]
        counts = Counter(tokens)
        specials = list(specials) + ([unk] if unk is not None and unk not in specials else [])
        ordered = sorted((t for t in counts if t not in specials), key=lambda t: (-counts[t], t))
        self.itos = specials + ordered
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.counts = counts
        self.unk = unk

    def __len__(self):
        return len(self.itos)

    def __getitem__(self, token):
        return self.stoi[token]

    def encode(self, tokens):
        out = []
        for t in tokens:
            if t in self.stoi:
                out.append(self.stoi[t])
            elif self.unk is not None:
                out.append(self.stoi[self.unk])
            else:
                raise KeyError(f"tokens: {t!r} is not in the vocabulary ({len(self)} tokens)")
        return out

    def decode(self, ids, strip=True, sep=""):
        """ids: sequence or 1-D tensor of ids -> str, tokens joined by ``sep`` (" " for words)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            tok = self.itos[int(i)]
            if strip and tok == "<eos>":
                break
            if strip and tok in ("<pad>", "<bos>"):
                continue
            out.append(tok)
        return sep.join(out)


def lm_batches(ids, batch_size, num_steps, *, shuffle_offset=True, seed=0):
    """Cut a long token sequence into language-model batches, d2l's sequential partitioning.

    The corpus is split into ``batch_size`` contiguous streams; batch k holds positions
    [k * num_steps, (k + 1) * num_steps) of every stream, so the hidden state of one batch
    continues into the next (what truncated BPTT needs).

    Inputs:
    - ids: (L,) int64 tensor of token ids, L > batch_size * num_steps.
    - shuffle_offset: start at a random offset in [0, num_steps) so epochs see different cuts.

    Returns a list of (X, Y) pairs, each (batch_size, num_steps), Y = X shifted by one position.
    """
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        raise ValueError(f"ids: expected a 1-D tensor (L,), got {type(ids).__name__} "
                         f"{tuple(getattr(ids, 'shape', ()))}")
    batch_size = _check_int("batch_size", batch_size)
    num_steps = _check_int("num_steps", num_steps)
    offset = random.Random(seed).randrange(num_steps) if shuffle_offset else 0
    num_tokens = ((len(ids) - offset - 1) // batch_size) * batch_size
    if num_tokens < batch_size * num_steps:
        raise ValueError(f"ids: {len(ids)} tokens are too few for batch_size={batch_size} x num_steps={num_steps}")
    Xs = ids[offset:offset + num_tokens].reshape(batch_size, -1)  # (B, L/B)
    Ys = ids[offset + 1:offset + 1 + num_tokens].reshape(batch_size, -1)
    return [(Xs[:, i:i + num_steps], Ys[:, i:i + num_steps])
            for i in range(0, Xs.shape[1] - num_steps + 1, num_steps)]


__all__ += ["NGramLM"]


class NGramLM:
    """A count-based n-gram language model over token ids, with add-k smoothing.

    The model of order n predicts a token from the n - 1 tokens before it only (a fixed window of the
    past, the "fix the past timespan" view of the notes):

        P(x_t | x_{t-n+1}, ..., x_{t-1}) = (c(x_{t-n+1}, ..., x_t) + k) / (c(x_{t-n+1}, ..., x_{t-1}) + k V)

    where c counts occurrences in the training ids and V is ``vocab_size``; order 1 is the unigram model
    (the context is empty and its count is the number of training tokens). Add-k smoothing gives every
    unseen continuation the pseudo-count k, so no probability is 0 when k > 0; k is a hyperparameter
    (tune it on a validation split). The context count is taken over the same positions as the n-gram
    counts (every n-gram's first n - 1 tokens), so the probabilities over the V next tokens sum to 1.

    ``NGramLM(train_ids, order, vocab_size)``: train_ids (L,) int64 tensor with L >= order.
    ``num_distinct``: the number of distinct n-grams in the training ids (the entries the model stores).

    - ``log_probs(ids, k) -> (len(ids) - order + 1,)`` float64: log P(ids[i] | ids[i-n+1:i]) for every
      i >= order - 1 (the first order - 1 ids serve only as context).
    - ``perplexity(ids, k) -> float``: exp of minus the mean of ``log_probs(ids, k)``.
    """

    def __init__(self, train_ids, order, vocab_size):
        self.order = _check_int("order", order)
        self.vocab_size = _check_int("vocab_size", vocab_size)
        if self.vocab_size ** self.order >= 2 ** 62:
            raise ValueError(f"order: vocab_size ** order must fit in int64, got {vocab_size} ** {order}")
        train_ids = self._check_ids("train_ids", train_ids)
        grams = self._codes(train_ids, self.order)  # (L - n + 1,)
        self._grams, self._gram_counts = torch.unique(grams, return_counts=True)  # sorted codes, their counts
        self._contexts, self._context_counts = torch.unique(grams // self.vocab_size, return_counts=True)
        self.num_train = len(grams)
        self.num_distinct = len(self._grams)  # distinct n-grams seen in training: the size of the count table

    def _check_ids(self, name, ids):
        if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.int64:
            raise ValueError(f"{name}: expected a 1-D int64 tensor (L,), got {type(ids).__name__} "
                             f"{tuple(getattr(ids, 'shape', ()))} {getattr(ids, 'dtype', '')}")
        if len(ids) < self.order:
            raise ValueError(f"{name}: expected at least order={self.order} ids, got {len(ids)}")
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"{name}: ids must lie in [0, vocab_size={self.vocab_size}), "
                             f"got min {ids.min().item()}, max {ids.max().item()}")
        return ids.cpu()

    def _codes(self, ids, order):
        """One int64 code per window ids[i - order + 1 .. i], i = order - 1 .. L - 1: (L - order + 1,)."""
        codes = torch.zeros(len(ids) - order + 1, dtype=torch.int64)
        for j in range(order):
            codes = codes * self.vocab_size + ids[j:len(ids) - order + 1 + j]
        return codes

    @staticmethod
    def _lookup(keys, counts, query):
        """counts[keys == q] for every q in query (0 where q is not a key)."""
        pos = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
        return torch.where(keys[pos] == query, counts[pos], 0)

    def counts(self, ids):
        """Training counts for each position i >= order - 1 of ids: (c(n-gram), c(context)), each (L - n + 1,)."""
        ids = self._check_ids("ids", ids)
        grams = self._codes(ids, self.order)
        gram_counts = self._lookup(self._grams, self._gram_counts, grams)
        if self.order == 1:
            return gram_counts, torch.full_like(gram_counts, self.num_train)
        return gram_counts, self._lookup(self._contexts, self._context_counts, grams // self.vocab_size)

    def log_probs(self, ids, k):
        """log P(ids[i] | the order - 1 ids before it), float64, for i = order - 1 .. len(ids) - 1."""
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k < 0:
            raise ValueError(f"k: expected a number >= 0, got {k!r}")
        gram_counts, context_counts = self.counts(ids)
        return ((gram_counts.double() + k) / (context_counts.double() + k * self.vocab_size)).log()

    def perplexity(self, ids, k):
        """exp(-mean log P) over the ids that have a full context (all but the first order - 1)."""
        return torch.exp(-self.log_probs(ids, k).mean()).item()
