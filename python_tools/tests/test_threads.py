"""Unit tests of python_tools/shiko/threads.py: the small thread pool the tools use instead of
concurrent.futures (whose import pulls in logging)."""

import queue
import subprocess
import sys
import threading
import time

import pytest

from python_tools.shiko import threads

from python_tools.tests.test_worker import REPO


def test_results_errors_and_order_on_one_worker():
    seen = []

    def job(i):
        seen.append(i)
        if i == 3:
            raise ValueError("three")
        return i * i

    with threads.Pool(1) as pool:
        tasks = [pool.submit(job, i) for i in range(6)]
        assert [t.result() for t in tasks if t is not tasks[3]] == [0, 1, 4, 16, 25]
        with pytest.raises(ValueError):
            tasks[3].result()
    assert seen == list(range(6))  # one worker: submission order
    assert all(t.done() for t in tasks)


def test_workers_run_in_parallel_and_done_queue_gets_each_task_once():
    barrier = threading.Barrier(3, timeout=10)
    done = queue.SimpleQueue()
    with threads.Pool(3, done=done) as pool:
        tasks = [pool.submit(barrier.wait) for _ in range(3)]  # deadlocks unless 3 run at once
        got = [done.get(timeout=10) for _ in range(3)]
    assert sorted(map(id, got)) == sorted(map(id, tasks))
    assert done.empty()


def test_cancel_pending_skips_queued_tasks_and_settles_them():
    release = threading.Event()
    ran = []
    done = queue.SimpleQueue()
    pool = threads.Pool(1, done=done)
    first = pool.submit(release.wait, 10)
    rest = [pool.submit(ran.append, i) for i in range(4)]
    pool.cancel_pending()
    release.set()
    pool.shutdown()
    assert first.result() is True
    for t in rest:
        with pytest.raises(threads.Cancelled):
            t.result()
    assert ran == []
    assert done.qsize() == 5
    assert not first.cancel()  # already ran


def test_result_timeout():
    release = threading.Event()
    with threads.Pool(1) as pool:
        t = pool.submit(release.wait, 10)
        with pytest.raises(TimeoutError):
            t.result(timeout=0.05)
        release.set()
        assert t.result() is True


def test_no_concurrent_futures_or_logging_on_the_push_and_layer_paths():
    code = ("import sys, python_tools.push, python_tools.layer\n"
            "print(sorted(m for m in ('concurrent.futures', 'logging', 'urllib.request', 'tempfile',"
            " 'subprocess', 'traceback') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, check=True,
                         text=True).stdout
    assert out.strip() == "[]"
