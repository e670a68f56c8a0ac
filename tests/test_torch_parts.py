"""utils/torch_parts.py: the stand-ins for earlier parts agree with PyTorch's modules, keep working while a
test switches PyTorch's names off, and refuse to be an answer to the part they stand in for."""

import pytest
import torch

from utils import lstm_checks, mha_checks, torch_parts
from utils.checks import CheckError, forbid


def test_attention_parts_match_pytorch_while_its_names_are_forbidden():
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    mine = torch_parts.MultiHeadAttention(8, 2)
    mine.load_state_dict(ref.state_dict())
    q, k = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    kpm = torch.zeros(2, 5, dtype=torch.bool)
    kpm[1, 3:] = True
    attn3 = torch.rand(4, 3, 5) > 0.7
    attn3[..., 0] = False
    for masks in ({}, {"key_padding_mask": kpm}, {"attn_mask": attn3, "key_padding_mask": kpm}):
        want, want_w = ref(q, k, k, **masks)
        with forbid(*mha_checks.REIMPLEMENTED):
            got, got_w = mine(q, k, k, **masks)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got_w, want_w, atol=1e-5, rtol=1e-4)
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    heads = torch_parts.split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4) and torch.equal(heads[:, 1], x[:, :, 4:8])
    assert torch.equal(torch_parts.merge_heads(heads), x)
    qh, kh, vh = torch.randn(2, 3, 4, 6), torch.randn(2, 3, 5, 6), torch.randn(2, 3, 5, 7)
    allowed = torch_parts.mha_allowed_mask(kpm, attn3, 2)  # (N, H, L, S), True = may attend
    assert allowed.shape == (2, 2, 3, 5) and not bool(allowed[1, :, :, 3:].any())
    assert torch.equal(allowed.reshape(4, 3, 5) | attn3 | kpm.repeat_interleave(2, 0)[:, None], torch.ones(4, 3, 5,
                       dtype=torch.bool))
    mask = torch.rand(2, 3, 4, 5) > 0.4
    mask[..., 0] = True
    with forbid(*mha_checks.REIMPLEMENTED):
        out, w = torch_parts.dot_product_attention(qh, kh, vh, mask)
    scores = (qh @ kh.transpose(-2, -1) / 6 ** 0.5).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(w, torch.softmax(scores, -1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, torch.softmax(scores, -1) @ vh, atol=1e-6, rtol=1e-5)
    assert bool((w[~mask] == 0).all())


def test_lstm_parts_match_pytorch_while_its_names_are_forbidden():
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(3, 4).double()
    x, h, c = (torch.randn(2, n, dtype=torch.float64) for n in (3, 4, 4))
    want_h, want_c = cell(x, (h, c))
    lstm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=False)
    mine = torch_parts.LSTM(3, 4, num_layers=2, batch_first=False)
    mine.load_state_dict(lstm.state_dict())
    xs = torch.randn(5, 2, 3)
    with forbid(*lstm_checks.FORBIDDEN):
        h1, c1, _ = torch_parts.lstm_cell_forward(x, h, c, *(p.detach() for p in cell.parameters()))
        out, (h_n, c_n) = mine(xs)
    torch.testing.assert_close((h1, c1), (want_h, want_c))
    want, (want_h_n, want_c_n) = lstm(xs)
    torch.testing.assert_close((out, h_n, c_n), (want, want_h_n, want_c_n), atol=1e-6, rtol=1e-5)


def test_the_check_of_a_part_refuses_its_stand_in():
    with pytest.raises(CheckError, match="utils.torch_parts.lstm_cell_forward, the course's stand-in"):
        lstm_checks.visible_part1(torch_parts.lstm_cell_forward)
    with pytest.raises(CheckError, match="utils.torch_parts.split_heads, the course's stand-in"):
        mha_checks.visible_part2(torch_parts.split_heads, torch_parts.merge_heads)
    with pytest.raises(CheckError, match="utils.torch_parts.dot_product_attention, the course's stand-in"):
        mha_checks.visible_part1(torch_parts.dot_product_attention)
    with pytest.raises(CheckError, match="utils.torch_parts.mha_allowed_mask, the course's stand-in"):
        mha_checks.visible_part4(torch_parts.mha_allowed_mask)
    # outside a check they run (the tests of the later parts use them)
    assert torch_parts.split_heads(torch.zeros(1, 2, 4), 2).shape == (1, 2, 2, 2)
