"""The search's worker processes: forked for one search, each with a pipe of its own.

Why not ``multiprocessing.Pool``: its workers share two queues, each guarded by a
semaphore, and ``Pool.terminate()`` kills workers that may hold one.  A worker killed
while it wrote a result held the result queue's lock; the pool's task thread then
blocked on that lock for ever, and ``terminate()``, which joins it, never returned:
Ctrl-C hung the search (about one interrupt in sixty under load, py-spy showing
``Pool._handle_tasks`` in ``SimpleQueue.put``).  Here each worker has one pipe to the
searching process and nothing is shared, so killing a worker at any point leaves no lock
held; and a worker that dies (killed, out of memory) is an error the search reports,
where a pool would wait for its result for ever.

>>> ws = Workers(2, init=lambda: 10, task=lambda base, x: base + x)
>>> list(ws.map([1, 2, 3, 4, 5]))
[11, 12, 13, 14, 15]
>>> ws.close()
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import threading
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Callable, Iterator


class WorkerDied(RuntimeError):
    """A worker process ended while it had work (killed, or out of memory)."""


_END = object()         # what a worker's reader hands on when the searching process is gone

# Items a worker holds at once: one it works on and one waiting, so that it never idles
# while the searching process merges a result before it hands out the next item.
IN_FLIGHT = 2


def _serve(conn: Connection, inherited: list[Connection], init: Callable[[], object],
           task: Callable[[object, object], object]) -> None:
    """A worker's life: build its state once, then answer each item with its result
    (or the exception the task raised), until the searching process closes the pipe or
    ends (``inherited``, the searching process's ends that the fork copied, are closed
    first: while a worker held one, its peer's ``recv`` never saw the end of its pipe,
    and a killed search left its workers waiting for ever).

    A thread reads the items as they come, so the searching process never blocks
    writing an item while this worker blocks writing a result (``IN_FLIGHT``): each
    side always drains the pipe the other writes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the searching process handles Ctrl-C
    for c in inherited:
        c.close()
    items: queue.SimpleQueue = queue.SimpleQueue()

    def receive() -> None:
        while True:
            try:
                items.put(conn.recv())
            except (EOFError, OSError):
                items.put(_END)
                return

    threading.Thread(target=receive, daemon=True).start()
    state = init()
    while True:
        item = items.get()
        if item is _END:
            return
        try:
            answer = (True, task(state, item))
        except Exception as e:           # re-raised in the searching process, as a pool would
            answer = (False, e)
        try:
            conn.send(answer)
        except Exception as e:           # the answer did not pickle: the error's text does
            conn.send((False, RuntimeError(f"{type(e).__name__}: {e}")))


class Workers:
    """``n`` processes forked from this one, each running ``task(init(), item)`` for
    the items ``map`` gives it; ``close`` kills them (also when a search is interrupted)."""

    def __init__(self, n: int, init: Callable[[], object], task: Callable[[object, object], object]):
        fork = mp.get_context("fork")    # the workers inherit the imported package and the setup
        self._procs: list = []
        self._conns: list[Connection] = []
        try:
            for _ in range(n):
                here, there = fork.Pipe()
                p = fork.Process(target=_serve, args=(there, self._conns + [here], init, task), daemon=True)
                p.start()
                there.close()
                self._procs.append(p)
                self._conns.append(here)
        except BaseException:
            self.close()
            raise

    def map(self, items: list) -> Iterator:
        """Each item's result, in the items' order, as soon as it and those before it are
        back.  A worker holds up to ``IN_FLIGHT`` items: it is given the next as each
        result is read (its reader thread takes items while it works, see ``_serve``)."""
        if items and not self._conns:
            raise RuntimeError("map() on workers that were closed")
        pending = iter(range(len(items)))
        busy: dict[Connection, deque] = {conn: deque() for conn in self._conns}
        done: dict[int, object] = {}

        def give(conn: Connection) -> None:
            i = next(pending, None)
            if i is not None:
                try:
                    conn.send(items[i])
                except OSError:          # the worker is gone (a broken pipe, a reset)
                    raise self._died(conn) from None
                busy[conn].append(i)

        for _ in range(IN_FLIGHT):
            for conn in self._conns:
                give(conn)
        try:
            for i in range(len(items)):
                while i not in done:
                    for conn in wait([c for c, held in busy.items() if held]):
                        j = busy[conn].popleft()
                        done[j] = self._answer(conn)
                        give(conn)
                yield done.pop(i)
        finally:
            if any(busy.values()):      # left mid-way: the answers still due would answer the next map
                self.close()

    def _answer(self, conn: Connection):
        """The result a worker sent, or the exception its task raised, raised here."""
        try:
            ok, value = conn.recv()
        except (EOFError, OSError):      # OSError: a reset, when it died before reading its item
            raise self._died(conn) from None
        if not ok:
            raise value
        return value

    def _died(self, conn: Connection) -> WorkerDied:
        """The error for the worker at the other end of ``conn``, reaped."""
        p = self._procs[self._conns.index(conn)]
        p.join(1)
        return WorkerDied(f"explore worker process {p.pid} ended (exit code {p.exitcode}) while it had work")

    def close(self) -> None:
        """Kill the workers and reap them: they hold nothing worth waiting for."""
        for conn in self._conns:
            conn.close()
        for p in self._procs:
            p.kill()
        for p in self._procs:
            p.join()
        self._conns, self._procs = [], []
