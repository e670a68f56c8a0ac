"""utils.batched: M stacked models must behave exactly like M separate torch.nn models."""

import pytest
import torch
from torch import nn

from utils.batched import BatchedAdam, BatchedLinear, BatchedRNN, num_params

CASES = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("RNN", {"nonlinearity": "relu", "init": "identity"}),
         ("LSTM", {}), ("GRU", {})]


@pytest.mark.parametrize("kind,kw", CASES)
def test_each_model_matches_torch(kind, kw):
    M, B, T, D, H = 3, 4, 7, 5, 6
    rnn = BatchedRNN(kind, M, D, H, seeds=[10, 11, 12], **kw).double()
    X = torch.randn(M, B, T, D, dtype=torch.float64)  # a different input per model
    outputs, state = rnn(X)
    assert outputs.shape == (M, B, T, H)
    for m in range(M):
        ref = rnn.to_torch(m)
        assert isinstance(ref, getattr(nn, kind))
        out_ref, state_ref = ref(X[m])
        torch.testing.assert_close(outputs[m], out_ref, rtol=0, atol=1e-12)
        if kind == "LSTM":
            torch.testing.assert_close(state[0][m], state_ref[0][0], rtol=0, atol=1e-12)
            torch.testing.assert_close(state[1][m], state_ref[1][0], rtol=0, atol=1e-12)
        else:
            torch.testing.assert_close(state[m], state_ref[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_load_from_torch_and_step(kind):
    M, B, D, H = 2, 3, 4, 5
    rnn = BatchedRNN(kind, M, D, H).double()
    ref = getattr(nn, kind)(D, H, batch_first=True).double()
    rnn.load_from_torch(1, ref)
    x = torch.randn(M, B, D, dtype=torch.float64)
    state = rnn.step(x)
    _, state_ref = ref(x[1][:, None])
    h, h_ref = (state[0], state_ref[0]) if kind == "LSTM" else (state, state_ref)
    torch.testing.assert_close(h[1], h_ref[0], rtol=0, atol=1e-12)
    assert not torch.allclose(h[0], h[1])  # model 0 kept its own weights
    with pytest.raises(ValueError, match="weight_ih_l0"):
        rnn.load_from_torch(0, getattr(nn, kind)(D + 1, H))


def test_seeds_make_models_independent_of_batching():
    a = BatchedRNN("LSTM", 3, 2, 8, seeds=[5, 6, 7])
    b = BatchedRNN("LSTM", 1, 2, 8, seeds=[6])
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert torch.equal(getattr(a, name)[1], getattr(b, name)[0])
    assert not torch.equal(a.weight_hh[0], a.weight_hh[1])
    la, lb = BatchedLinear(3, 8, 1, seeds=[5, 6, 7]), BatchedLinear(1, 8, 1, seeds=[6])
    assert torch.equal(la.weight[1], lb.weight[0])


def test_identity_init():
    rnn = BatchedRNN("RNN", 2, 3, 4, nonlinearity="relu", init="identity", seeds=[0, 1])
    assert torch.equal(rnn.weight_hh[1], torch.eye(4))
    assert not rnn.bias_ih.any() and not rnn.bias_hh.any()


def test_default_init_range_like_torch():
    rnn = BatchedRNN("GRU", 2, 3, 16, seeds=[0, 1])
    bound = 1 / 16 ** 0.5
    for p in rnn.parameters():
        assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound


def test_linear_matches_torch():
    lin = BatchedLinear(3, 5, 2, seeds=[0, 1, 2]).double()
    X = torch.randn(3, 4, 6, 5, dtype=torch.float64)
    out = lin(X)
    assert out.shape == (3, 4, 6, 2)
    for m in range(3):
        torch.testing.assert_close(out[m], lin.to_torch(m)(X[m]), rtol=0, atol=1e-12)


def test_num_params():
    assert num_params(BatchedRNN("LSTM", 5, 2, 32)) == sum(p.numel() for p in nn.LSTM(2, 32).parameters())
    assert num_params(nn.Linear(3, 2)) == 8


@pytest.mark.parametrize("clip_norm", [None, 0.05])
def test_adam_matches_separate_torch_runs(clip_norm):
    """Per-model learning rates and per-model clipping: the same parameters as 3 separate Adam runs."""
    M, B, T, D, H = 3, 4, 6, 2, 5
    lrs = [0.001, 0.01, 0.1]
    rnn = BatchedRNN("LSTM", M, D, H, seeds=[1, 2, 3]).double()
    out = BatchedLinear(M, H, 1, seeds=[1, 2, 3]).double()
    refs = [(rnn.to_torch(m), out.to_torch(m)) for m in range(M)]
    opt = BatchedAdam(list(rnn.parameters()) + list(out.parameters()), lr=lrs, clip_norm=clip_norm)
    ref_opts = [torch.optim.Adam(list(r.parameters()) + list(o.parameters()), lr=lr) for (r, o), lr in zip(refs, lrs)]
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        X = torch.randn(M, B, T, D, generator=gen, dtype=torch.float64)
        y = torch.randn(M, B, generator=gen, dtype=torch.float64)
        _, (h, _) = rnn(X)
        loss = ((out(h).squeeze(-1) - y) ** 2).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        for m, ((r, o), ro) in enumerate(zip(refs, ref_opts)):
            _, (h_m, _) = r(X[m])
            loss_m = ((o(h_m[0]).squeeze(-1) - y[m]) ** 2).mean()
            ro.zero_grad()
            loss_m.backward()
            if clip_norm is not None:
                nn.utils.clip_grad_norm_(list(r.parameters()) + list(o.parameters()), clip_norm)
            ro.step()
    for m, (r, o) in enumerate(refs):
        torch.testing.assert_close(rnn.weight_hh[m], r.weight_hh_l0, rtol=0, atol=1e-10)
        torch.testing.assert_close(out.weight[m], o.weight, rtol=0, atol=1e-10)
    assert not torch.allclose(rnn.weight_hh[0], rnn.weight_hh[1])


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="kind"):
        BatchedRNN("Transformer", 2, 3, 4)
    with pytest.raises(ValueError, match="nonlinearity"):
        BatchedRNN("LSTM", 2, 3, 4, nonlinearity="relu")
    with pytest.raises(ValueError, match="init"):
        BatchedRNN("GRU", 2, 3, 4, init="identity")
    with pytest.raises(ValueError, match="seeds"):
        BatchedRNN("RNN", 2, 3, 4, seeds=[0])
    with pytest.raises(ValueError, match="num_hiddens"):
        BatchedRNN("RNN", 2, 3, 0)
    rnn = BatchedRNN("RNN", 2, 3, 4)
    with pytest.raises(ValueError, match=r"X: expected .*\(M, B, T, D\).*got \(3, 5, 7, 3\)"):
        rnn(torch.zeros(3, 5, 7, 3))
    with pytest.raises(ValueError, match="x: expected"):
        rnn.step(torch.zeros(2, 5, 4))
    with pytest.raises(IndexError, match="m: expected"):
        rnn.to_torch(2)
    with pytest.raises(ValueError, match="X: expected"):
        BatchedLinear(2, 3, 1)(torch.zeros(2, 5, 4))
    p = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="lr"):
        BatchedAdam([p], lr=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="params"):
        BatchedAdam([p, torch.zeros(3, 3, requires_grad=True)], lr=0.1)
