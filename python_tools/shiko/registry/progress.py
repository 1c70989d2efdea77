"""Push progress: per-blob byte counters, a live status line on a terminal, cancellation."""

import sys
import threading
import time


def human(n):
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1000.0
    return "%.1f GB" % n


class Progress(object):
    """Per-blob counters; a live status line on a terminal."""

    def __init__(self, live, stream=sys.stderr):
        self.live = live
        self.stream = stream
        self.lock = threading.Lock()
        self.active = {}  # digest -> [sent, size, started]
        self.done = 0
        self.total = 0
        self.cancel = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._width = 0

    def start(self, total):
        self.total = total
        if self.live:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def begin(self, digest, size):
        with self.lock:
            self.active[digest] = [0, size, time.monotonic()]

    def add(self, digest, n):
        if self.cancel.is_set():
            raise Cancelled()
        with self.lock:
            a = self.active.get(digest)
            if a:
                a[0] += n

    def end(self, digest):
        with self.lock:
            self.active.pop(digest, None)
            self.done += 1

    def _line(self):
        now = time.monotonic()
        parts = []
        with self.lock:
            items = sorted(self.active.items(), key=lambda kv: -kv[1][1])
            done = self.done
        for digest, (sent, size, started) in items[:3]:
            rate = sent / max(1e-3, now - started)
            parts.append("%s %s/%s %s/s" % (digest[7:19], human(sent), human(size), human(rate)))
        if len(items) > 3:
            parts.append("+%d more" % (len(items) - 3))
        return "blobs %d/%d  %s" % (done, self.total, "  ".join(parts))

    def _loop(self):
        while not self._stop.wait(0.2):
            line = self._line()[:200]
            self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
            self.stream.flush()
            self._width = len(line)

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join()
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


class Cancelled(BaseException):
    """Raised inside an upload when another blob has failed (stops streaming promptly)."""
