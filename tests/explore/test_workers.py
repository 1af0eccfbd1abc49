"""The search's worker processes (pgalloc/explore/workers.py): results in order, a task's
exception re-raised here, a dead worker an error instead of a wait for ever, and nothing
left running after close."""

import os
import signal

import pytest

from pgalloc.explore.workers import WorkerDied, Workers


def _slow_for_small(base, x):
    import time
    time.sleep(0.02 * (5 - x % 5))      # later items come back first
    return base * x


def test_results_come_back_in_the_items_order_whatever_order_the_workers_finish_in():
    ws = Workers(3, init=lambda: 2, task=_slow_for_small)
    try:
        assert list(ws.map(list(range(20)))) == [2 * x for x in range(20)]
        assert list(ws.map([])) == []
        assert list(ws.map([7])) == [14]            # the same workers serve the next level
    finally:
        ws.close()


def _echo_big(base, x):
    return x + b"!" * (1 << 20)


def test_items_and_answers_larger_than_a_pipe_cannot_deadlock_two_in_flight():
    # Each worker holds two items (IN_FLIGHT): with one pipe each way, the searching
    # process writing a 1 MiB item while the worker writes a 1 MiB answer would block
    # both for ever, unless the worker's reader thread drains its pipe meanwhile.
    ws = Workers(2, init=lambda: None, task=_echo_big)
    try:
        items = [bytes([i]) * (1 << 20) for i in range(8)]
        assert [len(a) for a in ws.map(items)] == [2 << 20] * 8
    finally:
        ws.close()


def _fails_on_3(base, x):
    if x == 3:
        raise ValueError(f"item {x}")
    return x


def test_an_exception_in_a_task_is_raised_in_the_searching_process():
    ws = Workers(2, init=lambda: None, task=_fails_on_3)
    try:
        with pytest.raises(ValueError, match="item 3"):
            list(ws.map(list(range(6))))
    finally:
        ws.close()


def _dies_on_2(base, x):
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_a_worker_that_dies_is_an_error_naming_it_not_a_wait_for_ever():
    ws = Workers(2, init=lambda: None, task=_dies_on_2)
    pids = [p.pid for p in ws._procs]
    try:
        with pytest.raises(WorkerDied, match=r"explore worker process \d+ ended \(exit code -9\) while it had work"):
            list(ws.map(list(range(6))))
    finally:
        ws.close()
    for pid in pids:                    # reaped: no zombie, no orphan
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_map_left_mid_way_kills_the_workers_rather_than_hand_its_answers_to_the_next():
    ws = Workers(2, init=lambda: 1, task=_slow_for_small)
    it = ws.map(list(range(10)))
    assert next(it) == 0
    it.close()                          # the searching process gave up on this level
    assert ws._procs == [] and ws._conns == []
    ws.close()                          # closing again is harmless
    with pytest.raises(RuntimeError, match="closed"):
        list(ws.map([1]))


def test_a_worker_dead_before_it_is_given_work_is_the_same_error():
    ws = Workers(2, init=lambda: 1, task=_slow_for_small)
    try:
        os.kill(ws._procs[0].pid, signal.SIGKILL)
        ws._procs[0].join()
        with pytest.raises(WorkerDied, match=r"exit code -9"):
            list(ws.map(list(range(4))))    # the send to it fails (a broken pipe)
    finally:
        ws.close()


def test_workers_end_when_the_searching_process_is_killed():
    # Each worker must hold no other worker's pipe end, or a killed search leaves them
    # all waiting for an item for ever (seen: a mutation run's timed-out search).
    import subprocess
    import sys
    import time
    code = ("import os, time\n"
            "from pgalloc.explore.workers import Workers\n"
            "ws = Workers(3, init=lambda: None, task=lambda s, x: x)\n"
            "print(' '.join(str(p.pid) for p in ws._procs), flush=True)\n"
            "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pids = [int(x) for x in p.stdout.readline().split()]
    p.kill()
    p.wait()
    deadline = time.monotonic() + 20
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in pids if _running(pid)]
    assert alive == []


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not: it has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
