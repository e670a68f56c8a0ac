"""Plots used across the course: training curves, labelled heatmaps, gradient norm against time."""

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["plot_curves", "heatmap", "plot_grad_norms"]


def _to_numpy(name, x, ndim=None):
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected an array or tensor of numbers, got {type(x).__name__}") from err
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    return arr


def plot_curves(curves, *, xlabel="step", ylabel="loss", title=None, logy=False, smooth=1, ax=None):
    """Draw one or more curves (training loss, accuracy, ...) on one axis.

    Inputs:
    - curves: dict name -> sequence of numbers (T,), or a single sequence.
    - smooth: int >= 1, moving-average window applied before drawing.
    - logy: log-scale y axis.
    - ax: optional matplotlib Axes.

    Returns the Axes.
    """
    if not isinstance(curves, dict):
        curves = {ylabel: curves}
    if not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth: expected an int >= 1, got {smooth!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        y = _to_numpy(f"curves[{name!r}]", values, ndim=1)
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            x = np.arange(smooth - 1, smooth - 1 + len(y))
        else:
            x = np.arange(len(y))
        ax.plot(x, y, label=str(name))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax


def heatmap(matrix, *, xlabels=None, ylabels=None, xlabel="", ylabel="", title=None, cmap="viridis",
            vmin=None, vmax=None, colorbar=True, annotate=False, xrotation=None, ax=None):
    """Draw a 2-D matrix with labelled axes: attention weights, gate activations, encodings.

    Inputs:
    - matrix: (R, C) array or tensor; row r is drawn at height r (top to bottom).
    - xlabels: optional sequence of C tick labels; ylabels: optional sequence of R tick labels.
    - annotate: write each value in its cell (for small matrices).
    - xrotation: angle of the x tick labels (default: 90 when there are more than 8 columns, else 0;
      use 0 for single characters).
    - ax: optional matplotlib Axes.

    Returns the Axes.
    """
    m = _to_numpy("matrix", matrix, ndim=2)
    for name, labels, size in (("xlabels", xlabels, m.shape[1]), ("ylabels", ylabels, m.shape[0])):
        if labels is not None and len(labels) != size:
            raise ValueError(f"{name}: expected {size} labels for a matrix of shape {m.shape}, got {len(labels)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3, 0.35 * m.shape[1] + 2), max(2.5, 0.3 * m.shape[0] + 1.5)))
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    if xlabels is not None:
        if xrotation is None:
            xrotation = 90 if m.shape[1] > 8 else 0
        ax.set_xticks(range(m.shape[1]), [str(s) for s in xlabels], rotation=xrotation)
    if ylabels is not None:
        ax.set_yticks(range(m.shape[0]), [str(s) for s in ylabels])
    if annotate:
        for r in range(m.shape[0]):
            for c in range(m.shape[1]):
                ax.text(c, r, f"{m[r, c]:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_grad_norms(norms, *, xlabel="distance in time T - t", ylabel="gradient norm", title=None, logy=True,
                    ax=None):
    """Gradient norm against distance in time, one curve per setting.

    Inputs:
    - norms: dict label -> sequence (T,) where entry d is the norm at distance d; or one sequence.
    - logy: log-scale y axis (the default: vanishing and exploding are straight lines on it).

    Returns the Axes.
    """
    return plot_curves(norms, xlabel=xlabel, ylabel=ylabel, title=title, logy=logy, ax=ax)
