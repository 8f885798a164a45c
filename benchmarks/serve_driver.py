"""A bare client of `mimic serve` for the benchmark: JSON lines through pipes, each reply stamped
with the moment it was read (the add-on's own client is not needed to time the backend)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from mimic import protocol as p


class Serve:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.replies: queue.Queue = queue.Queue()  # (seconds, message) as read
        self.held: dict = {}  # id -> [(seconds, message)] read, not yet asked for
        self.next_id = 0

    def __enter__(self) -> Serve:
        self.log = open(self.workdir / "serve.log", "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "mimic.cli", "serve"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, cwd=self.workdir)
        threading.Thread(target=self._read, daemon=True).start()
        self.ask(p.HELLO, protocol=p.VERSION, workdir=str(self.workdir))
        return self

    def __exit__(self, *exc) -> None:
        self.process.stdin.close()  # end of stdin: the backend finishes and exits
        self.process.wait(timeout=60)
        self.log.close()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.replies.put((time.perf_counter(), p.decode(line)))

    def send(self, kind: str, **fields) -> tuple[int, float]:
        """The request's id and the moment its line was written."""
        self.next_id += 1
        self.process.stdin.write(p.encode(p.request(kind, self.next_id, **fields)))
        self.process.stdin.flush()
        return self.next_id, time.perf_counter()

    def reply(self, id_: int, progress: bool = False, timeout: float = 600) -> tuple[float, dict]:
        """The next reply to `id_` (progress too if asked), with the moment it was read; replies
        to other requests read meanwhile wait for their turn."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = self.held.setdefault(id_, [])
            while waiting:
                seen, message = waiting.pop(0)
                if progress or message["type"] != p.PROGRESS:
                    return seen, message
            try:
                seen, message = self.replies.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None:
                    raise SystemExit(f"mimic serve exited ({self.process.returncode}); see {self.log.name}") from None
                continue
            self.held.setdefault(message.get("id"), []).append((seen, message))
        raise SystemExit(f"no reply to request {id_} within {timeout} s")

    def ask(self, kind: str, **fields) -> dict:
        id_, _ = self.send(kind, **fields)
        _, message = self.reply(id_)
        if message["type"] != p.RESULT:
            raise SystemExit(f"{kind} failed: {message}")
        return message

    def cancel_in(self, stage: str, delay: float, **generate) -> float:
        """Start a generate, cancel it `delay` seconds after its first progress of `stage`; the
        seconds from writing the cancel to reading the reply that ends the generate."""
        job, _ = self.send(p.GENERATE, **generate)
        while True:
            _, message = self.reply(job, progress=True)
            if message["type"] != p.PROGRESS:
                raise SystemExit(f"the generate ended before its stage {stage!r}: {message}")
            if message["stage"] == stage:
                break
        time.sleep(delay)
        cancel, sent = self.send(p.CANCEL, target=job)
        ended, message = self.reply(job)
        _, answer = self.reply(cancel)
        if message.get("code") != p.CANCELLED or not answer.get("cancelled"):
            raise SystemExit(f"the cancel {'in ' + stage} did not stop the generate: {message}, {answer}")
        return ended - sent
