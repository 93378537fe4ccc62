"""One supervised child process: started in its own session (so a terminal's Ctrl-C
reaches only us and we decide the stop order), output to its own log file, restarted
with exponential backoff when it dies unexpectedly."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger("gossamer.sidecar")

BACKOFF_START_S = 0.2
BACKOFF_MAX_S = 10.0
HEALTHY_AFTER_S = 30.0
"""A process that ran this long has its backoff reset."""


class StartError(RuntimeError):
    """The command could not be executed at all (missing file, no permission)."""


_PR_SET_PDEATHSIG = 1


def _die_with_parent_hook() -> Callable[[], None]:
    """What the child runs before exec to be SIGKILLed when its parent dies (Linux
    prctl). libc is looked up here, in the parent: the child only makes the call."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return functools.partial(prctl, _PR_SET_PDEATHSIG, int(signal.SIGKILL))


def process_environ(pid: int) -> list[str]:
    """The environment a running process was started with (``NAME=value`` items)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


class _Adopted:
    """A process we did not start (left running by an earlier ``up`` that was killed):
    no exit status to wait for, so it is polled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    async def wait(self) -> int:
        # Gone, or a zombie (an empty command line) its new parent has yet to reap.
        while self.returncode is None:
            if process_argv(self.pid) is None:
                self.returncode = -1  # its real status went to its new parent
                break
            await asyncio.sleep(0.2)
        return self.returncode


def process_argv(pid: int) -> list[str] | None:
    """The command line of a running process, or None if there is none."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").rstrip("\0").split("\0") if raw else None


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        log_path: Path,
        restart: bool = True,
        on_exit: Callable[[ManagedProcess, int], None] | None = None,
        on_restart: Callable[[ManagedProcess], None] | None = None,
        dies_with_parent: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.restart = restart
        self.on_exit = on_exit
        self.on_restart = on_restart
        self.dies_with_parent = dies_with_parent
        """Killed by the kernel when the process that started it dies (``gossamer run``:
        nobody else would ever stop it). ``up``'s children outlive it, to be taken over."""
        self.restarts = 0
        self.last_exit: int | None = None
        self.last_error = ""
        self._proc: asyncio.subprocess.Process | _Adopted | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._started_at = 0.0

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    preexec_fn=_die_with_parent_hook() if self.dies_with_parent else None,
                )
            except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
                raise StartError(f"cannot run {self.argv[0]!r} in {self.cwd}: {exc}") from exc
        self._started_at = time.monotonic()
        log.debug("%s started, pid %s", self.name, proc.pid)
        return proc

    async def start(self) -> None:
        """Spawn now (errors raise to the caller), then supervise in the background."""
        self._stopping = False
        self._proc = await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name=f"supervise {self.name}")

    def adopt(self, pid: int, env_marker: str = "") -> bool:
        """Supervise ``pid``, started by an earlier ``up``, as if we had started it.
        It must run our command, or (with ``env_marker``, e.g. ``NAME=value``) have that
        in its environment: a command such as ``sh -c 'exec app'`` has replaced its
        command line. False (and nothing changes) if ``pid`` is not ours."""
        if env_marker:
            if process_argv(pid) is None or env_marker not in process_environ(pid):
                return False
        elif process_argv(pid) != self.argv:
            return False
        self._stopping = False
        self._proc = _Adopted(pid)
        self._started_at = time.monotonic()
        self._task = asyncio.create_task(self._supervise(), name=f"supervise {self.name}")
        return True

    async def _supervise(self) -> None:
        backoff = BACKOFF_START_S
        while True:
            proc = self._proc
            assert proc is not None
            code = await proc.wait()
            self.last_exit = code
            if self._stopping:
                return
            if self.on_exit is not None:
                self.on_exit(self, code)
            log.warning("%s exited with code %s", self.name, code)
            if not self.restart:
                return
            if time.monotonic() - self._started_at > HEALTHY_AFTER_S:
                backoff = BACKOFF_START_S
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            if self._stopping:
                return
            try:
                self._proc = await self._spawn()
                self.restarts += 1
                if self.on_restart is not None:
                    self.on_restart(self)
            except StartError as exc:
                self.last_error = str(exc)
                log.error("%s", exc)

    async def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``grace_s``; returns the exit code."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._signal(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace_s)
            except TimeoutError:
                self._signal(proc, signal.SIGKILL)
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return proc.returncode if proc is not None else None

    @staticmethod
    def _signal(proc: asyncio.subprocess.Process | _Adopted, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            # The child leads its own session; signal the whole group so that a shell
            # wrapper's children go too.
            os.killpg(proc.pid, sig)
