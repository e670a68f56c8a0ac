"""utils.diagrams: every part of the LSTM and GRU cells is drawn, and highlighting colours that part only."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from utils import diagrams  # noqa: E402
from utils.diagrams import GRU_PARTS, LSTM_PARTS, draw_gru_cell, draw_lstm_cell  # noqa: E402


def _colors(ax):
    """Every colour used by the axes' lines, patches (edges) and texts, as hex strings."""
    found = set()
    for line in ax.lines:
        found.add(to_hex(line.get_color()))
    for patch in ax.patches:
        found.add(to_hex(patch.get_edgecolor()))
    for text in ax.texts:
        found.add(to_hex(text.get_color()))
    return found


def _texts(ax):
    return " ".join(t.get_text() for t in ax.texts)


CELLS = [(draw_lstm_cell, LSTM_PARTS), (draw_gru_cell, GRU_PARTS)]


@pytest.mark.parametrize("draw,parts", CELLS)
def test_highlight_colours_only_that_part(draw, parts):
    for part in parts:
        fig, ax = plt.subplots()
        assert draw(part, ax=ax) is ax
        used = _colors(ax)
        own = diagrams._COLORS[part]
        assert own in used, part  # the highlighted part is drawn in its colour
        others = {diagrams._COLORS[p] for p in parts if diagrams._COLORS[p] != own}
        assert not used & others, part  # every other part is dimmed
        assert parts[part] in ax.get_title()
        plt.close(fig)


@pytest.mark.parametrize("draw,parts", CELLS)
def test_no_highlight_draws_every_part_in_colour(draw, parts):
    ax = draw(None)
    used = _colors(ax)
    for part in parts:
        assert diagrams._COLORS[part] in used, part
    assert diagrams._DIM not in used
    plt.close(ax.figure)


def test_diagrams_name_the_lecture_symbols():
    lstm = _texts(draw_lstm_cell())
    for symbol in ("C_{t-1}", "C_t", "H_{t-1}", "H_t", "X_t", "F_t", "I_t", "G_t", "O_t"):
        assert symbol in lstm, symbol
    gru = _texts(draw_gru_cell())
    for symbol in ("H_{t-1}", "H_t", "X_t", "R_t", "Z_t", "N_t"):
        assert symbol in gru, symbol
    plt.close("all")


@pytest.mark.parametrize("draw", [draw_lstm_cell, draw_gru_cell])
def test_unknown_part_names_the_argument(draw):
    with pytest.raises(ValueError, match=r"highlight: expected None or one of .*got 'bogus'"):
        draw("bogus")
    plt.close("all")
