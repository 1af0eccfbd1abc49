"""Which locals of a kernel function a step can still read: live-variable analysis of the
``@step`` methods, so that a path's ``state()`` leaves out the dead ones.

Two worlds whose running functions differ only in a local that no later step reads
(``mask`` after the test that used it, ``bit`` after the XOR) behave the same from then
on, so the explorer may treat them as one.  The analysis reads each step's source:

* *reads*: ``self.x`` loads, also inside ``self.method()`` and module-level helpers
  called with ``self``; ``result`` where the step may return ``DONE`` (the kernel hands
  it to the caller), and what ``on_return`` reads there;
* *kills*: ``self.x = ...`` at the top of the step, before anything that can return;
* *successors*: every label the step names (string constants).

``live(label) = reads(label) | (live(successors) - kills(label))``, solved to a fixpoint,
plus ``EXTERNAL`` (locals that code outside the steps reads: the checks look at every
running frame's ``page``).  Whenever the source cannot be read or a construct is not
understood (``self`` handed to an unknown callee, a label computed at run time), the
answer is conservative: every local is live.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from functools import cache


class _Unknown(Exception):
    """Something the analysis does not follow: fall back to "everything is live"."""


def _tree(fn) -> ast.FunctionDef:
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as e:
        raise _Unknown(str(e)) from None
    node = ast.parse(src).body[0]
    if not isinstance(node, ast.FunctionDef):
        raise _Unknown("not a function")
    return node


class _Step:
    """Reads, kills, successors and ``DONE``-ness of one function body (``me`` is the name
    its first parameter, the path, goes by)."""

    def __init__(self, cls, fn, labels: set[str], names: tuple, seen: frozenset = frozenset(), step: bool = True):
        self.cls, self.labels, self.names, self.seen = cls, labels, names, seen | {fn}
        self.step = step        # its return value is a label (a step, or a helper a step returns)
        node = self.node = _tree(fn)
        self.me = node.args.args[0].arg if node.args.args else "self"
        self.globals = getattr(fn, "__globals__", {})
        self.reads: set[str] = set()
        self.kills: set[str] = set()
        self.succ: set[str] = set()
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
            elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in self.labels:
                self.succ.add(n.value)
            elif isinstance(n, ast.Name) and n.id == "DONE":
                self.done = True
            elif isinstance(n, ast.Return) and n.value is not None and self.step:
                self._returned(n.value)
            elif isinstance(n, ast.Call):
                self._call(n)

    def _returned(self, e) -> None:
        """A label must come from a constant, DONE/BLOCKED, ``Call(..., label)`` or a helper."""
        if isinstance(e, ast.Constant) or isinstance(e, ast.Name) and e.id in ("DONE", "BLOCKED"):
            return
        if isinstance(e, ast.IfExp):
            self._returned(e.body)
            self._returned(e.orelse)
            return
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
            if e.func.id == "Call":         # Call(path, "label"): the label must be written out
                ret = e.args[1] if len(e.args) > 1 else next((kw.value for kw in e.keywords if kw.arg == "ret"), None)
                if not self._written_out(ret):
                    raise _Unknown(f"computed return label in {ast.unparse(e)[:60]}")
            else:                           # a helper's return value is the label
                fn = self.globals.get(e.func.id)
                if not inspect.isfunction(fn):
                    raise _Unknown(f"label from {e.func.id}()")
                self._merge(fn, step=True)
            return
        raise _Unknown(f"computed label {ast.unparse(e)}")

    def _written_out(self, e) -> bool:
        """A label written out: a string constant, a choice between such, or a plain
        variable of the function that is only ever assigned such."""
        if isinstance(e, ast.Constant):
            return isinstance(e.value, str)
        if isinstance(e, ast.IfExp):
            return self._written_out(e.body) and self._written_out(e.orelse)
        if isinstance(e, ast.Name):
            values = [a.value for a in ast.walk(self.node) if isinstance(a, ast.Assign)
                      and any(isinstance(t, ast.Name) and t.id == e.id for t in a.targets)]
            stores = [n for n in ast.walk(self.node) if isinstance(n, ast.Name) and n.id == e.id
                      and isinstance(n.ctx, ast.Store)]
            return bool(values) and len(values) == len(stores) and all(self._written_out(v) for v in values)
        return False

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

    def _merge(self, fn, step: bool = False) -> None:
        if fn in self.seen:
            return
        sub = _Step(self.cls, fn, self.labels, self.names, self.seen, step)
        self.reads |= sub.reads | sub.kills     # a helper's writes are not kills here
        self.succ |= sub.succ
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
    labels = set(cls.STEPS)
    try:
        steps = {label: _Step(cls, fn, labels, names) for label, fn in cls.STEPS.items()}
        lock = _Step(cls, cls.lock_addr, labels, names, step=False)
    except (_Unknown, SyntaxError):
        return {}
    try:        # runs when the function returns (after_alloc reads the whole path)
        at_return = _Step(cls, cls.on_return, labels, names, step=False).reads
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
            new = reads[label] | {x for nxt in s.succ for x in live[nxt]} - s.kills
            if new != live[label]:
                live[label] = new
                changed = True
    return {label: tuple(n for n in names if n in live[label] or n in external) for label in steps}
