"""Pytest setup for the whole suite, the notebooks that nbval re-executes included.

nbval waits a hard-coded 5 s for each output message that follows a cell's reply (nbval issues #136
and #231: not configurable). On a busy 2-core machine a kernel can take longer than that to flush a
cell's last messages, and nbval then fails a cell that ran correctly ("Timeout of 5 seconds exceeded
waiting for output"). The whole cell keeps its own limit, ``--nbval-cell-timeout`` in pyproject.toml.
"""

import os

import nbval.plugin

# No progress bars in the notebooks nbval re-executes (their kernels inherit this environment): nbval
# reads a cell's outputs only after the cell has finished, and the thousands of widget messages of a long
# training cell's bar can overflow the kernel's output queue, so that nbval waits for a message that was
# dropped. The committed notebooks keep their bars; only the test run goes without.
os.environ.setdefault("COURSE_PROGRESS", "0")

OUTPUT_TIMEOUT_S = 120

_cell_init = nbval.plugin.IPyNbCell.__init__


def _patient_cell_init(self, *args, **kwargs):
    _cell_init(self, *args, **kwargs)
    self.output_timeout = OUTPUT_TIMEOUT_S


nbval.plugin.IPyNbCell.__init__ = _patient_cell_init
