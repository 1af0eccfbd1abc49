"""Which locals of a kernel function a step can still read: live-variable analysis of the
``@step`` methods, so that a path's ``state()`` leaves out the dead ones.

Two worlds whose running functions differ only in a local that no later step reads
(``mask`` after the test that used it, ``bit`` after the XOR) behave the same from then
on, so the explorer may treat them as one.  The analysis reads each step's source:

* *reads*: ``self.x`` loads, also inside ``self.method()`` and module-level helpers
  called with ``self``; ``result`` where the step may return ``DONE`` (the kernel hands
  it to the caller), and what ``on_return`` reads there;
* *kills*: ``self.x = ...`` at the top of the step, before anything that can return;
* *successors*: the class's ``SUCCESSORS`` (read from the bodies when the class was
  created, redirects applied: ``pgalloc.steps``).

``live(label) = reads(label) | (live(successors) - kills(label))``, solved to a fixpoint,
plus ``EXTERNAL`` (locals that code outside the steps reads: the checks look at every
running frame's ``page``).  Whenever the source cannot be read or a construct is not
understood (``self`` handed to an unknown callee, a label computed at run time), the
answer is conservative: every local is live.
"""

from __future__ import annotations

import ast
import inspect
from functools import cache

from .bodies import Unknown as _Unknown, tree as _tree


class _Step:
    """Reads, kills and ``DONE``-ness of one function body (``me`` is the name its first
    parameter, the path, goes by)."""

    def __init__(self, cls, fn, names: tuple, seen: frozenset = frozenset()):
        fn = inspect.unwrap(fn)     # a body under a wrapping decorator: its helpers are in its own module
        self.cls, self.names, self.seen = cls, names, seen | {fn}
        node = self.node = _tree(fn)
        self.me = node.args.args[0].arg if node.args.args else "self"
        self.globals = getattr(fn, "__globals__", {})
        self.reads: set[str] = set()
        self.kills: set[str] = set()
        self.done = False
        killing = True
        for stmt in node.body:
            returns = any(isinstance(n, (ast.Return, ast.Raise)) for n in ast.walk(stmt))
            self._visit(stmt, killed=self.kills)
            if killing and not returns and isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for t in targets:
                    for n in ast.walk(t):
                        if self._attr(n):
                            self.kills.add(n.attr)
            if returns:
                killing = False

    def _attr(self, n) -> bool:
        return isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == self.me

    def _visit(self, stmt, killed: set[str]) -> None:
        # Every use of the path must be one this analysis follows: ``self.x`` (not a
        # dunder such as ``self.__dict__``) or the first argument of a helper (``_call``).
        followed = {id(n.value) for n in ast.walk(stmt) if self._attr(n) and not n.attr.startswith("__")}
        followed |= {id(n.args[0]) for n in ast.walk(stmt) if isinstance(n, ast.Call) and n.args}
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and n.id == self.me and id(n) not in followed:
                raise _Unknown(f"{self.me} used as {ast.unparse(stmt)[:60]}")
        for n in ast.walk(stmt):
            if isinstance(n, ast.AugAssign) and self._attr(n.target) and n.target.attr not in killed:
                self.reads.add(n.target.attr)           # self.i += 1 reads i
            elif self._attr(n) and isinstance(n.ctx, ast.Load):
                if n.attr in self.names and n.attr not in killed:
                    self.reads.add(n.attr)
                elif n.attr not in self.names:
                    self._method(n.attr)
            elif isinstance(n, ast.Name) and n.id == "DONE":
                self.done = True
            elif isinstance(n, ast.Call):
                self._call(n)

    def _method(self, name: str) -> None:
        fn = getattr(self.cls, name, None)
        if inspect.isfunction(fn):          # else a class constant (FUNC, STEPS, ...)
            self._merge(fn)

    def _call(self, n: ast.Call) -> None:
        args = list(n.args) + [kw.value for kw in n.keywords]
        if not any(isinstance(a, ast.Name) and a.id == self.me for a in args):
            return
        fn = self.globals.get(n.func.id) if isinstance(n.func, ast.Name) else None
        if not inspect.isfunction(fn) or not args or not (isinstance(n.args[0], ast.Name) and n.args[0].id == self.me):
            raise _Unknown(f"{self.me} passed to {ast.unparse(n.func)}")
        self._merge(fn)

    def _merge(self, fn) -> None:
        if fn in self.seen:
            return
        sub = _Step(self.cls, fn, self.names, self.seen)
        self.reads |= sub.reads | sub.kills     # a helper's writes are not kills here
        self.done |= sub.done


@cache
def live_locals(cls) -> dict[str, tuple[str, ...]]:
    """``{label: live locals}`` for a ``Path`` subclass, in ``cls._ALL`` order.  Labels
    missing from the result (or any failure) mean: every local is live.

    >>> from pgalloc import v64
    >>> live = live_locals(v64.tlb_remove_table_)
    >>> live["atomic_xor_bits(P)"]      # mask: stored by this XOR before any read
    ('result', 'page', 'half')
    >>> live["page_table_release_check; __free_page"]
    ('result', 'page', 'half', 'mask')
    """
    names = cls._ALL
    succ = cls.SUCCESSORS
    if any(s is None for s in succ.values()):
        return {}
    try:
        steps = {label: _Step(cls, fn, names) for label, fn in cls.STEPS.items()}
        lock = _Step(cls, cls.lock_addr, names)
    except (_Unknown, SyntaxError):
        return {}
    try:        # runs when the function returns (after_alloc reads the whole path)
        at_return = _Step(cls, cls.on_return, names).reads
    except (_Unknown, SyntaxError):
        at_return = set(names)
    external = set(cls.EXTERNAL) | lock.reads
    reads = {}
    for label, s in steps.items():
        r = set(s.reads)
        if s.done:
            r |= {"result"} | at_return
        reads[label] = r
    live = {label: set(r) for label, r in reads.items()}
    changed = True
    while changed:
        changed = False
        for label, s in steps.items():
            new = reads[label] | {x for nxt in succ[label] for x in live[nxt]} - s.kills
            if new != live[label]:
                live[label] = new
                changed = True
    return {label: tuple(n for n in names if n in live[label] or n in external) for label in steps}
