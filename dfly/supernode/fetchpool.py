"""The supernode's source fetches: a bounded pool of threads, shared fairly.

Each task's fetch is a job; at most `max_threads` run at once (threads are
started as jobs need them, never more), and at most `per_client` of them for
the tasks one client host registered, so a client that registers slow or
trickling sources fills only its share: other clients' jobs pass its waiting
ones in the queue. Within that, first come, first served.
"""
import logging
import threading
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Tuple

Job = Tuple[str, Callable[[], None]]   # (client host, the fetch)

log = logging.getLogger("dfly.supernode")


def next_job(queue: Deque[Job], running: Dict[str, int], per_client: int) -> Optional[int]:
    """Index of the first queued job whose client is under its share; None if none is."""
    for i, (client, _) in enumerate(queue):
        if per_client <= 0 or running.get(client, 0) < per_client:
            return i
    return None


class FetchPool:
    def __init__(self, max_threads: int, per_client: int, name: str = "source-fetch"):
        self.max_threads = max(1, max_threads)
        self.per_client = per_client
        self.name = name
        self._queue: Deque[Job] = deque()
        self._running: Dict[str, int] = {}
        self._threads: List[threading.Thread] = []
        self._idle = 0
        self._closed = False
        self._cond = threading.Condition()

    def submit(self, client: str, fetch: Callable[[], None]) -> None:
        with self._cond:
            self._queue.append((client, fetch))
            if self._idle == 0 and len(self._threads) < self.max_threads:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name="%s-%d" % (self.name, len(self._threads)))
                self._threads.append(thread)
                thread.start()
            self._cond.notify_all()

    def close(self, timeout_s: float = 5.0) -> None:
        """No more jobs start; wait up to timeout_s for each running one to end."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                try:
                    while True:
                        if self._closed:
                            return
                        index = next_job(self._queue, self._running, self.per_client)
                        if index is not None:
                            break
                        self._cond.wait()
                finally:
                    self._idle -= 1
                client, fetch = self._queue[index]
                del self._queue[index]
                self._running[client] = self._running.get(client, 0) + 1
            try:
                fetch()
            except Exception:   # a job's bug must not end this thread: the pool never replaces it
                log.exception("%s: a fetch job failed", threading.current_thread().name)
            finally:
                with self._cond:
                    self._running[client] -= 1
                    if not self._running[client]:
                        del self._running[client]
                    self._cond.notify_all()
