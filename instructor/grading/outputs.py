"""nbgrader's ``Execute`` with a cap on what it keeps of the kernel's outputs (bytes per cell, per notebook).

The kernel is the student's: a cell that prints 300 MB would otherwise be kept whole by nbgrader, written
into the autograded notebook and copied into the feedback. ``CappedExecute`` keeps a cell's outputs
until they reach ``cell_bytes`` (and the notebook's until ``notebook_bytes``), then drops the rest and
adds one stream output saying so (``sanitize.CUT``), which the feedback turns into a line. It runs in
nbgrader's process (outside the sandbox) and is put in place of ``Execute`` by the run's
``nbgrader_config.py`` (``execute.execute``): ``c.Autograde.autograde_preprocessors = autograde_preprocessors()``.
"""

from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer

from .sanitize import CUT


def _size(msg):
    content = msg.get("content", {}) or {}
    if msg.get("msg_type") == "stream":
        return len(content.get("text", "") or "")
    if msg.get("msg_type") == "error":
        return len(str(content.get("evalue", ""))) + sum(len(str(x)) for x in content.get("traceback", []) or [])
    data = content.get("data", {}) or {}
    return sum(len(v) if isinstance(v, str) else len(str(v)) for v in data.values()) + 64


class CappedExecute(Execute):
    cell_bytes = Integer(1 << 20, help="bytes of output kept per cell").tag(config=True)
    notebook_bytes = Integer(8 << 20, help="bytes of output kept per notebook").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._cell_sizes, self._total, self._cut = {}, 0, set()
        return super().preprocess(nb, resources, km)

    def output(self, outs, msg, display_id, cell_index):
        size = _size(msg)
        used = self._cell_sizes.get(cell_index, 0)
        if cell_index in self._cut or used + size > self.cell_bytes or self._total + size > self.notebook_bytes:
            if cell_index not in self._cut:
                self._cut.add(cell_index)
                which = "cell" if used + size > self.cell_bytes else "notebook"
                cap = self.cell_bytes if which == "cell" else self.notebook_bytes
                outs.append(new_output("stream", name="stderr",
                                       text=f"\n{CUT}: over the {which}'s cap of {cap} bytes; the rest was dropped\n"))
            return None
        self._cell_sizes[cell_index] = used + size
        self._total += size
        return super().output(outs, msg, display_id, cell_index)


def autograde_preprocessors():
    """nbgrader's autograde preprocessors with ``CappedExecute`` in place of ``Execute``."""
    from nbgrader.converters.autograde import Autograde

    return [CappedExecute if p is Execute else p for p in Autograde.class_traits()["autograde_preprocessors"].default()]
