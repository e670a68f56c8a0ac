"""Cell diagrams drawn with matplotlib: the LSTM cell and the GRU cell, one part highlighted.

    draw_lstm_cell(highlight="forget")   # "forget", "input", "cell", "output" or None (all parts)
    draw_gru_cell(highlight="reset")     # "reset", "update" or None

Each diagram is a list of elements (boxes, nodes, wires, labels), each tagged with the part of the cell
it belongs to; the highlighted part is drawn in colour, the rest in grey. Names follow lecture 3:
X_t, H_t, C_t and the gates F_t, I_t, G_t (candidate), O_t; for the GRU R_t, Z_t, N_t (candidate).
"""

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

__all__ = ["LSTM_PARTS", "GRU_PARTS", "draw_lstm_cell", "draw_gru_cell"]

LSTM_PARTS = {
    "forget": r"forget gate $F_t$: what to drop from $C_{t-1}$",
    "input": r"input gate $I_t$ and candidate $G_t$: what to write",
    "cell": r"update cell: $C_t = F_t \odot C_{t-1} + I_t \odot G_t$",
    "output": r"output gate $O_t$: $H_t = O_t \odot \tanh(C_t)$",
}
GRU_PARTS = {
    "reset": r"reset gate $R_t$: how much of $H_{t-1}$ the candidate sees",
    "update": r"update gate $Z_t$: $H_t = (1 - Z_t) \odot N_t + Z_t \odot H_{t-1}$",
}
_COLORS = {"forget": "#d62728", "input": "#2ca02c", "cell": "#1f77b4", "output": "#9467bd",
           "reset": "#d62728", "update": "#1f77b4"}
_GREY, _DIM = "#4d4d4d", "#b3b3b3"


class _Canvas:
    """Draws elements tagged with a part; colours the highlighted part, dims the others if one is highlighted."""

    def __init__(self, ax, highlight):
        self.ax, self.highlight = ax, highlight

    def color(self, part):
        if self.highlight is None:
            return _COLORS.get(part, _GREY) if part else _GREY
        return _COLORS[part] if part == self.highlight else _DIM

    def weight(self, part):
        return 2.6 if part is not None and part == self.highlight else 1.4

    def wire(self, points, part=None, arrow=False):
        xs, ys = zip(*points)
        c, lw = self.color(part), self.weight(part)
        if arrow:
            self.ax.plot(xs[:-1], ys[:-1], color=c, lw=lw, solid_capstyle="round", zorder=1)
            self.ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=12,
                                              color=c, lw=lw, zorder=1, shrinkA=0, shrinkB=0))
        else:
            self.ax.plot(xs, ys, color=c, lw=lw, solid_capstyle="round", zorder=1)

    def box(self, x, y, text, part=None, w=0.9, h=0.6):
        c = self.color(part)
        self.ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc="white",
                                         ec=c, lw=self.weight(part), zorder=3))
        self.ax.text(x, y, text, ha="center", va="center", color=c, fontsize=11, zorder=4)

    def node(self, x, y, symbol, part=None):
        c = self.color(part)
        self.ax.add_patch(plt.Circle((x, y), 0.27, fc="white", ec=c, lw=self.weight(part), zorder=3))
        self.ax.text(x, y, symbol, ha="center", va="center", color=c, fontsize=12, zorder=4)

    def label(self, x, y, text, part=None, **kw):
        self.ax.text(x, y, text, color=self.color(part), zorder=4, **{"fontsize": 11, **kw})


def _frame(ax, title, highlight, parts):
    if highlight is not None and highlight not in parts:
        raise ValueError(f"highlight: expected None or one of {list(parts)}, got {highlight!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.add_patch(FancyBboxPatch((0.6, 0.35), 8.3, 5.3, boxstyle="round,pad=0.1", fc="#f7f7f7", ec="#999999",
                                lw=1, zorder=0))
    ax.set(xlim=(-0.6, 10.6), ylim=(-0.6, 6.4), aspect="equal")
    ax.axis("off")
    ax.set_title(title if highlight is None else f"{title}: {parts[highlight]}", fontsize=11)
    return _Canvas(ax, highlight)


def draw_lstm_cell(highlight=None, ax=None):
    """Draw the LSTM cell; ``highlight`` one of ``LSTM_PARTS`` (or None for all parts in colour). Returns the axes.

    Top wire: the cell state C_{t-1} -> x F_t -> + I_t G_t -> C_t. Bottom: H_{t-1} and X_t feed the four
    gates (sigmoid boxes F, I, O and the tanh box G); H_t = O_t * tanh(C_t) leaves on the right.
    """
    d = _frame(ax, "LSTM cell", highlight, LSTM_PARTS)
    top, bus, gate_y = 5.0, 1.0, 2.4
    xf, xi, xg, xo, xt = 2.2, 3.6, 5.0, 6.4, 7.6
    # cell state wire (the additive path)
    d.wire([(-0.3, top), (xf - 0.27, top)], "cell")
    d.wire([(xf + 0.27, top), (xg - 0.27, top)], "cell")
    d.wire([(xg + 0.27, top), (10.3, top)], "cell", arrow=True)
    d.label(-0.5, top + 0.3, r"$C_{t-1}$", "cell")
    d.label(9.6, top + 0.3, r"$C_t$", "cell")
    # inputs: H_{t-1} from the left, X_t from below, joined on a bus that feeds every gate
    d.wire([(-0.3, bus), (xo, bus)])
    d.label(-0.5, bus + 0.3, r"$H_{t-1}$")
    d.wire([(1.3, -0.4), (1.3, bus)])
    d.label(1.45, -0.45, r"$X_t$")
    for x, part in ((xf, "forget"), (xi, "input"), (xg, "input"), (xo, "output")):
        d.wire([(x, bus), (x, gate_y - 0.3)], part, arrow=True)
    # forget gate
    d.box(xf, gate_y, r"$\sigma$", "forget")
    d.label(xf - 0.75, gate_y + 0.45, r"$F_t$", "forget")
    d.wire([(xf, gate_y + 0.3), (xf, top - 0.27)], "forget", arrow=True)
    d.node(xf, top, r"$\times$", "forget")
    # input gate and candidate
    d.box(xi, gate_y, r"$\sigma$", "input")
    d.label(xi - 0.75, gate_y + 0.45, r"$I_t$", "input")
    d.box(xg, gate_y, r"$\tanh$", "input")
    d.label(xg - 0.75, gate_y + 0.45, r"$G_t$", "input")
    d.wire([(xi, gate_y + 0.3), (xi, 3.7), (xg - 0.27, 3.7)], "input", arrow=True)
    d.wire([(xg, gate_y + 0.3), (xg, 3.7 - 0.27)], "input", arrow=True)
    d.node(xg, 3.7, r"$\times$", "input")
    d.wire([(xg, 3.7 + 0.27), (xg, top - 0.27)], "input", arrow=True)
    d.node(xg, top, "+", "cell")
    # output gate
    d.box(xo, gate_y, r"$\sigma$", "output")
    d.label(xo - 0.75, gate_y + 0.45, r"$O_t$", "output")
    d.wire([(xt, top), (xt, 3.9 + 0.3)], "output", arrow=True)
    d.box(xt, 3.9, r"$\tanh$", "output")
    d.wire([(xt, 3.9 - 0.3), (xt, gate_y + 0.27)], "output", arrow=True)
    d.wire([(xo + 0.45, gate_y), (xt - 0.27, gate_y)], "output", arrow=True)
    d.node(xt, gate_y, r"$\times$", "output")
    d.wire([(xt, gate_y - 0.27), (xt, bus), (10.3, bus)], "output", arrow=True)
    d.label(9.6, bus + 0.3, r"$H_t$", "output")
    return d.ax


def draw_gru_cell(highlight=None, ax=None):
    """Draw the GRU cell (PyTorch's form); ``highlight`` one of ``GRU_PARTS`` or None. Returns the axes.

    Top wire: the state H_{t-1} -> x Z_t -> + (1 - Z_t) N_t -> H_t. The reset gate R_t scales what the
    candidate N_t sees of H_{t-1}; the update gate Z_t mixes the old state and the candidate.
    """
    d = _frame(ax, "GRU cell", highlight, GRU_PARTS)
    top, bus, gate_y = 5.0, 1.0, 2.4
    xr, xz, xn, xmix = 2.2, 3.6, 6.2, 7.4
    # the state wire: H_{t-1} -> x Z -> + -> H_t
    d.wire([(-0.3, top), (xz - 0.27, top)], "update")
    d.wire([(xz + 0.27, top), (xmix - 0.27, top)], "update")
    d.wire([(xmix + 0.27, top), (10.3, top)], "update", arrow=True)
    d.label(-0.5, top + 0.3, r"$H_{t-1}$")
    d.label(9.6, top + 0.3, r"$H_t$")
    # H_{t-1} also goes down to the bus that feeds the gates and the candidate; X_t comes from below
    d.wire([(1.0, top), (1.0, bus), (xr, bus), (xz, bus)])
    d.wire([(1.3, -0.4), (1.3, bus)])
    d.label(1.45, -0.45, r"$X_t$")
    d.wire([(xz, bus), (xn, bus)])
    # reset gate: scales H_{t-1} W_hn + b_hn before it enters the candidate
    d.wire([(xr, bus), (xr, gate_y - 0.3)], "reset", arrow=True)
    d.box(xr, gate_y, r"$\sigma$", "reset")
    d.label(xr - 0.75, gate_y + 0.45, r"$R_t$", "reset")
    d.wire([(xr, gate_y + 0.3), (xr, 3.5), (4.9, 3.5), (4.9, gate_y + 0.27)], "reset", arrow=True)
    d.wire([(4.9, bus), (4.9, gate_y - 0.27)], "reset", arrow=True)
    d.label(4.95, 1.45, r"$H_{t-1}W_{hn}$", "reset", fontsize=9)
    d.node(4.9, gate_y, r"$\times$", "reset")
    d.wire([(4.9 + 0.27, gate_y), (xn - 0.45, gate_y)], "reset", arrow=True)
    d.wire([(xn, bus), (xn, gate_y - 0.3)], arrow=True)
    d.box(xn, gate_y, r"$\tanh$")
    d.label(xn + 0.5, gate_y - 0.6, r"$N_t$")
    # update gate: Z * H_{t-1} on the state wire, (1 - Z) * N added to it
    d.wire([(xz, bus), (xz, gate_y - 0.3)], "update", arrow=True)
    d.box(xz, gate_y, r"$\sigma$", "update")
    d.label(xz + 0.5, gate_y - 0.6, r"$Z_t$", "update")
    d.wire([(xz, gate_y + 0.3), (xz, top - 0.27)], "update", arrow=True)
    d.node(xz, top, r"$\times$", "update")
    d.wire([(xz, 4.2), (xmix - 0.85, 4.2)], "update", arrow=True)
    d.box(xmix - 0.55, 4.2, "1-", "update", w=0.45, h=0.4)
    d.wire([(xmix - 0.3, 4.2), (xmix - 0.27, 4.2)], "update")
    d.wire([(xn, gate_y + 0.3), (xn, 3.4), (xmix, 3.4), (xmix, 4.2 - 0.27)], arrow=True)
    d.node(xmix, 4.2, r"$\times$", "update")
    d.wire([(xmix, 4.2 + 0.27), (xmix, top - 0.27)], "update", arrow=True)
    d.node(xmix, top, "+", "update")
    return d.ax
