"""A resource group of its own for each submission: nbgrader, the kernel's sandbox and all they start.

``find()`` says what this machine allows: cgroup v1 (the ``cpu``, ``memory`` and ``pids`` controllers
mounted under ``/sys/fs/cgroup/<controller>`` and writable: our grading machines, no systemd), cgroup v2
(``/sys/fs/cgroup/cgroup.controllers``, with ``cpu``, ``memory`` and ``pids`` delegable to the grader's
own cgroup), or nothing (the reason is given and the summary says so). ``Group(name, ...)`` is one
submission's group, made under the grader's own cgroup (``.../grading-PID/NAME``):

- CPU: a quota of ``cpus`` cores (v1 ``cpu.cfs_quota_us``, v2 ``cpu.max``) and equal shares/weight,
  so that processes a kernel forks, ``setsid()`` or not, share that quota: a spinner cannot take a
  neighbour's core;
- memory: ``memory_mb`` for the whole group (nbgrader and kernel together; the kernel's own address
  space is capped lower by ``RLIMIT_AS``);
- tasks: ``pids`` processes and threads.

``wrap(argv)`` is the command that joins the group before it execs ``argv`` (a shell that writes its pid
into each ``cgroup.procs``); ``kill()`` kills every process in it (frozen first where the freezer is
mounted, so nothing forks meanwhile); ``remove()`` kills and removes the group. Groups of a grader that
died (SIGKILL) are removed by the next ``find()`` (``sweep``).
"""

import functools
import os
import pathlib
import shlex
import signal
import time

MOUNT = pathlib.Path("/sys/fs/cgroup")
V1 = ("cpu", "memory", "pids")


def _own(controller):
    """The grader's own cgroup path for a v1 controller (or "" for v2's unified line)."""
    for line in pathlib.Path("/proc/self/cgroup").read_text().splitlines():
        _id, ctrls, path = line.split(":", 2)
        if (controller is None and _id == "0") or (controller and controller in ctrls.split(",")):
            return path
    return None


def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


@functools.cache
def find():
    """("v1" | "v2", {controller: base folder}) or (None, reason)."""
    if not MOUNT.is_dir():
        return None, "no /sys/fs/cgroup"
    if (MOUNT / "cgroup.controllers").exists():  # pure v2
        own = _own(None)
        base = MOUNT / own.lstrip("/") / f"grading-{os.getpid()}"
        try:
            have = (MOUNT / own.lstrip("/") / "cgroup.controllers").read_text().split()
            missing = [c for c in V1 if c not in have]
            if missing:
                return None, f"cgroup v2 without the {', '.join(missing)} controller(s) delegated to {own}"
            base.mkdir(exist_ok=True)
            _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in V1))
        except OSError as err:
            return None, f"cgroup v2 not writable here ({err.strerror}: {own})"
        _sweep({"unified": base.parent})
        return "v2", {"unified": base}
    bases = {}
    for ctrl in (*V1, "freezer"):
        own = _own(ctrl)
        root = MOUNT / ctrl
        if own is None or not (root / "cgroup.procs").exists():
            if ctrl == "freezer":
                continue
            return None, f"cgroup v1 controller {ctrl} not mounted at {root}"
        base = root / own.lstrip("/") / f"grading-{os.getpid()}"
        try:
            base.mkdir(exist_ok=True)
        except OSError as err:
            if ctrl == "freezer":
                continue
            return None, f"cgroup v1 {ctrl} not writable here ({err.strerror}: {base.parent})"
        bases[ctrl] = base
    _sweep({c: b.parent for c, b in bases.items()})
    return "v1", bases


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _sweep(parents):
    """Remove the groups of graders that are gone (killed before they could remove them)."""
    for parent in parents.values():
        for d in parent.glob("grading-*"):
            pid = d.name.split("-", 1)[1]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                for sub in sorted(d.glob("*/"), reverse=True):
                    _kill_and_rmdir(sub)
                _kill_and_rmdir(d)


def _procs(folder):
    try:
        return [int(x) for x in (folder / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _kill_all(pids_of, freezer=None):
    """SIGKILL the processes ``pids_of()`` lists until there are none (frozen meanwhile, with a freezer)."""
    for _ in range(100):
        pids = pids_of()
        if not pids:
            return
        if freezer is not None:
            _try_write(freezer / "freezer.state", "FROZEN")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if freezer is not None:
            _try_write(freezer / "freezer.state", "THAWED")
        time.sleep(0.05)


def _kill_and_rmdir(folder):
    _kill_all(lambda: _procs(folder))
    try:
        folder.rmdir()
    except OSError:
        pass


def _try_write(path, value):
    try:
        _write(path, value)
    except OSError:
        pass


def describe(cpus, memory_mb, pids):
    version, info = find()
    if version is None:
        return f"no cgroup ({info}): submissions share the CPU and memory"
    return f"cgroup {version} per submission ({cpus:g} CPU, memory {memory_mb} MB, {pids} tasks)"


class Group:
    """One submission's cgroup; see the module's docstring."""

    def __init__(self, name, *, cpus=1.0, memory_mb=5120, pids=512):
        self.version, bases = find()
        if self.version is None:
            raise OSError(bases)
        self.dirs = {ctrl: base / name for ctrl, base in bases.items()}
        for d in self.dirs.values():
            if d.exists():
                _kill_and_rmdir(d)
            d.mkdir()
        period = 100_000
        if self.version == "v1":
            _write(self.dirs["cpu"] / "cpu.shares", 1024)
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", period)
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", int(cpus * period))
            _write(self.dirs["memory"] / "memory.limit_in_bytes", int(memory_mb) * 2**20)
            _try_write(self.dirs["memory"] / "memory.swappiness", 0)
            _write(self.dirs["pids"] / "pids.max", int(pids))
        else:
            d = self.dirs["unified"]
            _write(d / "cpu.max", f"{int(cpus * period)} {period}")
            _write(d / "memory.max", int(memory_mb) * 2**20)
            _try_write(d / "memory.swap.max", 0)
            _write(d / "pids.max", int(pids))

    def wrap(self, argv):
        files = " ".join(shlex.quote(str(d / "cgroup.procs")) for d in self.dirs.values())
        return ["/bin/sh", "-c", f'echo $$ | tee {files} > /dev/null || exit 126; exec "$@"', "cgroup", *argv]

    def pids(self):
        return sorted({p for d in self.dirs.values() for p in _procs(d)})

    def oom_killed(self):
        """Whether the memory cap killed something in the group."""
        try:
            if self.version == "v1":
                text = (self.dirs["memory"] / "memory.oom_control").read_text()
            else:
                text = (self.dirs["unified"] / "memory.events").read_text()
            return any(line.split()[0] == "oom_kill" and int(line.split()[1]) > 0 for line in text.splitlines())
        except (OSError, IndexError, ValueError):
            return False

    def kill(self):
        """SIGKILL every process in the group (frozen meanwhile where the freezer is mounted)."""
        if self.version == "v2":
            _try_write(self.dirs["unified"] / "cgroup.kill", 1)
        _kill_all(self.pids, self.dirs.get("freezer"))

    def remove(self):
        self.kill()
        for d in self.dirs.values():
            _kill_and_rmdir(d)
