"""The translation-like task of lectures 4 and 5: tokens, tensors, a fixed split, decoding, accuracy.

A task is a list of (source, target) string pairs from ``utils.data`` (numbers in words -> digits, or
human-written dates -> ISO). This module turns it into what a sequence-to-sequence model needs::

    task = make_task("numbers")                 # fixed train / held-out split, vocabularies, tensors
    task = make_task("numbers", num_val=500, max_src_len=9, num_long=500)  # + validation, longer inputs
    for src, src_len, dec_in, dec_out in task.batches(batch_size=64)(epoch=0): ...
    ids, _ = greedy_decode(step, batch_size, task.max_tgt_len)   # (B, L), stops at <eos>
    preds = task.decode_targets(ids)            # list of str
    exact_match(preds, targets); accuracy_by_length(lengths, preds, targets, edges)

Conventions: ids 0, 1, 2 are ``<pad>``, ``<bos>``, ``<eos>`` in both vocabularies. A source is a
sequence of tokens followed by ``<eos>``; a target is its characters followed by ``<eos>``; the
decoder's input is the target shifted right by one position, starting with ``<bos>`` (teacher
forcing). Every tensor is padded with ``<pad>`` (0) on the right.
"""

import math
import random
import re
from dataclasses import dataclass, field

import torch

from .data import _MONTHS, Vocab, date_pairs, number_word_pairs

__all__ = [
    "SPECIALS", "PAD", "BOS", "EOS", "tokenize", "pad_sequences", "encode_texts", "shift_right",
    "split_pairs", "TranslationTask", "make_task", "greedy_decode", "exact_match", "accuracy_by_length",
    "format_length_table", "mean_over_seeds", "date_fields",
]

SPECIALS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2

_WORD = re.compile(r"\w+|[^\w\s]")


def tokenize(text, level="word"):
    """Split ``text`` into tokens.

    - level="word": words and punctuation marks, e.g. "forty-two thousand" -> ["forty", "-", "two",
      "thousand"] (the hyphen is a token of its own, so "forty-two" shares "two" with "two").
    - level="char": one token per character, spaces included.

    Returns a list of str.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    if level == "word":
        return _WORD.findall(text)
    if level == "char":
        return list(text)
    raise ValueError(f"level: expected 'word' or 'char', got {level!r}")


def pad_sequences(seqs, pad=PAD):
    """Stack lists of ids of different lengths into one tensor, padded on the right.

    Inputs:
    - seqs: a non-empty list of N lists of ints.

    Returns ids (N, T) int64 with T the longest length, and lengths (N,) int64.
    """
    if not isinstance(seqs, (list, tuple)) or not seqs:
        raise ValueError(f"seqs: expected a non-empty list of lists of ids, got {type(seqs).__name__} "
                         f"of length {len(seqs) if hasattr(seqs, '__len__') else '?'}")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    if int(lengths.min()) == 0:
        raise ValueError(f"seqs: sequence {int(lengths.argmin())} is empty; every sequence needs a token")
    T = int(lengths.max())
    ids = torch.tensor([list(s) + [pad] * (T - len(s)) for s in seqs], dtype=torch.long)  # (N, T)
    return ids, lengths


def encode_texts(texts, vocab, level="word", *, add_eos=True):
    """Tokenise, map to ids, append ``<eos>`` and pad.

    Inputs:
    - texts: list of N str; vocab: a ``utils.data.Vocab`` with the specials ``SPECIALS`` first.
    - level: "word" or "char", see :func:`tokenize`.

    Returns ids (N, T) int64 and lengths (N,) int64 (``<eos>`` counted).
    Raises KeyError naming a token that is not in the vocabulary.
    """
    if isinstance(texts, str):
        raise TypeError("texts: expected a list of str, got one str (wrap it in a list)")
    _check_vocab(vocab)
    seqs = [vocab.encode(tokenize(t, level)) + ([EOS] if add_eos else []) for t in texts]
    return pad_sequences(seqs)


def shift_right(targets, bos=BOS):
    """The decoder's input for teacher forcing: ``<bos>`` followed by the target minus its last token.

    targets: (N, T) int64. Returns (N, T) int64 with out[:, 0] = bos and out[:, t] = targets[:, t-1].
    """
    if not isinstance(targets, torch.Tensor) or targets.dim() != 2:
        raise ValueError(f"targets: expected a 2-D tensor (N, T), got {type(targets).__name__} "
                         f"{tuple(getattr(targets, 'shape', ()))}")
    start = torch.full_like(targets[:, :1], bos)
    return torch.cat([start, targets[:, :-1]], dim=1)


def _check_vocab(vocab):
    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab: expected a utils.data.Vocab, got {type(vocab).__name__}")
    if tuple(vocab.itos[:3]) != SPECIALS:
        raise ValueError(f"vocab: expected the specials {SPECIALS} as ids 0, 1, 2, got {tuple(vocab.itos[:3])}")


def split_pairs(pairs, held_out_pairs, num_test):
    """A fixed split in which no held-out source appears in training.

    Inputs:
    - pairs: list of (source, target) for training (duplicates allowed: frequent sources repeat).
    - held_out_pairs: list of (source, target) candidates for the held-out set.
    - num_test: int, how many distinct held-out pairs to keep (in the order given).

    Returns (train, test): test has num_test pairs with distinct sources; train is ``pairs`` without
    any pair whose source is in test.
    """
    if isinstance(num_test, bool) or not isinstance(num_test, int) or num_test < 1:
        raise ValueError(f"num_test: expected an int >= 1, got {num_test!r}")
    test, seen = [], set()
    for src, tgt in held_out_pairs:
        if src not in seen:
            seen.add(src)
            test.append((src, tgt))
            if len(test) == num_test:
                break
    if len(test) < num_test:
        raise ValueError(f"num_test: only {len(test)} distinct held-out sources available, asked for {num_test}")
    train = [(s, t) for s, t in pairs if s not in seen]
    if not train:
        raise ValueError("pairs: every training pair is also held out; nothing left to train on")
    return train, test


@dataclass
class TranslationTask:
    """A fixed train / held-out split with vocabularies and padded tensors.

    - name, level: the task ("numbers" or "dates") and the source tokenisation ("word" or "char").
    - train_pairs, test_pairs: lists of (source, target) str pairs.
    - src_vocab, tgt_vocab: ``utils.data.Vocab`` with ``<pad>``, ``<bos>``, ``<eos>`` as ids 0, 1, 2.
    - train_src (N, S), train_src_len (N,), train_tgt (N, T): ids; targets end with ``<eos>``.
    - test_src (M, S'), test_src_len (M,), test_tgt (M, T').
    - max_tgt_len: the longest target in tokens, ``<eos>`` included (how long greedy decoding may run).
    - val_pairs, val_src, val_src_len, val_tgt: the validation split (empty / None unless ``num_val``).
    - long_pairs, long_src, long_src_len, long_tgt: sources longer than any in training (empty / None
      unless ``max_src_len`` and ``num_long``); max_src_len: the cap on training sources, or None.
    """

    name: str
    level: str
    train_pairs: list
    test_pairs: list
    src_vocab: Vocab
    tgt_vocab: Vocab
    train_src: torch.Tensor = field(repr=False)
    train_src_len: torch.Tensor = field(repr=False)
    train_tgt: torch.Tensor = field(repr=False)
    test_src: torch.Tensor = field(repr=False)
    test_src_len: torch.Tensor = field(repr=False)
    test_tgt: torch.Tensor = field(repr=False)
    max_tgt_len: int = 0
    val_pairs: list = field(default_factory=list)
    val_src: torch.Tensor = field(default=None, repr=False)
    val_src_len: torch.Tensor = field(default=None, repr=False)
    val_tgt: torch.Tensor = field(default=None, repr=False)
    long_pairs: list = field(default_factory=list)
    long_src: torch.Tensor = field(default=None, repr=False)
    long_src_len: torch.Tensor = field(default=None, repr=False)
    long_tgt: torch.Tensor = field(default=None, repr=False)
    max_src_len: int = None

    def pairs(self, split):
        """The (source, target) pairs of one split: "train", "val", "test" or "long"."""
        named = {"train": self.train_pairs, "val": self.val_pairs, "test": self.test_pairs, "long": self.long_pairs}
        if split not in named:
            raise ValueError(f"split: expected one of {list(named)}, got {split!r}")
        return named[split]

    def src_tokens(self, text):
        """The tokens of a source string, as the model reads them (``<eos>`` not included)."""
        return tokenize(text, self.level)

    def encode_sources(self, texts):
        """Source strings -> ids (N, S) and lengths (N,), ``<eos>`` appended."""
        return encode_texts(texts, self.src_vocab, self.level)

    def decode_targets(self, ids):
        """Target ids (N, L) (a tensor or list of lists) -> list of N str, cut at the first ``<eos>``."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 2:
                raise ValueError(f"ids: expected (N, L), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        return [self.tgt_vocab.decode(row) for row in ids]

    def batches(self, batch_size, *, seed=0, device=None, by_length=True):
        """Training minibatches, re-shuffled each epoch, for ``utils.training.train``.

        With ``by_length`` the examples are shuffled, cut into pools of 20 batches, and each pool is
        sorted by source length before it is cut into batches: batches hold sources of similar
        length, so little time is spent on padding. Each batch is trimmed to its longest source.

        Returns a callable ``batches(epoch) -> list`` of (src (B, S), src_len (B,), dec_in (B, T),
        dec_out (B, T)), where dec_in = shift_right(dec_out), on ``device``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        src, src_len, tgt = self.train_src, self.train_src_len, self.train_tgt

        def make(epoch):
            g = torch.Generator().manual_seed(seed * 100003 + epoch)
            perm = torch.randperm(len(src), generator=g)
            groups = []
            pool = batch_size * 20 if by_length else len(perm)
            for start in range(0, len(perm), pool):
                chunk = perm[start:start + pool]
                if by_length:
                    chunk = chunk[torch.argsort(src_len[chunk], stable=True)]
                groups += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
            order = torch.randperm(len(groups), generator=g).tolist()
            out = []
            for j in order:
                idx = groups[j]
                S = int(src_len[idx].max())
                dec_out = tgt[idx]  # (B, T)
                out.append((src[idx, :S].to(device), src_len[idx].to(device),
                            shift_right(dec_out).to(device), dec_out.to(device)))
            return out

        return make


def make_task(name="numbers", *, num_train=20000, num_test=1000, level=None, max_digits=6, seed=0,
              num_val=0, max_src_len=None, num_long=0):
    """Build the fixed split of a translation-like task.

    - name="numbers": ``utils.data.number_word_pairs`` (numbers in words -> digits, 1 to
      ``max_digits`` digits). The held-out set holds only numbers >= 100 (3 digits or more) whose
      words never occur in training; every number below 100 is seen in training. Default level: word.
    - name="dates": ``utils.data.date_pairs`` (human-written dates -> YYYY-MM-DD); the held-out
      sources never occur in training. Default level: char.

    Training pairs come from ``seed``, held-out candidates from ``seed + 1``: the split is the same
    on every machine. Returns a :class:`TranslationTask`.

    Optional splits (the defaults leave the task exactly as above):

    - num_val: a validation split of ``num_val`` distinct pairs drawn like the held-out ones (from
      ``seed + 2``), whose sources occur neither in training nor in the held-out (test) split. Tune
      and check on it; report the test split once.
    - max_src_len: keep only pairs whose source has at most this many tokens (at ``level``) in the
      training, validation and test splits.
    - num_long: with ``max_src_len``, a length-generalisation split ``long_pairs`` of ``num_long``
      distinct pairs (from ``seed + 3``) whose sources are longer than ``max_src_len`` tokens, hence
      longer than every training source (numbers: also >= 100, like the test split).
    """
    for arg, value in (("num_train", num_train), ("num_test", num_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg}: expected an int >= 1, got {value!r}")
    if name == "numbers":
        level = level or "word"
        if isinstance(max_digits, bool) or not isinstance(max_digits, int) or not 3 <= max_digits <= 9:
            raise ValueError(f"max_digits: expected an int in 3..9 for the numbers task (held-out numbers are "
                             f">= 100), got {max_digits!r}")
        pairs = number_word_pairs(num_train, max_digits=max_digits, seed=seed)
        candidates = [p for p in number_word_pairs(4 * num_test + 100, max_digits=max_digits, seed=seed + 1)
                      if int(p[1]) >= 100]
    elif name == "dates":
        level = level or "char"
        pairs = date_pairs(num_train, seed=seed)
        candidates = date_pairs(2 * num_test + 100, seed=seed + 1)
    else:
        raise ValueError(f"name: expected 'numbers' or 'dates', got {name!r}")
    if level not in ("word", "char"):
        raise ValueError(f"level: expected 'word' or 'char', got {level!r}")
    for arg, value in (("num_val", num_val), ("num_long", num_long)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{arg}: expected an int >= 0, got {value!r}")
    if max_src_len is not None and (isinstance(max_src_len, bool) or not isinstance(max_src_len, int)
                                    or max_src_len < 1):
        raise ValueError(f"max_src_len: expected None or an int >= 1, got {max_src_len!r}")
    if num_long and max_src_len is None:
        raise ValueError("num_long: a length-generalisation split needs max_src_len (the cap on training sources)")

    def draw(n, seed_):  # n candidate pairs drawn like the held-out ones
        if name == "numbers":
            return [p for p in number_word_pairs(n, max_digits=max_digits, seed=seed_) if int(p[1]) >= 100]
        return date_pairs(n, seed=seed_)

    def src_len(pair):
        return len(tokenize(pair[0], level))

    if max_src_len is not None:
        pairs = [p for p in pairs if src_len(p) <= max_src_len]
        candidates = [p for p in candidates if src_len(p) <= max_src_len]
    random.Random(seed).shuffle(candidates)
    train, test = split_pairs(pairs, candidates, num_test)
    val, long = [], []
    if num_val:
        taken = {s for s, _ in test}
        extra = [p for p in draw(4 * num_val + 100, seed + 2) if p[0] not in taken
                 and (max_src_len is None or src_len(p) <= max_src_len)]
        train, val = split_pairs(train, extra, num_val)
    if num_long:
        n = 8 * num_long + 100
        while True:  # longer sources are rarer: draw until there are enough distinct ones
            extra = [p for p in draw(n, seed + 3) if src_len(p) > max_src_len]
            if len({s for s, _ in extra}) >= num_long or n > 10**6:
                break
            n *= 4
        _, long = split_pairs(train, extra, num_long)
    src_vocab = Vocab([tokenize(s, level) for s, _ in train], specials=SPECIALS)
    tgt_vocab = Vocab([list(t) for _, t in train], specials=SPECIALS)
    for src, tgt in test + val + long:  # every held-out token must be known
        for tok in tokenize(src, level):
            if tok not in src_vocab.stoi:
                raise ValueError(f"held-out source {src!r} has token {tok!r} never seen in training: "
                                 "raise num_train")
        for ch in tgt:
            if ch not in tgt_vocab.stoi:
                raise ValueError(f"held-out target {tgt!r} has {ch!r} never seen in training: raise num_train")
    train_src, train_src_len = encode_texts([s for s, _ in train], src_vocab, level)
    test_src, test_src_len = encode_texts([s for s, _ in test], src_vocab, level)
    train_tgt, _ = encode_texts([t for _, t in train], tgt_vocab, "char")
    test_tgt, _ = encode_texts([t for _, t in test], tgt_vocab, "char")
    task = TranslationTask(name, level, train, test, src_vocab, tgt_vocab, train_src, train_src_len, train_tgt,
                           test_src, test_src_len, test_tgt, max(train_tgt.shape[1], test_tgt.shape[1]),
                           max_src_len=max_src_len)
    for split, split_pairs_ in (("val", val), ("long", long)):
        if split_pairs_:
            ids, lengths = encode_texts([s for s, _ in split_pairs_], src_vocab, level)
            tgt, _ = encode_texts([t for _, t in split_pairs_], tgt_vocab, "char")
            setattr(task, f"{split}_pairs", split_pairs_)
            setattr(task, f"{split}_src", ids)
            setattr(task, f"{split}_src_len", lengths)
            setattr(task, f"{split}_tgt", tgt)
            task.max_tgt_len = max(task.max_tgt_len, tgt.shape[1])
    return task


def greedy_decode(step, batch_size, max_len, *, state=None, bos=BOS, eos=EOS, pad=PAD, device=None):
    """Greedy decoding: start from ``<bos>``, append the most likely next token, stop at ``<eos>``.

    Inputs:
    - step: ``step(ys, state) -> (logits, state)`` where ys (B, t) int64 holds ``<bos>`` and the tokens
      emitted so far, and logits (B, V) score the next token. ``state`` is whatever the model carries
      between steps (an RNN's hidden state, a Transformer's encoder output, recorded attention...).
    - batch_size: int B; max_len: int >= 1, the most tokens to emit (``<eos>`` included).
    - state: the initial state handed to the first call.

    Returns (ids, state): ids (B, L) int64, L <= max_len, without the leading ``<bos>``; a row stops
    at its first ``<eos>`` and is padded with ``pad`` after it. Stops early once every row has
    emitted ``<eos>``.
    """
    if not callable(step):
        raise TypeError(f"step: expected a callable step(ys, state) -> (logits, state), got {type(step).__name__}")
    for arg, value in (("batch_size", batch_size), ("max_len", max_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg}: expected an int >= 1, got {value!r}")
    ys = torch.full((batch_size, 1), bos, dtype=torch.long, device=device)  # (B, 1)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)  # (B,)
    for _ in range(max_len):
        logits, state = step(ys, state)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != batch_size:
            raise ValueError(f"step: expected logits of shape (B={batch_size}, V), got "
                             f"{tuple(getattr(logits, 'shape', ()))}")
        nxt = logits.argmax(-1).masked_fill(done, pad)  # (B,)
        ys = torch.cat([ys, nxt[:, None]], dim=1)  # (B, t + 1)
        done = done | (nxt == eos)
        if bool(done.all()):
            break
    return ys[:, 1:], state


def exact_match(preds, targets):
    """The fraction of predictions equal to their target string (both lists of N str). Returns a float."""
    if len(preds) != len(targets):
        raise ValueError(f"preds: expected {len(targets)} predictions (one per target), got {len(preds)}")
    if not targets:
        raise ValueError("targets: expected at least one target, got none")
    return sum(p == t for p, t in zip(preds, targets)) / len(targets)


def accuracy_by_length(lengths, preds, targets, edges):
    """Exact-match accuracy in buckets of input length.

    Inputs:
    - lengths: N ints (e.g. the number of source tokens); preds, targets: N str each.
    - edges: increasing ints [e_0, e_1, ..., e_K]; bucket k holds lengths in [e_k, e_{k+1}).

    Returns a list of K dicts {"bucket": "lo-(hi-1)" (or "lo" for a single length), "lo", "hi", "n",
    "acc"} (acc is nan for an empty bucket). Lengths outside [e_0, e_K) are not counted.
    """
    if not (len(lengths) == len(preds) == len(targets)):
        raise ValueError(f"lengths, preds, targets: expected equal lengths, got {len(lengths)}, {len(preds)}, "
                         f"{len(targets)}")
    edges = [int(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges: expected at least two strictly increasing ints, got {edges}")
    rows = []
    for lo, hi in zip(edges, edges[1:]):
        hits = [p == t for n, p, t in zip(lengths, preds, targets) if lo <= n < hi]
        rows.append({"bucket": f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}", "lo": lo, "hi": hi, "n": len(hits),
                     "acc": sum(hits) / len(hits) if hits else float("nan")})
    return rows


def mean_over_seeds(runs):
    """Average the tables of several runs (seeds) of one model.

    runs: a list of K >= 1 lists returned by :func:`accuracy_by_length` with the same edges.
    Returns one list of the same dicts, with "acc" the mean over the runs, "sd" their sample standard
    deviation (0 for one run), "accs" the K values.
    """
    if not runs:
        raise ValueError("runs: expected at least one run, got none")
    for k, rows in enumerate(runs[1:], 1):
        if [r["bucket"] for r in rows] != [r["bucket"] for r in runs[0]]:
            raise ValueError(f"runs[{k}]: buckets differ from those of runs[0]")
    out = []
    for i, row in enumerate(runs[0]):
        accs = [rows[i]["acc"] for rows in runs]
        mean = sum(accs) / len(accs)
        sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
        out.append({**row, "acc": mean, "sd": sd, "accs": accs})
    return out


def format_length_table(results, unit="tokens", *, spread=False):
    """A printable table of accuracy by length for several models.

    results: dict model name -> the list returned by :func:`accuracy_by_length` (same edges).
    spread: also print each row's "sd" (from :func:`mean_over_seeds`) as "mean ± sd".
    Returns a str.
    """
    if not results:
        raise ValueError("results: expected at least one model, got none")
    names = list(results)
    first = results[names[0]]
    for name in names[1:]:
        if [r["bucket"] for r in results[name]] != [r["bucket"] for r in first]:
            raise ValueError(f"results[{name!r}]: buckets differ from those of {names[0]!r}")
    width = max(12, *(len(n) for n in names))

    def cell(row):
        return f"{row['acc']:.3f} ± {row['sd']:.3f}" if spread else f"{row['acc']:.3f}"

    head = f"{'input ' + unit:>14} {'n':>5} " + " ".join(f"{n:>{width}}" for n in names)
    lines = [head]
    for k, row in enumerate(first):
        accs = " ".join(f"{cell(results[n][k]):>{width}}" for n in names)
        lines.append(f"{row['bucket']:>14} {row['n']:>5} {accs}")
    return "\n".join(lines)


_MONTH_WORDS = set(_MONTHS) | {m[:3] for m in _MONTHS}


def date_fields(source):
    """Which part of the date each character of a ``utils.data.date_pairs`` source writes.

    Example: "tue 3 mar 1998" -> ["", "", "", "", "day", "", "month", "month", "month", "", "year", ...].
    Labels are "year", "month", "day" or "" (weekday, "of", spaces, separators). Ordinal suffixes
    ("3rd") belong to the day. Numeric formats are read as the data writes them: "y/m/d" when the
    first number has 4 digits, "d.m.y" with dots, else "m/d/y" (the year with 4 or 2 digits).

    Returns a list of len(source) str.
    """
    if not isinstance(source, str):
        raise TypeError(f"source: expected a str, got {type(source).__name__}")
    labels = [""] * len(source)
    numbers = list(re.finditer(r"\d+", source))
    if re.fullmatch(r"\d+[/.]\d+[/.]\d+", source):
        if len(numbers[0].group()) == 4:
            order = ("year", "month", "day")
        elif "." in source:
            order = ("day", "month", "year")
        else:
            order = ("month", "day", "year")
        for match, name in zip(numbers, order):
            labels[match.start():match.end()] = [name] * (match.end() - match.start())
        return labels
    for match in re.finditer(r"\d+(?:st|nd|rd|th)?|[a-z]+", source):
        word = match.group()
        if word[0].isdigit():
            name = "year" if word.isdigit() and len(word) == 4 else "day"
        else:
            name = "month" if word in _MONTH_WORDS else ""
        labels[match.start():match.end()] = [name] * (match.end() - match.start())
    return labels
