"""Long work off Blender's main thread: a function runs on a thread, reports progress and its
outcome through a queue, and checks a cancel flag. A modal operator polls it on a timer; tests
poll it in a loop (timers never fire in the bpy module). No bpy here."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Worker:
    def __init__(self, work: Callable, failures: tuple[type[BaseException], ...]):
        """work(progress, cancelled) -> result; progress(*payload) forwards, cancelled() polls.
        Exceptions of the `failures` types end it as "failed"; others propagate as bugs do."""
        self.events: queue.Queue = queue.Queue()
        self.cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work, failures), daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def _run(self, work, failures) -> None:
        try:
            self.events.put(("done", work(lambda *payload: self.events.put(("progress", payload)), self.cancel.is_set)))
        except failures as error:
            self.events.put(("failed", error))
        except Exception as error:  # a bug: still end the modal loop, with the text
            self.events.put(("failed", RuntimeError(f"{type(error).__name__}: {error}")))

    def poll(self) -> list[tuple[str, object]]:
        """Events since the last poll: ("progress", payload), then at most one ("done", result)
        or ("failed", exception), which is the last."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out
