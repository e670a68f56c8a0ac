import os
import pathlib
import sys

# Two test workers share two cores: one torch thread per process (and per notebook kernel, which
# inherits this environment) avoids oversubscription that makes small recurrent loops many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Fixtures include deliberately broken notebooks: never execute them with nbval.
collect_ignore = ["fixtures"]
