"""Checkpoints of utils.training.train: an interrupted and resumed run equals an uninterrupted one."""

import os
import random

import numpy as np
import pytest
import torch

from utils import runtime, training

NUM_BATCHES = 7  # per epoch
NUM_EPOCHS = 3   # 21 steps in all


class Stop(Exception):
    """Stands for a Colab disconnect in the middle of a run."""


def make_run(seed=0):
    """A small model whose steps use every random generator: dropout (torch), numpy and random noise."""
    runtime.seed_everything(seed)
    data_x = torch.randn(NUM_BATCHES * 8, 5)
    data_y = data_x @ torch.randn(5, 1) + 0.1 * torch.randn(NUM_BATCHES * 8, 1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Dropout(0.2),
                                torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def batches(epoch):
        order = torch.randperm(len(data_x))  # drawn from the global RNG when the epoch starts
        return [(data_x[idx], data_y[idx]) for idx in order.split(8)]

    def step_fn(m, batch):
        x, y = batch
        noise = float(np.random.randn()) * 1e-3 + random.random() * 1e-3
        return ((m(x) - y) ** 2).mean() + noise

    def eval_fn(m):
        return {"mse": ((m(data_x) - data_y) ** 2).mean().item()}

    return model, optimizer, batches, step_fn, eval_fn


def run(seed=0, *, stop_at=None, fresh_init_seed=None, **kwargs):
    """Train the run of ``make_run``; ``stop_at=k`` raises Stop from step_fn at its k-th call."""
    model, optimizer, batches, step_fn, eval_fn = make_run(seed)
    if fresh_init_seed is not None:  # a restarted kernel: other initial weights, other RNG state
        torch.manual_seed(fresh_init_seed)
        for p in model.parameters():
            torch.nn.init.normal_(p)
        runtime.seed_everything(fresh_init_seed)
    calls = {"n": 0}

    def step(m, b):
        calls["n"] += 1
        if stop_at is not None and calls["n"] == stop_at:
            raise Stop
        return step_fn(m, b)

    kwargs = {"num_epochs": NUM_EPOCHS, "eval_fn": eval_fn, "eval_every": 4, "progress": False, **kwargs}
    history = training.train(model, batches, step, optimizer, **kwargs)
    after = torch.rand(3)  # the random state the cells after training see
    return model, history, after, calls["n"]


def assert_same_run(a, b):
    (model_a, hist_a, after_a, _), (model_b, hist_b, after_b, _) = a, b
    assert len(hist_a.loss) == len(hist_b.loss) == NUM_BATCHES * NUM_EPOCHS
    assert abs(hist_a.loss[-1] - hist_b.loss[-1]) <= 1e-6
    assert hist_a.loss == hist_b.loss
    assert hist_a.grad_norm == hist_b.grad_norm
    assert hist_a.evals == hist_b.evals
    for (name, p), q in zip(model_a.named_parameters(), model_b.parameters()):
        assert torch.equal(p, q), name
    assert torch.equal(after_a, after_b)


@pytest.fixture(scope="module")
def reference():
    return run()


def test_checkpoint_does_not_change_an_uninterrupted_run(reference, tmp_path):
    path = tmp_path / "ckpt.pt"
    assert_same_run(reference, run(checkpoint=path, checkpoint_every=5))
    assert path.exists()
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]  # no temporary file left behind


@pytest.mark.parametrize("stop_at", [1, 6, 7, 8, 15, 21])
def test_resume_after_a_crash_equals_the_uninterrupted_run(reference, tmp_path, stop_at):
    path = tmp_path / "ckpt.pt"
    with pytest.raises(Stop):
        run(stop_at=stop_at, checkpoint=path, checkpoint_every=3)
    assert path.exists() == (stop_at > 3)
    # with a checkpoint, other initial weights and RNG state must not matter; without, it starts afresh
    resumed = run(fresh_init_seed=123 if path.exists() else None, checkpoint=path, checkpoint_every=3)
    assert_same_run(reference, resumed)
    done_before = (stop_at - 1) // 3 * 3  # the last checkpoint before the crash
    assert resumed[3] == NUM_BATCHES * NUM_EPOCHS - done_before  # only the missing steps ran


@pytest.mark.parametrize("every", [None, 4])
def test_resume_after_max_steps_several_times(reference, tmp_path, every):
    path = tmp_path / "sub" / "ckpt.pt"  # the folder is created
    for max_steps in (5, 7, 14):  # mid-epoch, end of an epoch, end of the next
        fresh = max_steps if path.exists() else None
        _, hist, _, _ = run(fresh_init_seed=fresh, checkpoint=path, checkpoint_every=every, max_steps=max_steps)
        assert len(hist.loss) == max_steps
    assert_same_run(reference, run(fresh_init_seed=99, checkpoint=path, checkpoint_every=every))


def test_rerunning_a_finished_run_loads_it_without_training(reference, tmp_path):
    path = tmp_path / "ckpt.pt"
    run(checkpoint=path)
    again = run(fresh_init_seed=7, checkpoint=path)
    assert again[3] == 0  # step_fn never called
    assert_same_run(reference, again)
    with pytest.raises(ValueError, match="max_steps"):
        run(checkpoint=path, max_steps=10)


def test_list_batches_and_extra_state(tmp_path):
    """A list of batches and a state carried between batches (as in truncated BPTT)."""
    def go(path, stop_at=None, max_steps=None):
        runtime.seed_everything(1)
        data = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(6)]
        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        carry = {}
        calls = {"n": 0}

        def step_fn(m, b):
            calls["n"] += 1
            if calls["n"] == stop_at:
                raise Stop
            h = carry.get("h", torch.zeros(4, 1))
            out = m(b[0]) + 0.5 * h.detach()
            carry["h"] = out
            return ((out - b[1]) ** 2).mean()

        hist = training.train(model, data, step_fn, optimizer, num_epochs=2, progress=False,
                              checkpoint=path, checkpoint_every=None if path is None else 2,
                              max_steps=max_steps, extra_state=carry)
        return hist, model, carry

    ref_hist, ref_model, ref_carry = go(None)
    path = tmp_path / "ckpt.pt"
    with pytest.raises(Stop):
        go(path, stop_at=10)
    hist, model, carry = go(path)
    assert hist.loss == ref_hist.loss and torch.equal(model.weight, ref_model.weight)
    assert torch.equal(carry["h"], ref_carry["h"])


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    run(checkpoint=path, max_steps=4)
    before = path.read_bytes()
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.write(b"half")
        raise Stop  # killed after writing part of the file

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(Stop):
        run(checkpoint=path, checkpoint_every=2)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


# ---------------------------------------------------------------- what cannot be exact raises


def test_generator_batches_are_refused_with_a_checkpoint(tmp_path):
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = ((torch.ones(2, 1), torch.ones(2, 1)) for _ in range(3))
    step_fn = lambda m, b: ((m(b[0]) - b[1]) ** 2).mean()  # noqa: E731
    with pytest.raises(TypeError, match="batches: a generator .*cannot be replayed"):
        training.train(model, gen, step_fn, opt, checkpoint=tmp_path / "c.pt", progress=False)
    assert len(training.train(model, gen, step_fn, opt, progress=False).loss) == 3  # still fine without


def test_bad_checkpoint_arguments(tmp_path):
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step_fn = lambda m, b: m(b).sum()  # noqa: E731
    data = [torch.ones(1, 1)]
    with pytest.raises(ValueError, match="checkpoint_every: given without checkpoint"):
        training.train(model, data, step_fn, opt, checkpoint_every=10, progress=False)
    with pytest.raises(ValueError, match="checkpoint_every: expected None or an int >= 1, got 0"):
        training.train(model, data, step_fn, opt, checkpoint=tmp_path / "c.pt", checkpoint_every=0)
    with pytest.raises(TypeError, match="checkpoint: expected None or a file path, got int"):
        training.train(model, data, step_fn, opt, checkpoint=3)
    with pytest.raises(TypeError, match="extra_state: expected None or a dict"):
        training.train(model, data, step_fn, opt, checkpoint=tmp_path / "c.pt", extra_state=[1])


def test_unreadable_or_foreign_checkpoint_files(tmp_path):
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step_fn = lambda m, b: m(b).sum()  # noqa: E731
    data = [torch.ones(1, 1)]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint: could not read .*junk.pt"):
        training.train(model, data, step_fn, opt, checkpoint=junk, progress=False)
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(ValueError, match="not a checkpoint written by utils.training.train"):
        training.train(model, data, step_fn, opt, checkpoint=other, progress=False)
    path = tmp_path / "c.pt"
    training.train(model, data, step_fn, opt, checkpoint=path, progress=False)
    bigger = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="checkpoint: .*different model"):
        training.train(bigger, data, step_fn, torch.optim.SGD(bigger.parameters(), lr=0.1),
                       checkpoint=path, progress=False)


def test_changed_data_on_resume_raises(tmp_path):
    path = tmp_path / "ckpt.pt"
    run(checkpoint=path, max_steps=5)
    model, optimizer, batches, step_fn, eval_fn = make_run()
    fewer = lambda epoch: batches(epoch)[:3]  # noqa: E731
    with pytest.raises(ValueError, match="batches: epoch 0 now yields 3 batches.*after batch 5"):
        training.train(model, fewer, step_fn, optimizer, num_epochs=3, checkpoint=path, progress=False)
    other = lambda epoch: [(x + 1, y) for x, y in batches(epoch)]  # noqa: E731
    with pytest.raises(ValueError, match="batches: replaying epoch 0 gave a different batch 5"):
        training.train(model, other, step_fn, optimizer, num_epochs=3, checkpoint=path, progress=False)


def test_lazy_generator_drawing_with_dropout_is_detected(tmp_path):
    """Batches drawn lazily from the global RNG, interleaved with dropout's draws, cannot be replayed."""
    def go(path, max_steps=None):
        runtime.seed_everything(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def batches(epoch):
            for _ in range(5):
                yield torch.randn(4, 3), torch.randn(4, 1)

        return training.train(model, batches, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), optimizer,
                              num_epochs=2, checkpoint=path, max_steps=max_steps, progress=False)

    path = tmp_path / "ckpt.pt"
    go(path, max_steps=3)
    with pytest.raises(ValueError, match="batches: replaying epoch 0 gave a different batch 3"):
        go(path)
