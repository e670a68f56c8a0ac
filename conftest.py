"""Pytest setup for the whole suite, the notebooks that nbval re-executes included.

nbval waits a hard-coded 5 s for each output message that follows a cell's reply (nbval issues #136
and #231: not configurable). On a busy 2-core machine a kernel can take longer than that to flush a
cell's last messages, and nbval then fails a cell that ran correctly ("Timeout of 5 seconds exceeded
waiting for output"). The whole cell keeps its own limit, ``--nbval-cell-timeout`` in pyproject.toml.
"""

import os

import nbval.kernel
import nbval.plugin

from tests.machines import NBVAL_MACHINE, machine_env

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


# The notebooks' kernels compute as another machine would (tests/machines.py): an output that nbval
# compares as text must not depend on which CPU made the committed copy.
_start_new_kernel = nbval.kernel.start_new_kernel


def _start_kernel_as_other_machine(*args, **kwargs):
    kwargs["env"] = {**os.environ, **kwargs.get("env", {}), **machine_env(NBVAL_MACHINE)}
    return _start_new_kernel(*args, **kwargs)


nbval.kernel.start_new_kernel = _start_kernel_as_other_machine
