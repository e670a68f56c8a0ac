"""The OS-level sandbox around submitted code: bubblewrap (``bwrap``), one per submission.

Only the student's code is sandboxed, never nbgrader. nbgrader runs as the grading process in the
submission's workspace and starts the notebook's kernel through a kernelspec whose command is this
module (``python -m instructor.grading.sandbox kernel CONFIG -f CONNECTION_FILE``). That wrapper, still
outside the sandbox, copies the notebook's folder into ``WORKSPACE/sandbox/submission``, sets the
limits and replaces itself with ``bwrap ... setpriv ... python -m ipykernel_launcher``. Inside, the
kernel sees:

- ``/submission`` (read-write, its working folder): a tmpfs of ``disk_mb`` MB into which that copy is
  copied when the sandbox starts; what the kernel writes there is lost with the sandbox (nbgrader
  reads nothing from it) and can never fill the disk;
- ``/course/utils`` (read-only): a copy of the student edition's ``utils`` package (the helpers students
  import, which hold no answer and no reference), on ``PYTHONPATH``; never the instructors' code;
- the Python environment (``sys.prefix``), ``/usr`` and the system libraries, a few files of ``/etc``
  (all read-only); a private ``/tmp`` (a tmpfs of ``disk_mb`` MB), ``/dev`` and ``/proc`` (its own
  processes only);
- the folder of its connection file and unix sockets (``transport = ipc``: the kernel has no network,
  not even loopback, so it talks to nbgrader through unix sockets in a folder of their own).

Nothing else of the file system: not the solutions, not any gradebook, not other students' files, not
the instructor's checkout. New PID, network, IPC and UTS namespaces; ``--die-with-parent`` and the PID
namespace make every process the kernel starts die with it (a double-forked process included). The
kernel runs as a uid of its own (``100000 + the wrapper's pid``) without capabilities, so
``RLIMIT_NPROC`` (which Linux does not enforce for root) caps its processes, ``RLIMIT_AS`` its
memory and ``RLIMIT_FSIZE`` the size of any file it writes (``disk_mb``). The wall time of a whole
submission is capped by the grading process, which kills nbgrader, and with it the sandbox.

``run_sandboxed(argv, workspace, limits)`` runs any other command in the same kind of sandbox over a
copy of a workspace (the hook for further checks of a submission, e.g. an independent check that
loads the answers in a fresh process): see its docstring.
"""

import dataclasses
import functools
import itertools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

# System folders every Python needs (read-only); symlinks (e.g. /lib -> usr/lib) are recreated as links.
SYSTEM = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32"]
ETC = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group", "alternatives",
       "fonts", "mime.types"]
# Environment variables the sandboxed process may inherit (everything else is cleared).
PASS_ENV = ["NBGRADER_EXECUTION", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONWARNINGS", "PYTHONHASHSEED", "LANG",
            "LC_ALL", "MPLBACKEND", "CUDA_VISIBLE_DEVICES"]
UID_BASE = 100000
SHARED = "_shared"  # WORK/runs/_shared/utils: see execute.SHARED
_RUNS = itertools.count()
IN = "/.submission-in"
# Files a notebook writes in its folder that the grader keeps (in WORKSPACE/sandbox/, next to the copy):
# the model the training part's given cell saves under grading, for the independent check.
KEPT = ["trained_model.pt"]
# Inside the sandbox, before the command: copy the read-only submission into the writable /submission.
COPY_IN = ["/bin/sh", "-c", f'[ ! -d {IN} ] || cp -R {IN}/. /submission/ || exit 125; exec "$@"', "sandbox"]
INSTALL = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: `dnf install bubblewrap`, "
           "Arch: `pacman -S bubblewrap`; it needs Linux with user namespaces, or root), or grade with "
           "--no-sandbox on a machine where the students' code can do no harm")


@dataclasses.dataclass
class Limits:
    """Caps for one sandbox: memory_mb (address space, RLIMIT_AS), processes (RLIMIT_NPROC for the
    sandbox's own uid; threads count), wall_s (seconds for one whole submission), disk_mb (size of each
    of its tmpfs, /submission and /tmp, and of any file it writes: RLIMIT_FSIZE)."""

    memory_mb: int = 4096
    processes: int = 128
    wall_s: int = 900
    disk_mb: int = 512
    output_cell_kb: int = 1024  # outputs nbgrader keeps per cell (outputs.CappedExecute)
    output_notebook_kb: int = 8192  # ... and per notebook
    cpus: float = 0.0  # CPU quota of each submission's cgroup (0: no cgroup; grade_folder: cores / jobs)


class Unavailable(RuntimeError):
    """No sandbox can be made here; the message says why and what to install."""


@functools.cache
def find(kind="auto"):
    """The sandbox to use: "bwrap" (or "none" when asked). Raises Unavailable with the reason."""
    if kind == "none":
        return "none"
    if kind not in ("auto", "bwrap"):
        raise ValueError(f"sandbox: expected auto, bwrap or none, got {kind!r}")
    if not sys.platform.startswith("linux"):
        raise Unavailable(f"no sandbox on {sys.platform}: grading needs Linux namespaces; grade on Linux, or "
                          "pass --no-sandbox on a machine where the students' code can do no harm")
    if not shutil.which("bwrap"):
        raise Unavailable(f"no sandbox: `bwrap` is not installed; {INSTALL}")
    argv = base_argv(None, None, uid=_uid(), disk_mb=1) + ["true"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise Unavailable(f"no sandbox: bwrap does not start ({err}); {INSTALL}") from None
    if proc.returncode != 0:
        reason = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        if "nknown option" in reason[0] or "nrecognized option" in reason[0]:
            raise Unavailable(f"no sandbox: this bwrap is too old ({reason[0][:120]}); grading needs bubblewrap 0.8 "
                              f"or newer (--size); {INSTALL}")
        if "setpriv" in reason[0]:
            raise Unavailable(f"no sandbox: `setpriv` (util-linux) is missing ({reason[0][:120]}); install util-linux")
        raise Unavailable(f"no sandbox: bwrap cannot make namespaces here ({reason[0][:160]}); the kernel may not "
                          f"allow user namespaces (sysctl kernel.unprivileged_userns_clone=1), or {INSTALL}")
    return "bwrap"


def available(kind="auto"):
    try:
        find(kind)
        return True
    except Unavailable:
        return False


def _python_dirs():
    dirs = []
    for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.realpath(sys.prefix),
              os.path.realpath(sys.base_prefix), os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}:
        if p and p != "/" and not any(p.startswith(s + "/") for s in SYSTEM) and p not in dirs:
            dirs.append(p)
    return sorted(dirs)


def base_argv(submission, utils_copy, *, binds=(), uid=None, disk_mb=None, files=()):
    """The bwrap command line up to (not including) the command: file system, namespaces, environment.

    submission: a host folder bound read-only at /.submission-in (copied into /submission by ``COPY_IN``)
    or None; utils_copy: the folder bound read-only at /course/utils (or None); binds: (host, inside)
    folders bound read-write; uid: the uid to run as (root only); disk_mb: size of /tmp and /submission;
    files: (host file, name) pairs: existing host files bound read-write at /submission/NAME (what the
    notebook writes there outlives the sandbox; its size is capped by RLIMIT_FSIZE like any file).
    """
    argv = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox"]
    root = os.geteuid() == 0
    if not root:
        argv.append("--unshare-user")
    for d in SYSTEM:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    for name in ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    made = {"/tmp", "/course", "/submission", IN}
    size = [] if not disk_mb else ["--size", str(int(disk_mb) * 2**20)]

    def parents(path):
        out = []
        for parent in reversed(pathlib.PurePosixPath(path).parents):
            p = str(parent)
            if p != "/" and p not in made and not any(p == s or p.startswith(s + "/") for s in SYSTEM):
                made.add(p)
                out += ["--perms", "0755", "--dir", p]
        return out

    # a private /tmp, writable by the sandbox's uid (bwrap's default mode for a tmpfs is 0755)
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "01777", *size, "--tmpfs", "/tmp"]
    for d in _python_dirs():
        argv += parents(d) + ["--ro-bind", d, d]
    if utils_copy is not None:
        argv += ["--perms", "0755", "--dir", "/course", "--ro-bind", str(utils_copy), "/course/utils"]
    for host, inside in binds:
        argv += parents(inside) + ["--bind", str(host), str(inside)]
    # the working folder: a tmpfs of its own (the sandbox cannot fill the disk through it)
    argv += ["--perms", "01777", *size, "--tmpfs", "/submission", "--chdir", "/submission"]
    if submission is not None:
        argv += ["--ro-bind", str(submission), IN]
    for host, name in files:
        argv += ["--bind", str(host), f"/submission/{name}"]
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    env.update({"HOME": "/tmp", "IPYTHONDIR": "/tmp/.ipython", "MPLCONFIGDIR": "/tmp/.mpl", "PYTHONPATH": "/course",
                "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin", "PYTHONNOUSERSITE": "1"})
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONWARNINGS", "ignore")
    argv.append("--clearenv")
    for k, v in sorted(env.items()):
        argv += ["--setenv", k, v]
    if root and uid is not None:  # drop to a uid of its own: no capabilities, RLIMIT_NPROC enforced
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--", "setpriv", f"--reuid={uid}",
                 f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    argv.append("--")
    return argv


def _limit(limits):
    import resource

    mem = int(limits.memory_mb) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    if os.geteuid() == 0:  # per uid: only meaningful for the sandbox's own uid
        resource.setrlimit(resource.RLIMIT_NPROC, (int(limits.processes), int(limits.processes)))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if getattr(limits, "disk_mb", None):
        size = int(limits.disk_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


STUDENT_UTILS = pathlib.Path(__file__).resolve().parents[2] / "utils"  # the student edition's helpers


def _uid():
    return UID_BASE + os.getpid() if os.geteuid() == 0 else None


def run_sandboxed(argv, workspace, limits=None, *, timeout=None, input=None, utils=None, kind="bwrap"):
    """Run the command ``argv`` in a fresh sandbox of the kind the notebooks' kernels run in.

    Inputs:
    - argv: the command (list of str), e.g. ``["python", "-m", "instructor.independent", "submission.ipynb"]``;
      ``python`` is the grading environment's (first on PATH inside)
    - workspace: a host folder (e.g. ``execute.Context.workspace``, which holds ``submission.ipynb``);
      the command starts in ``/submission``, a writable tmpfs of ``limits.disk_mb`` MB holding a copy of
      it. The host folder itself is never written: what the command writes is lost with the sandbox,
      so it reports on stdout (e.g. one JSON line)
    - limits: ``Limits`` (memory, processes, disk; ``wall_s`` is the timeout unless ``timeout`` is given)
    - input: text for its stdin; utils: the folder bound read-only at /course/utils and on PYTHONPATH
      (default: ``_shared/utils`` in the workspace or a folder above it, made by ``execute.copy_utils``;
      else the course's own ``utils``)
    - kind: "bwrap", or "none" to run it unsandboxed in the workspace (``--no-sandbox``: no caps but
      the timeout)

    Same isolation as the kernel: nothing else of the file system, no network, a uid of its own
    (when run as root), new PID namespace. Returns a ``subprocess.CompletedProcess`` (stdout and stderr
    as text); returncode 124 when the time ran out. Every process it started is gone when it returns.
    """
    limits = limits or Limits()
    workspace = pathlib.Path(workspace).resolve()
    seconds = timeout or limits.wall_s
    if kind == "none":
        cmd = list(argv)
        kw = {"cwd": workspace}
    else:
        lib = pathlib.Path(utils) if utils else (_lib_for(workspace) or STUDENT_UTILS)
        uid = None
        if os.geteuid() == 0:
            uid = UID_BASE + 5_000_000 + (os.getpid() % 1000) * 1000 + next(_RUNS) % 1000
        cmd = base_argv(workspace, lib, uid=uid, disk_mb=limits.disk_mb) + COPY_IN + list(argv)
        kw = {"preexec_fn": lambda: _limit(limits)}
    # output into files, not pipes: a process that outlives the command (unsandboxed) cannot make us wait
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=fout, stderr=ferr, text=True, start_new_session=True, **kw)
        code = None
        try:
            if input is not None:
                proc.stdin.write(input)
                proc.stdin.close()
            code = proc.wait(timeout=seconds)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            pass
        _kill_group(proc)  # on time-out the sandbox; unsandboxed, what it left behind in its session
        if code is None:
            proc.wait()
        out, err = fout, ferr
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code is None:
        return subprocess.CompletedProcess(cmd, 124, stdout, stderr + f"\ntimed out after {seconds} s")
    return subprocess.CompletedProcess(cmd, code, stdout, stderr)


run = run_sandboxed  # the short name


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _lib_for(workspace):
    for parent in [workspace, *workspace.parents]:
        if (parent / SHARED / "utils").is_dir():
            return parent / SHARED / "utils"
    return None


# ------------------------------------------------------------------------------ the kernel wrapper


def kernel_main(config_path, connection_file):
    """Start the notebook's kernel in the sandbox (called by jupyter_client through the kernelspec)."""
    cfg = json.loads(pathlib.Path(config_path).read_text())
    limits = Limits(**cfg["limits"])
    sub = pathlib.Path(cfg["submission"])
    # The connection file and its unix sockets must live in the run's own folder (made by mkdtemp and
    # named in the config): that folder is bound into the sandbox and handed to the sandbox's uid.
    runtime = pathlib.Path(cfg["runtime"]).resolve()
    if pathlib.Path(connection_file).resolve().parent != runtime or not runtime.name.startswith("grade-ipc-"):
        print(f"sandbox: the connection file {connection_file} is not in the run's folder {runtime}", file=sys.stderr)
        return 2
    if sub.exists():
        shutil.rmtree(sub)
    shutil.copytree(os.getcwd(), sub, symlinks=True)  # the notebook's folder, as nbgrader prepared it
    uid = _uid()
    if uid is not None:
        os.chown(runtime, uid, uid)  # that folder and the connection file only, never recursively
        os.chown(connection_file, uid, uid)
    # The files the notebook leaves for the checks after the run (instructor.independent reads the trained model)
    kept = []
    for name in KEPT:
        host = sub.parent / name
        host.write_bytes(b"")
        if uid is not None:
            os.chown(host, uid, uid)
        kept.append((host, name))
    argv = base_argv(sub, cfg.get("utils"), binds=[(runtime, runtime)], uid=uid, disk_mb=limits.disk_mb,
                     files=kept) + COPY_IN
    argv += [sys.executable, "-m", "ipykernel_launcher", "-f", str(pathlib.Path(connection_file).resolve())]
    _limit(limits)
    os.execvp(argv[0], argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 4 and argv[0] == "kernel" and argv[2] == "-f":
        return kernel_main(argv[1], argv[3])
    print("usage: python -m instructor.grading.sandbox kernel CONFIG -f CONNECTION_FILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
