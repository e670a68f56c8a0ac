"""A small training loop shared by the lectures and the assignments."""

import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .runtime import in_grading

__all__ = ["History", "train", "grad_norm"]


@dataclass
class History:
    """What a training run leaves behind.

    - loss:      list of float, the training loss after each step
    - grad_norm: list of float, the global gradient norm before clipping, each step
    - evals:     list of (step, dict) pairs returned by the evaluation callback
    - seconds:   wall-clock seconds the run took
    """

    loss: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    seconds: float = 0.0

    def last_eval(self, key):
        """The most recent value of ``key`` returned by the evaluation callback."""
        for _, metrics in reversed(self.evals):
            if key in metrics:
                return metrics[key]
        raise KeyError(f"key: no evaluation recorded {key!r}; recorded keys: {self._eval_keys()}")

    def _eval_keys(self):
        return sorted({k for _, m in self.evals for k in m})


def grad_norm(parameters):
    """Global L2 norm of the gradients of ``parameters`` (an iterable of tensors); 0.0 if none."""
    norms = [p.grad.detach().norm() for p in parameters if p.grad is not None]
    if not norms:
        return 0.0
    return torch.stack(norms).norm().item()


def train(model, batches, step_fn, optimizer, *, num_epochs=1, max_steps=None, clip_norm=None,
          eval_fn=None, eval_every=None, progress=None, desc="train"):
    """Train ``model`` and return a :class:`History`.

    Inputs:
    - model: torch.nn.Module (put in train mode for each step, eval mode for evaluation).
    - batches: an iterable of batches, or a callable ``batches(epoch) -> iterable`` (for data that
      is re-drawn each epoch). A batch is whatever ``step_fn`` accepts.
    - step_fn: ``step_fn(model, batch) -> loss``, a scalar tensor to minimise.
    - optimizer: a torch.optim.Optimizer over the model's parameters.
    - num_epochs: int >= 1, passes over ``batches``.
    - max_steps: optional int, stop after this many optimiser steps.
    - clip_norm: optional float, clip the global gradient norm to this value.
    - eval_fn: optional ``eval_fn(model) -> dict`` of metrics, run without gradients in eval mode
      every ``eval_every`` steps and at the end.
    - progress: show a tqdm progress bar; default: yes, except under nbgrader autograde.
    - desc: label of the progress bar.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not callable(step_fn):
        raise TypeError(f"step_fn: expected a callable step_fn(model, batch) -> loss, got {type(step_fn).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs: expected an int >= 1, got {num_epochs!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps: expected None or an int >= 1, got {max_steps!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm: expected None or a positive number, got {clip_norm!r}")
    if eval_every is not None and eval_fn is None:
        raise ValueError("eval_every: given without eval_fn")
    if progress is None:
        progress = not in_grading()

    history = History()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = max_steps
    if total is None and not callable(batches) and hasattr(batches, "__len__"):
        total = num_epochs * len(batches)
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=True)
    start = time.perf_counter()

    def evaluate(step):
        model.eval()
        with torch.no_grad():
            metrics = dict(eval_fn(model))
        model.train()
        history.evals.append((step, metrics))
        bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))})

    step = 0
    done = False
    model.train()
    for epoch in range(num_epochs):
        for batch in (batches(epoch) if callable(batches) else batches):
            loss = step_fn(model, batch)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise ValueError("step_fn: must return a scalar tensor (shape ()), got "
                                 f"{type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            history.grad_norm.append(grad_norm(params))
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            optimizer.step()
            step += 1
            value = loss.item()
            history.loss.append(value)
            bar.update(1)
            bar.set_description(f"{desc} loss {value:.4f}" if math.isfinite(value) else f"{desc} loss {value}")
            if eval_every and step % eval_every == 0:
                evaluate(step)
            if max_steps is not None and step >= max_steps:
                done = True
                break
        if done:
            break
    if eval_fn is not None and (not history.evals or history.evals[-1][0] != step):
        evaluate(step)
    bar.close()
    history.seconds = time.perf_counter() - start
    return history
