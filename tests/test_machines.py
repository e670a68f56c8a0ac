"""The claims the lectures check in place of compared text, and the other machine nbval's kernels emulate."""

import os
import subprocess
import sys

import nbval.kernel
import pytest

from tests.machines import NBVAL_MACHINE, machine_env
from utils import claims

# ---------------------------------------------------------------- utils.claims


def test_near_passes_within_tolerance_and_prints(capsys):
    claims.near("dates, test exact match", 0.87, quoted=0.85, tol=0.04)
    assert capsys.readouterr().out == "dates, test exact match: 0.870 (the text: 0.85 ± 0.04)\n"


@pytest.mark.parametrize("value", [0.80, 0.90, float("nan")])
def test_near_fails_outside_tolerance_and_says_by_how_much(value):
    with pytest.raises(AssertionError, match=r"dates, test exact match: this run gives .* the text quotes 0\.85"):
        claims.near("dates, test exact match", value, quoted=0.85, tol=0.04)


def test_near_accepts_a_one_element_tensor():
    import torch

    claims.near("mean", torch.tensor([0.5, 0.7]).mean(), quoted=0.6, tol=0.01)


@pytest.mark.parametrize("tol", [0, -0.1, True, "0.1"])
def test_near_rejects_a_bad_tolerance(tol):
    with pytest.raises(ValueError, match="tol: expected a positive number"):
        claims.near("x", 1.0, quoted=1.0, tol=tol)


def test_holds(capsys):
    claims.holds("layer norm ahead on every seed", True)
    assert capsys.readouterr().out == "layer norm ahead on every seed: yes\n"
    with pytest.raises(AssertionError, match="layer norm ahead on every seed: not so in this run"):
        claims.holds("layer norm ahead on every seed", False)
    with pytest.raises(TypeError, match="condition: expected a bool, got Tensor"):
        import torch

        claims.holds("x", torch.tensor(True))


# ---------------------------------------------------------------- the emulated machine


@pytest.mark.parametrize("name, capability", [("default-1", "DEFAULT"), ("avx2-2", "AVX2")])
def test_machine_env_selects_pytorchs_kernels(name, capability):
    env = {**os.environ, **machine_env(name)}
    code = "import torch; print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [capability, name.split("-")[1]]


@pytest.mark.parametrize("bad", ["avx3-1", "default", "avx2-x", ""])
def test_machine_env_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="machine: expected"):
        machine_env(bad)


def test_nbval_kernels_run_as_the_emulated_machine():
    """conftest.py starts every notebook kernel nbval runs with NBVAL_MACHINE's variables."""
    km, kc = nbval.kernel.start_new_kernel(kernel_name="python3")
    try:
        msg_id = kc.execute("import os; print(os.environ.get('ATEN_CPU_CAPABILITY'))")
        lines = []
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                lines.append(msg["content"]["text"].strip())
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert lines == [machine_env(NBVAL_MACHINE).get("ATEN_CPU_CAPABILITY", "None")]
