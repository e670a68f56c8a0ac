"""A small training loop shared by the lectures and the assignments.

:func:`train` can save a checkpoint every N steps and resume from it, so that a run cut off (a Colab
runtime disconnect, a closed laptop) continues where it stopped and ends exactly where an uninterrupted
run would have ended. See the ``checkpoint`` argument of :func:`train`.
"""

import hashlib
import math
import os
import random
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
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
          eval_fn=None, eval_every=None, progress=None, desc="train", checkpoint=None,
          checkpoint_every=None, extra_state=None):
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
    - progress: show a tqdm progress bar; default: yes, except under nbgrader autograde or with the
      environment variable COURSE_PROGRESS=0.
    - desc: label of the progress bar.
    - checkpoint: optional path of a checkpoint file. If the file exists, training resumes from it;
      the run saves to it every ``checkpoint_every`` steps and once more when it stops (before the
      final evaluation). Rerunning a finished cell therefore loads the trained model and does no steps.
    - checkpoint_every: optional int >= 1, save every this many optimiser steps (needs ``checkpoint``).
    - extra_state: optional dict that ``step_fn`` keeps between batches (e.g. a hidden state carried
      from one batch to the next); it is saved with the checkpoint and restored in place on resume.

    A checkpoint holds the model's and the optimiser's ``state_dict``, the step, the position in the
    data (epoch and batches consumed), the history so far, ``extra_state`` and the random states of
    torch (CPU and every GPU), NumPy and Python's ``random``, both now and at the start of the epoch.
    It is written to a temporary file in the same folder and moved over the old one (``os.replace``),
    so a run killed while saving leaves the previous checkpoint intact. It is a pickle: load only
    checkpoints you wrote.

    Resuming is exact (same losses, parameters and history as a run never interrupted) when:
    - ``batches`` can be replayed: a list (or any re-iterable such as a DataLoader), or a callable
      ``batches(epoch)`` that returns the same batches whenever it is called with the same epoch and
      the same random state. On resume the epoch's iterable is re-created with the random state of
      the epoch's start, the batches already trained on are drawn again and skipped, and then the
      random state of the checkpoint is restored. A generator or iterator cannot be replayed and is
      refused. A lazy generator that draws random numbers while ``step_fn`` also draws them (dropout)
      gets different batches on replay; the replayed last batch is compared with the one trained on
      (a hash) and a mismatch raises ``ValueError``: draw an epoch's randomness when ``batches(epoch)``
      is called (a permutation, or a ``torch.Generator`` seeded by the epoch).
    - all state that ``step_fn``, ``eval_fn`` and ``batches`` keep between calls is in the model, the
      optimiser, ``extra_state`` or the global random generators (a learning-rate scheduler stepped
      inside ``step_fn`` is not saved).
    - the machine and device are the same (a GPU run resumed on the CPU continues, with a warning,
      but is not bit-for-bit the same).
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
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint: expected None or a file path, got {type(checkpoint).__name__}")
    if checkpoint_every is not None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every: expected None or an int >= 1, got {checkpoint_every!r}")
        if checkpoint is None:
            raise ValueError("checkpoint_every: given without checkpoint (the file to save to)")
    if extra_state is not None and not isinstance(extra_state, dict):
        raise TypeError(f"extra_state: expected None or a dict, got {type(extra_state).__name__}")
    if checkpoint is not None and not callable(batches) and iter(batches) is batches:
        raise TypeError(
            f"batches: a {type(batches).__name__} (generator or iterator) cannot be replayed, so training "
            "cannot resume from a checkpoint; pass a list or a callable batches(epoch) that re-creates "
            "the epoch's batches")
    if progress is None:  # COURSE_PROGRESS=0 turns the bars off (the test suite does, see conftest.py)
        progress = not in_grading() and os.environ.get("COURSE_PROGRESS", "1") != "0"

    history = History()
    step = 0
    resume = None
    if checkpoint is not None and os.path.exists(checkpoint):
        resume = _load_checkpoint(checkpoint)
        step = resume["step"]
        if max_steps is not None and step > max_steps:
            raise ValueError(f"checkpoint: {os.fspath(checkpoint)!r} holds step {step}, past max_steps={max_steps}; "
                             "delete the file or pass another path to train afresh")
        try:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise ValueError(f"checkpoint: {os.fspath(checkpoint)!r} was saved from a different model or "
                             f"optimiser: {err}") from err
        saved = resume["history"]
        history = History(loss=list(saved["loss"]), grad_norm=list(saved["grad_norm"]),
                          evals=list(saved["evals"]), seconds=saved["seconds"])
        if "cuda" in resume["rng"] and not torch.cuda.is_available():
            warnings.warn("checkpoint: saved on a GPU and resumed without one; training continues, but not "
                          "bit-for-bit as the uninterrupted run would", stacklevel=2)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = max_steps
    if total is None and not callable(batches) and hasattr(batches, "__len__"):
        total = num_epochs * len(batches)
    # At most one redraw a second: in Jupyter each redraw is a message to the front end, and a long cell
    # that sends thousands of them can overflow the kernel's output queue (nbval then waits for an output
    # that was dropped).
    bar = tqdm(total=total, initial=step, desc=desc, disable=not progress, leave=True, mininterval=1.0)
    start = time.perf_counter()
    seconds_before = history.seconds

    def evaluate(step):
        model.eval()
        with torch.no_grad():
            metrics = dict(eval_fn(model))
        model.train()
        history.evals.append((step, metrics))
        bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))})

    done = max_steps is not None and step >= max_steps
    saved_step = step if resume is not None else None
    epoch_rng = batch = None
    position = (0, 0)  # (epoch, batches of it consumed)

    def save():
        nonlocal saved_step
        _save_atomic({
            "format": _CHECKPOINT_FORMAT, "step": step, "epoch": position[0], "batch": position[1],
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "history": {"loss": history.loss, "grad_norm": history.grad_norm, "evals": history.evals,
                        "seconds": seconds_before + time.perf_counter() - start},
            "extra_state": None if extra_state is None else dict(extra_state),
            "rng": _rng_state(), "epoch_rng": epoch_rng,
            "last_batch": _fingerprint(batch) if position[1] else None,
        }, checkpoint)
        saved_step = step

    def restore_resumed_state():
        _set_rng_state(resume["rng"])
        if extra_state is not None and resume["extra_state"] is not None:
            extra_state.clear()
            extra_state.update(resume["extra_state"])

    start_epoch = 0
    if resume is not None:
        start_epoch, position, epoch_rng = resume["epoch"], (resume["epoch"], resume["batch"]), resume["epoch_rng"]
        if done or start_epoch >= num_epochs:
            restore_resumed_state()
    model.train()
    for epoch in range(start_epoch, num_epochs):
        if done:
            break
        replay = resume is not None and epoch == resume["epoch"]
        if replay:
            _set_rng_state(epoch_rng)  # re-create the epoch's batches as they were first drawn
        elif checkpoint is not None:
            epoch_rng = _rng_state()
        iterator = iter(batches(epoch) if callable(batches) else batches)
        consumed = 0
        if replay:
            for consumed in range(1, resume["batch"] + 1):
                try:
                    batch = next(iterator)
                except StopIteration:
                    raise ValueError(
                        f"batches: epoch {epoch} now yields {consumed - 1} batches, but the checkpoint "
                        f"{os.fspath(checkpoint)!r} was saved after batch {resume['batch']} of it; the data "
                        "changed since (delete the file or pass another path to train afresh)") from None
            if resume["last_batch"] is not None and consumed and _fingerprint(batch) != resume["last_batch"]:
                raise ValueError(
                    f"batches: replaying epoch {epoch} gave a different batch {consumed} from the one trained "
                    "on before the checkpoint, so training cannot resume exactly. batches must re-create the "
                    "same batches (a list, or batches(epoch) drawing its randomness when called, e.g. a "
                    "permutation or a torch.Generator seeded by the epoch); or the data changed (delete "
                    "the file or pass another path to train afresh)")
            restore_resumed_state()
        for batch in iterator:
            loss = step_fn(model, batch)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise ValueError("step_fn: must return a scalar tensor (shape ()), got "
                                 f"{type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is not None:  # clip_grad_norm_ returns the norm before clipping: computed once
                history.grad_norm.append(torch.nn.utils.clip_grad_norm_(params, clip_norm).item())
            else:
                history.grad_norm.append(grad_norm(params))
            optimizer.step()
            step += 1
            consumed += 1
            position = (epoch, consumed)
            value = loss.item()
            history.loss.append(value)
            bar.update(1)
            # refresh=False: the bar redraws at most once a second (mininterval), not at every step, where
            # each redraw of a notebook widget costs about as much as a small model's training step
            bar.set_description(f"{desc} loss {value:.4f}" if math.isfinite(value) else f"{desc} loss {value}",
                                refresh=False)
            if eval_every and step % eval_every == 0:
                evaluate(step)
            if checkpoint_every and step % checkpoint_every == 0:
                save()
            if max_steps is not None and step >= max_steps:
                done = True
                break
    if checkpoint is not None and saved_step != step:
        save()
    if eval_fn is not None and (not history.evals or history.evals[-1][0] != step):
        evaluate(step)
    bar.close()
    history.seconds = seconds_before + time.perf_counter() - start
    return history


# ---------------------------------------------------------------- checkpoints

_CHECKPOINT_FORMAT = "utils.training checkpoint 1"


def _rng_state():
    """The random states of torch (CPU, every GPU), NumPy and Python's ``random``."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fingerprint(batch):
    """A SHA-256 of a batch's contents (tensors, arrays, numbers, strings, nested in lists, tuples and
    dicts), or None if the batch holds something else."""
    digest = hashlib.sha256()

    def feed(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"tensor {x.dtype} {tuple(x.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes())
        elif isinstance(x, np.ndarray):
            digest.update(f"array {x.dtype} {x.shape}".encode())
            digest.update(np.ascontiguousarray(x).tobytes())
        elif x is None or isinstance(x, (bool, int, float, complex, str, bytes, np.generic)):
            digest.update(f"{type(x).__name__} {x!r}".encode())
        elif isinstance(x, (list, tuple)):
            digest.update(f"{type(x).__name__} {len(x)}".encode())
            for item in x:
                feed(item)
        elif isinstance(x, dict):
            digest.update(f"dict {len(x)}".encode())
            for key in x:
                feed(key)
                feed(x[key])
        else:
            raise TypeError

    try:
        feed(batch)
    except TypeError:
        return None
    return digest.hexdigest()


def _save_atomic(obj, path):
    """torch.save ``obj`` to a temporary file next to ``path``, then move it over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _restore_location(storage, location):
    """Tensors go back to the device they were saved from (e.g. a carried hidden state on the GPU),
    or to the CPU where that device is missing."""
    try:
        return torch.serialization.default_restore_location(storage, location)
    except RuntimeError:
        return storage


def _load_checkpoint(path):
    try:
        state = torch.load(path, map_location=_restore_location, weights_only=False)
    except Exception as err:
        raise ValueError(f"checkpoint: could not read {os.fspath(path)!r} ({type(err).__name__}: {err}); "
                         "delete it or pass another path to train afresh") from err
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint: {os.fspath(path)!r} is not a checkpoint written by utils.training.train")
    return state
