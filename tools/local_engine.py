"""A Beam engine on this machine in processes of its own, apart from the launcher.

With the DirectRunner the launcher *is* the engine: every element a job
buffers counts against the process that called `clipdedup`, so the
launcher's memory cannot be told from the job's. `LocalEngine` starts Beam's
Python job service (`local_job_service_main`) as a child process; a
launcher given `engine.beam_args` submits to it with the PortableRunner, as
it would submit to Dataflow, and holds only what it reads itself.

Where the user code runs is `worker`:
- "embedded" (the default): inside the job service, as the DirectRunner
  runs it (Beam's embedded Python environment, no data over gRPC).
- "pool": in SDK workers started by a worker pool (`worker_pool_main`),
  data and state over gRPC as on a remote cluster. On this Beam (2.77) that
  path lost grouped elements of a 5,000-member clique (docs/scaling.md), so
  it is kept for finding that out, not for measuring.

The engine's memory is sampled from `/proc` (the job service, the pool and
every worker they start). Their logs go to `engine.log_paths` (the job
service logs at INFO, where Beam reports data it discarded).

    with LocalEngine() as engine:
        rc, launcher_rss = run_launcher(["clipdedup", "mine", ..., *engine.beam_args])
    print(engine.peak_rss_bytes)

Used by `bench/mine.py` and the dense-cluster test; Linux only (`/proc`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

SAMPLE_SECONDS = 0.1
HWM_SAMPLE_SECONDS = 0.02


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[2]} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("localhost", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{proc.args[2]} did not listen on port {port} within {timeout:.0f} s")


def _children() -> dict[int, list[int]]:
    """ppid -> pids of every process now in /proc."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                # The command name is in parentheses and may hold spaces.
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(name))
    return tree


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_bytes(roots: list[int]) -> int:
    """Resident memory of `roots` and all their descendants, summed."""
    tree, total, todo = _children(), 0, list(roots)
    while todo:
        pid = todo.pop()
        total += _rss_bytes(pid)
        todo.extend(tree.get(pid, ()))
    return total


class LocalEngine:
    """A Beam job service (and for worker="pool" a worker pool) on free ports; see above."""

    def __init__(self, start_timeout: float = 120.0, log_dir: str | None = None,
                 worker: str = "embedded"):
        if worker not in ("embedded", "pool"):
            raise ValueError(f"worker must be 'embedded' or 'pool', not {worker!r}")
        self._start_timeout = start_timeout
        self.worker = worker
        # The engine's own logs (Beam logs dropped data at INFO, a failed bundle at ERROR)
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="clipdedup-engine-")
        os.makedirs(self.log_dir, exist_ok=True)
        self.log_paths: list[str] = []
        self._procs: list[subprocess.Popen] = []
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self.idle_rss_bytes = self.peak_rss_bytes = 0  # the engine's RSS started, and at most
        self.beam_args: list[str] = []

    def __enter__(self) -> LocalEngine:
        # Workers are started as `python`: the pool must find this interpreter first.
        # An embedded worker unpickles this project's DoFns in the job service.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep
                   + os.environ.get("PATH", ""),
                   PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        job_port = _free_port()
        pool_port = _free_port() if self.worker == "pool" else None
        services = [("apache_beam.runners.portability.local_job_service_main", "--port", job_port)]
        if pool_port:
            services.append(("apache_beam.runners.worker.worker_pool_main", "--service_port",
                             pool_port))
        try:
            for module, flag, port in services:
                log_path = os.path.join(self.log_dir, module.rsplit(".", 1)[1] + ".log")
                self.log_paths.append(log_path)
                with open(log_path, "ab") as log:
                    proc = subprocess.Popen([sys.executable, "-m", module, flag, str(port)],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
                self._procs.append(proc)
                _wait_for_port(port, proc, self._start_timeout)
        except BaseException:
            self._terminate()
            raise
        environment = (["--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"]
                       if pool_port else
                       ["--environment_type=beam:env:embedded_python:v1"])
        self.beam_args = ["--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
                          *environment,
                          # the state stream's deadline; the default ends jobs over 5 min
                          "--job_server_timeout=86400"]
        self.idle_rss_bytes = self.peak_rss_bytes = tree_rss_bytes([p.pid for p in self._procs])
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        roots = [p.pid for p in self._procs]
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak_rss_bytes = max(self.peak_rss_bytes, tree_rss_bytes(roots))

    def _terminate(self) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        self._terminate()


def _hwm_bytes(pid: int) -> int:
    """The peak resident memory of `pid`'s own address space (`VmHWM`), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def run_launcher(argv: list[str], env: dict | None = None, timeout: float | None = None
                 ) -> tuple[int, int, str]:
    """Runs `argv` as a process of its own: (exit code, its peak RSS in bytes, its output).

    The peak is the launcher's own address space's high-water mark (`VmHWM`),
    sampled until it exits. Not `ru_maxrss` from `wait4`: Linux folds the
    address space the child was forked from into it at `exec`, so a launcher
    started by a process holding 2 GB would report 2 GB however little it used.
    """
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)
    reader.start()
    peak, exited = [0], threading.Event()

    def sample() -> None:
        # VmHWM only grows, so the last reading before exit holds the peak up to it.
        while not exited.is_set():
            peak[0] = max(peak[0], _hwm_bytes(proc.pid))
            exited.wait(HWM_SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timer = threading.Timer(timeout, proc.kill) if timeout else None
    if timer:
        timer.start()
    try:
        # waitid without reaping: the exited process's /proc entry stays readable
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        exited.set()
        sampler.join()
        _, status, _ = os.wait4(proc.pid, 0)
    finally:
        exited.set()
        if timer:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    return proc.returncode, peak[0], b"".join(output).decode(errors="replace")
