"""A small thread pool on `threading` alone, for the tools that start as fresh processes.

    pool = Pool(4, done=queue.SimpleQueue())   # done: optional, receives each finished Task
    tasks = [pool.submit(fn, arg) for arg in args]
    tasks[0].result()                          # waits; re-raises what fn raised
    pool.shutdown(cancel=True)                 # queued tasks are cancelled, running ones finish

Why not concurrent.futures: importing it imports logging (and with it traceback, string,
weakref, ...), ~5 ms of start-up on a quiet 2-core machine and 10-15 ms on a loaded one, for a
`bazel run` push that is over in ~0.1 s; the layer pipeline, push and pull need only this
much of it. Threads start
when tasks are submitted (at most `workers`); tasks run in submission order.
"""

import os
import queue
import threading


def usable_cores():
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Cancelled(Exception):
    """The result of a task cancelled before it ran."""


class Task(object):
    """One submitted call: `result()`, `done()`, `cancel()` (only before it runs)."""

    __slots__ = ("fn", "args", "_event", "_lock", "_state", "_value")

    def __init__(self, fn, args):
        self.fn = fn
        self.args = args
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._state = "queued"  # -> "running" -> "done" | "failed"; or "queued" -> "cancelled"
        self._value = None

    def cancel(self):
        """Cancels the task if it has not started; returns whether it is (now) cancelled. A
        cancelled task is done (and goes to the pool's `done` queue) when a worker takes it
        off the queue, which it does without running it."""
        with self._lock:
            if self._state == "queued":
                self._state = "cancelled"
                self._value = Cancelled()
            return self._state == "cancelled"

    def done(self):
        return self._event.is_set()

    def result(self, timeout=None):
        """fn's return value; re-raises its exception (Cancelled when cancelled). TimeoutError
        when `timeout` seconds pass first."""
        if not self._event.wait(timeout):
            raise TimeoutError("the task is still running")
        if self._state != "done":
            raise self._value
        return self._value

    def _run(self):
        with self._lock:
            run = self._state == "queued"
            if run:
                self._state = "running"
        if run:
            try:
                value, state = self.fn(*self.args), "done"
            except BaseException as e:
                value, state = e, "failed"
            self._value, self._state = value, state
        self.fn = self.args = None  # buffers the arguments held are free once it has run
        self._event.set()


class Pool(object):
    """`workers` threads running submitted tasks in order; `done` (a queue) gets every task once
    it has finished, failed or been cancelled (for handling them as they complete)."""

    def __init__(self, workers, done=None):
        self.workers = max(1, workers)
        self.done = done
        self._queue = queue.SimpleQueue()
        self._threads = []

    def submit(self, fn, *args):
        task = Task(fn, args)
        self._queue.put(task)
        if len(self._threads) < self.workers:
            t = threading.Thread(target=self._work, daemon=True)
            t.start()
            self._threads.append(t)
        return task

    def _work(self):
        while True:
            task = self._queue.get()
            if task is None:
                return
            task._run()
            if self.done is not None:
                self.done.put(task)

    def cancel_pending(self):
        """Cancels every task that has not started (a worker may start one meanwhile: it runs)."""
        taken = []
        while True:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for task in taken:
            if task is not None:
                task.cancel()
            self._queue.put(task)  # the workers still take it off, to settle it in order

    def shutdown(self, cancel=False):
        """Waits for the threads to finish; with cancel, tasks that have not started don't."""
        if cancel:
            self.cancel_pending()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        self._threads = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown(cancel=exc[0] is not None)
