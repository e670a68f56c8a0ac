"""Emulate another machine's arithmetic on this one, for the notebooks that nbval re-executes.

A committed output marked ``# NBVAL_CHECK_OUTPUT`` must read the same on any x86-64 machine. Its text
depends on the CPU through PyTorch's kernels, which PyTorch picks by the processor's vector instructions
(AVX-512, AVX2, none), and through the matrix libraries, which pick their own; and on the thread count
(every lecture fixes its own with ``torch.set_num_threads(1)``). These variables select the kernels of
another machine:

- ``ATEN_CPU_CAPABILITY``: PyTorch's own kernels (``default``, ``avx2``, ``avx512``);
- ``MKL_ENABLE_INSTRUCTIONS`` and ``ONEDNN_MAX_CPU_ISA``: the same cap for MKL and oneDNN.

The test suite runs every notebook under ``NBVAL_MACHINE`` (conftest.py): ``default``, the plain kernels,
which are no real machine's native choice, so the committed outputs (made on an AVX2 or AVX-512 machine)
are always compared with another machine's. ``benchmarks/other_machines.py`` sweeps more machines.
"""

import os

ISA = {"default": ("SSE4_2", "SSE41"), "avx2": ("AVX2", "AVX2"), "avx512": ("AVX512", "AVX512_CORE")}

# The machine the nbval kernels emulate; COURSE_NBVAL_MACHINE overrides it ("native": no emulation).
NBVAL_MACHINE = os.environ.get("COURSE_NBVAL_MACHINE", "default-1")


def machine_env(name):
    """Environment variables that make PyTorch compute like machine ``name``.

    Inputs:
    - name: ``<capability>-<threads>``, capability one of ``default``, ``avx2``, ``avx512`` (e.g. ``avx2-1``:
      an AVX2 CPU, one thread); or ``native``: this machine as it is (an empty dict).

    Returns a dict of variables to add to a kernel's environment.
    """
    if name == "native":
        return {}
    capability, _, threads = name.partition("-")
    if capability not in ISA or not threads.isdigit():
        raise ValueError(f"machine: expected <{'|'.join(ISA)}>-<threads> such as 'avx2-1', or 'native'; got {name!r}")
    mkl, onednn = ISA[capability]
    return {"ATEN_CPU_CAPABILITY": capability, "MKL_ENABLE_INSTRUCTIONS": mkl, "ONEDNN_MAX_CPU_ISA": onednn,
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
