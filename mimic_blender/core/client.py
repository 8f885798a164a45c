"""The add-on's side of `mimic serve`: start the backend with the configured interpreter, talk
JSON lines to it, stop it. No bpy here (tested with plain Python).

Reader threads drain stdout (replies) and stderr (log) so neither pipe can fill and block the
backend; requests wait on a queue, forwarding progress and sending `cancel` when asked.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import errors
from .backend_source import SOURCE
from .backend_source import protocol as p
from .errors import BackendError
from .processes import backend_env, lower_priority, popen_options, serve_command
from .setup_backend import PACKAGES


class Backend:
    """One `mimic serve` process, kept warm between requests."""

    def __init__(self, python: str):
        self.python = python
        self.process: subprocess.Popen | None = None
        self.replies: queue.Queue = queue.Queue()
        self.log: collections.deque = collections.deque(maxlen=40)
        self.workdir: Path | None = None
        self.facts: dict = {}
        self._next_id = 0
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 180.0) -> dict:
        """Start the process and shake hands; returns the backend's facts."""
        if not self.python or not Path(self.python).is_file():
            raise BackendError(errors.INTERPRETER_MISSING,
                               f"backend interpreter not found: {self.python or '(not set)'}. "
                               "Set it in the add-on's Preferences, or click Set up backend there")
        self.stop()  # a second start must not orphan the first process
        self.workdir = Path(tempfile.mkdtemp(prefix="mimic-session-"))
        try:
            self.process = subprocess.Popen(
                serve_command(self.python, os.getcwd()), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=backend_env(os.environ, str(SOURCE)), cwd=self.workdir,
                **popen_options(background=True))
            lower_priority(self.process.pid)
        except OSError as e:  # not executable, not a program, ...
            self.stop()
            raise BackendError(errors.INTERPRETER_MISSING, f"cannot run the backend interpreter {self.python}: {e}. "
                               "Set it in the add-on's Preferences, or click Set up backend there") from None
        self.replies, self.log = queue.Queue(), collections.deque(maxlen=40)  # nothing from an earlier process
        threading.Thread(target=self._read_replies, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._read_log, args=(self.process.stderr,), daemon=True).start()
        try:
            self.facts = self.request(p.HELLO, timeout=timeout, protocol=p.VERSION, workdir=str(self.workdir))
        except BackendError:
            self.stop()
            raise
        return self.facts

    def request(self, kind: str, on_progress: Callable[[int, int, str], None] | None = None,
                cancelled: Callable[[], bool] | None = None, timeout: float | None = None, **fields) -> dict:
        """Send one request and wait for its result; BackendError on error, death or timeout.

        `cancelled` is polled while waiting; once it says True the backend is asked to cancel, as
        soon as the request is running (its first progress): the backend cancels only a running
        generate, so a cancel sent while the request still waits in its queue would be lost."""
        id_ = self._send(kind, **fields)
        deadline = None if timeout is None else time.monotonic() + timeout
        cancel_sent = running = False
        while True:
            if cancelled is not None and running and not cancel_sent and cancelled():
                self._send(p.CANCEL, target=id_)
                cancel_sent = True
            if deadline is not None and time.monotonic() > deadline:  # progress does not extend it
                raise BackendError(errors.TIMEOUT, f"the backend did not finish '{kind}' within {timeout:g} s")
            try:
                message = self.replies.get(timeout=0.05)
            except queue.Empty:
                if not self.alive:
                    raise self._death() from None
                continue
            if message.get("id") != id_:
                continue  # replies to cancels, or to requests abandoned earlier
            if message["type"] == p.PROGRESS:
                running = True
                if on_progress is not None:
                    on_progress(message["done"], message["total"], message["stage"])
            elif message["type"] == p.ERROR:
                raise BackendError(message["code"], message["message"])
            elif message["type"] == p.RESULT:
                return message

    def stop(self, grace: float = 5.0) -> None:
        """Ask the backend to exit (it does once the request it works on ends), kill it after
        `grace` seconds (no POSIX signal: a kill is TerminateProcess on Windows); remove the
        session folder."""
        if self.process is not None:
            if self.alive:
                try:
                    self._send(p.SHUTDOWN)
                    self.process.wait(grace)
                except (BackendError, subprocess.TimeoutExpired):
                    self.process.kill()
                    self.process.wait()
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                with contextlib.suppress(OSError):  # BrokenPipeError: a request left unsent in the buffer
                    stream.close()
            self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # ------------------------------------------------------------------------------ internals

    def _send(self, kind: str, **fields) -> int:
        with self._lock:
            self._next_id += 1
            id_ = self._next_id
            try:
                self.process.stdin.write(p.encode(p.request(kind, id_, **fields)))
                self.process.stdin.flush()
            except (OSError, ValueError, AttributeError):
                raise self._death() from None
        return id_

    def _read_replies(self, stream) -> None:
        replies, log = self.replies, self.log  # this process's, even after a restart
        with contextlib.suppress(OSError, ValueError):  # ValueError: stop() closed the pipe
            for line in stream:
                try:
                    replies.put(p.decode(line))
                except p.ProtocolError:
                    log.append(f"(not protocol) {line[:200]!r}")

    def _read_log(self, stream) -> None:
        log = self.log
        with contextlib.suppress(OSError, ValueError):
            for line in stream:
                log.append(line.decode(errors="replace").rstrip())

    def _death(self) -> BackendError:
        if self.process is not None:
            try:
                self.process.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
        code = None if self.process is None else self.process.poll()
        time.sleep(0.1)  # let the log reader catch the last lines
        text = "\n".join(self.log)
        for package in PACKAGES:
            if f"No module named '{package}'" in text:
                return BackendError(errors.PACKAGE_MISSING, f"the backend interpreter {self.python} lacks the Python "
                                    f"package '{package}': click Set up backend in the add-on's Preferences, or "
                                    "point them at an environment made by install/setup.sh")
        last = next((line for line in reversed(self.log) if line.strip()), "no message")
        return BackendError(errors.BACKEND_DIED, f"the backend stopped (exit code {code}): {last}")
