"""Unit tests for the utils package, bad input included."""

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from utils import checks, data, plots, real_data, runtime, training  # noqa: E402

# ---------------------------------------------------------------- runtime


def test_seed_everything_repeats_draws():
    runtime.seed_everything(3)
    a = torch.randn(5)
    runtime.seed_everything(3)
    assert torch.equal(a, torch.randn(5))


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_seed_everything_rejects_bad_seed(bad):
    with pytest.raises((TypeError, ValueError), match="seed"):
        runtime.seed_everything(bad)


def test_get_device():
    assert runtime.get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert runtime.get_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="prefer"):
        runtime.get_device("gpu-please")


def test_in_grading(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert not runtime.in_grading()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert runtime.in_grading()


# ---------------------------------------------------------------- data


def test_adding_problem_target_is_sum_of_marked_values():
    X, y = data.adding_problem(64, 30, seed=1)
    assert X.shape == (64, 30, 2) and y.shape == (64,)
    assert torch.all(X[..., 1].sum(1) == 2)
    marked = (X[..., 0] * X[..., 1]).sum(1)
    assert torch.allclose(marked, y)
    # one marker in each half
    assert torch.all(X[:, :15, 1].sum(1) == 1) and torch.all(X[:, 15:, 1].sum(1) == 1)


def test_copy_and_reverse_tasks():
    X, Y = data.copy_task(4, 5, vocab_size=6, delay=10, seed=0)
    assert X.shape == Y.shape == (4, 20)
    assert torch.equal(Y[:, 15:], X[:, :5])
    assert torch.all(X[:, 14] == 1) and torch.all(Y[:, :15] == 0)
    X, Y = data.reverse_task(3, 7, seed=0)
    assert torch.equal(Y[:, 0], X[:, -1]) and torch.equal(Y.flip(1), X)


def test_ar_process_recovers_coefficients():
    x = data.ar_process([0.6, -0.3], 5000, noise=0.1, seed=0).double()
    feats, labels = data.windows(x, 2)
    coef = torch.linalg.lstsq(feats, labels.unsqueeze(1)).solution.squeeze()
    # windows are oldest-first, so coef[1] multiplies x_{t-1}
    assert torch.allclose(coef, torch.tensor([-0.3, 0.6], dtype=torch.float64), atol=0.05)


def test_windows_and_noisy_sine():
    t, x, clean = data.noisy_sine(100, period=20, noise=0.0)
    assert torch.allclose(x, clean)
    f, lab = data.windows(x, 4)
    assert f.shape == (96, 4) and torch.equal(f[0], x[:4]) and lab[0] == x[4]
    with pytest.raises(ValueError, match="tau"):
        data.windows(x, 100)
    with pytest.raises(ValueError, match="series"):
        data.windows(x.reshape(10, 10), 2)


def test_translation_like_tasks():
    pairs = data.date_pairs(200, seed=0)
    assert all(len(t) == 10 and t[4] == "-" for _, t in pairs)
    assert len({s for s, _ in pairs}) > 150
    assert data.number_to_words(342107) == "three hundred forty-two thousand one hundred seven"
    assert data.number_to_words(0) == "zero" and data.number_to_words(1_000_000) == "one million"
    for src, tgt in data.number_word_pairs(100, seed=1):
        assert data.number_to_words(int(tgt)) == src
    with pytest.raises(ValueError, match="n"):
        data.number_to_words(-5)


def test_vocab_round_trip_and_errors():
    v = data.Vocab("abcab", specials=("<pad>", "<bos>", "<eos>"))
    assert v["<pad>"] == 0 and len(v) == 6
    ids = v.encode("cab")
    assert v.decode(ids + [v["<eos>"], v["a"]]) == "cab"
    assert v.decode(ids, sep=" ") == "c a b"
    with pytest.raises(KeyError, match="'z'"):
        v.encode("z")


def test_lm_batches_continue_streams():
    ids = torch.arange(1000)
    batches = data.lm_batches(ids, 4, 10, shuffle_offset=False)
    (X0, Y0), (X1, _) = batches[0], batches[1]
    assert X0.shape == (4, 10) and torch.equal(Y0, X0 + 1)
    assert torch.equal(X1[:, 0], X0[:, -1] + 1)  # batch k+1 continues batch k in every stream
    with pytest.raises(ValueError, match="too few"):
        data.lm_batches(torch.arange(20), 4, 10)


@pytest.mark.parametrize("fn,args", [
    (data.adding_problem, (0, 10)), (data.adding_problem, (4, 1)), (data.copy_task, (4, "5")),
    (data.reverse_task, (2.5, 3)), (data.noisy_sine, (0,)),
])
def test_generators_reject_bad_sizes(fn, args):
    with pytest.raises((TypeError, ValueError)):
        fn(*args)


# ---------------------------------------------------------------- real data


def test_real_data_is_offline_and_sized():
    dates, prices = real_data.stock_prices()
    assert len(dates) == prices.shape[0] == 1047 and torch.all(prices > 0)
    assert real_data.eeg().shape == (800, 4)
    dates, stocks = real_data.monthly_stocks()
    assert "IBM" in stocks and stocks["IBM"].shape == (len(dates),)
    text = real_data.python_docs_text()
    assert len(text) > 300_000 and "def " in text
    with pytest.raises(ValueError, match="column"):
        real_data.stock_prices("price")


# ---------------------------------------------------------------- training


def test_train_fits_a_line_and_records_history():
    runtime.seed_everything(0)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    y = 3 * x + 1
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    hist = training.train(model, [(x, y)] * 50, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), opt,
                          eval_fn=lambda m: {"mse": ((m(x) - y) ** 2).mean().item()}, eval_every=10,
                          progress=False)
    assert len(hist.loss) == 50 and len(hist.grad_norm) == 50
    assert hist.last_eval("mse") < 1e-4 and [s for s, _ in hist.evals] == [10, 20, 30, 40, 50]
    assert hist.loss[-1] < hist.loss[0] / 100


def test_train_clips_and_stops_at_max_steps():
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    batch = (torch.ones(4, 1), 1000 * torch.ones(4, 1))
    w0 = model.weight.detach().clone()
    hist = training.train(model, [batch] * 10, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), opt,
                          clip_norm=1.0, max_steps=3, progress=False)
    assert len(hist.loss) == 3 and hist.grad_norm[0] > 1.0
    assert torch.equal(model.weight, w0)  # lr 0: nothing moves


def test_train_records_the_gradient_norm_before_clipping_and_clips():
    """The recorded norm is autograd's, before clipping, with and without clip_norm; the step uses the clipped one."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    batch = (torch.randn(8, 3), 10 * torch.randn(8, 2))

    def loss_fn(m, b):
        return ((m(b[0]) - b[1]) ** 2).mean()

    grads = torch.autograd.grad(loss_fn(model, batch), list(model.parameters()))
    expected = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])).item()
    assert expected > 1.0
    for clip_norm in (None, 1.0):
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        hist = training.train(model, [batch], loss_fn, opt, clip_norm=clip_norm, progress=False)
        assert hist.grad_norm[0] == pytest.approx(expected, rel=1e-5)
        after = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])).item()
        assert after == pytest.approx(expected if clip_norm is None else clip_norm, rel=1e-5)


def test_train_rejects_bad_arguments():
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="model"):
        training.train("model", [], lambda m, b: 0, opt)
    with pytest.raises(TypeError, match="optimizer"):
        training.train(model, [], lambda m, b: 0, "adam")
    with pytest.raises(ValueError, match="num_epochs"):
        training.train(model, [], lambda m, b: 0, opt, num_epochs=0)
    with pytest.raises(ValueError, match="step_fn"):
        training.train(model, [1], lambda m, b: torch.ones(2), opt, progress=False)


# ---------------------------------------------------------------- plots


def test_plots_label_axes_and_check_shapes():
    ax = plots.heatmap(torch.rand(3, 4), xlabels=list("abcd"), ylabels=["x", "y", "z"], xlabel="key",
                       ylabel="query")
    assert ax.get_xlabel() == "key" and [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    with pytest.raises(ValueError, match="xlabels"):
        plots.heatmap(torch.rand(3, 4), xlabels=list("abc"))
    with pytest.raises(ValueError, match="matrix"):
        plots.heatmap(torch.rand(3))
    ax = plots.plot_grad_norms({"rho=0.9": [1, 0.9, 0.81], "rho=1.1": [1, 1.1, 1.21]})
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 2
    with pytest.raises(ValueError, match="smooth"):
        plots.plot_curves([1, 2, 3], smooth=0)
    matplotlib.pyplot.close("all")


# ---------------------------------------------------------------- checks


def test_compare_says_where_and_how_far():
    a = torch.zeros(2, 3, 4)
    b = a.clone()
    b[1, 2, 3] = 0.5
    msg = checks.compare(a, b, "h", dims=("batch", "time step", "unit"))
    assert "[batch 1, time step 2, unit 3]" in msg and "expected 0.5" in msg and "1 of 24" in msg
    assert checks.compare(a, a + 1e-7, "h") is None


def test_compare_shape_hints():
    msg = checks.compare(torch.zeros(2, 5, 8), torch.zeros(2, 8, 5), "out")
    assert "shape (2, 8, 5) expected, got (2, 5, 8)" in msg and "transposed" in msg
    assert "squeeze" in checks.compare(torch.zeros(2, 1, 3), torch.zeros(2, 3), "out")
    assert "None" in checks.compare(None, torch.zeros(2), "out")
    assert "NaN" in checks.compare(torch.tensor([0.0, math.nan]), torch.zeros(2), "out")


def test_assert_close_survives_rebinding_of_torch_functions(monkeypatch):
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(torch, "isfinite", lambda x: torch.ones_like(x, dtype=torch.bool))
    with pytest.raises(AssertionError, match="differs"):
        checks.assert_close(torch.zeros(3), torch.ones(3), "x")


def test_forbid_blocks_the_reference_module_and_restores_it():
    with checks.forbid("torch.nn.LSTMCell", "torch.nn.functional.scaled_dot_product_attention"):
        with pytest.raises(checks.CheckError, match="torch.nn.LSTMCell"):
            torch.nn.LSTMCell(2, 3)
        with pytest.raises(checks.CheckError, match="scaled_dot_product_attention"):
            torch.nn.functional.scaled_dot_product_attention(torch.ones(1, 1, 1), torch.ones(1, 1, 1),
                                                             torch.ones(1, 1, 1))
    assert isinstance(torch.nn.LSTMCell(2, 3), torch.nn.Module)
    with pytest.raises(ValueError, match="targets"):
        with checks.forbid("LSTMCell"):
            pass
