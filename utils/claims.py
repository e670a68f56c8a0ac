"""The numbers a lecture's text quotes, checked in every fresh run, with the tolerance another machine needs.

A trained model's accuracy differs in its last digits from one machine to another: PyTorch picks its
CPU kernels by the processor's vector instructions (AVX-512, AVX2 or none), their floating-point
roundings differ, and training amplifies the difference (a seed at 0.955 on one machine ends at 0.956 on
another; a seed near a threshold crosses it). So a lecture does not ask CI to compare such numbers as
text (``# NBVAL_CHECK_OUTPUT`` is kept for outputs that are the same on every machine); it prints them,
and checks the ones its text relies on here::

    near("dates, test exact match", dates_test_acc, quoted=0.85, tol=0.05)
    holds("layer norm ahead on every seed", bool((with_norm > without_norm).all()))

Each check prints one line, or raises ``AssertionError`` that names the number, how far it moved and
what to do: re-read the sentences that quote it. A tolerance is chosen from the spread between seeds
(another machine's run of one seed moves about as far as another seed would), and the notebook says so.
"""

__all__ = ["near", "holds"]


def near(name, value, quoted, tol):
    """Check that ``value`` is within ``tol`` of the number the text quotes.

    Inputs:
    - name: what the number is, as the text calls it ("dates, test exact match").
    - value: the number this run computed (a float, or a one-element tensor).
    - quoted: the number the text quotes.
    - tol: the largest |value - quoted| that leaves the text true, > 0.

    Prints ``name: value (the text: quoted ± tol)``; raises ``AssertionError`` when it is further away.
    """
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol > 0:
        raise ValueError(f"tol: expected a positive number, got {tol!r}")
    value = float(value)
    if not abs(value - quoted) <= tol:  # also catches NaN
        raise AssertionError(
            f"{name}: this run gives {value:.4g}, the text quotes {quoted:g} (± {tol:g} allowed, off by "
            f"{abs(value - quoted):.3g}): a change moved the result; re-read the sentences that quote it")
    print(f"{name}: {value:.3f} (the text: {quoted:g} ± {tol:g})")


def holds(name, condition):
    """Check a claim of the text that this run's numbers must bear out.

    Inputs:
    - name: the claim, as a sentence ("layer norm ahead on every seed").
    - condition: a bool computed from this run's numbers.

    Prints ``name: yes``; raises ``AssertionError`` when the condition is false.
    """
    if not isinstance(condition, bool):
        raise TypeError(f"condition: expected a bool, got {type(condition).__name__} (wrap it in bool(...))")
    if not condition:
        raise AssertionError(f"{name}: not so in this run: re-read the sentences that claim it")
    print(f"{name}: yes")
