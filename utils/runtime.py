"""Reproducibility and device choice."""

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "get_device", "in_grading"]


def seed_everything(seed=0):
    """Seed Python, NumPy and PyTorch (CPU and every GPU) so a run can be repeated.

    Inputs:
    - seed: int, >= 0.

    Returns a ``torch.Generator`` seeded with ``seed``, handy for data generators.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def get_device(prefer=None):
    """Pick the device to train on: ``cuda`` when a GPU is present, else ``cpu``.

    Inputs:
    - prefer: optional str or torch.device ("cpu", "cuda", "cuda:1"); the environment variable
      ``COURSE_DEVICE`` overrides the automatic choice when ``prefer`` is None.

    Returns a ``torch.device``.
    """
    choice = prefer if prefer is not None else os.environ.get("COURSE_DEVICE")
    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"prefer: expected a device such as 'cpu' or 'cuda', got {choice!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"prefer: {choice!r} was asked for, but no CUDA device is available")
    return device


def in_grading():
    """True while nbgrader executes the notebook (it sets ``NBGRADER_EXECUTION``).

    Notebooks use it to shorten training under autograde.
    """
    return bool(os.environ.get("NBGRADER_EXECUTION"))
