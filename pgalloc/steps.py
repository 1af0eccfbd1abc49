"""The step machinery: kernel functions written as resumable sequences of atomic steps.

A *path* is one invocation of a kernel function (``page_table_free(mm, table)``).  Its
class lists its steps in order with ``@step("label")``; each step method does one atomic
thing on the bytes (take a lock, one atomic XOR, one list operation, ``call_rcu``, a page
free) and returns what happens next:

* a label: the next step of the same function;
* ``Call(path, ret)``: run the nested kernel function ``path``, then resume at ``ret``
  (the callee's ``result`` lands in the caller's ``ret`` local);
* ``DONE``: the function returns (its ``result`` local is the return value);
* ``BLOCKED``: a ``spin_lock`` found the lock taken; nothing was changed, try again.

Control flow is known when the class is created, not first when a step runs:

* each step's *successors* (``SUCCESSORS[label]``) are the labels its body returns or
  resumes at, read from the body (``pgalloc.bodies``), or declared with
  ``@step(label, then=(...))`` for a body that computes them; every one must name a step
  of the class, else the class statement raises ``StepError``.  A body whose labels
  cannot be read is checked each time it returns one instead;
* ``REDIRECT = {label: {old: new}}`` (or ``{label: new}``: every label it returns) in a
  class body changes edges without touching bodies: a version that only sends one step
  somewhere else names that edge instead of copying its predecessor's code.  A class
  that rewrites the step under ``label`` drops the redirects its bases made for it;
* the steps an inherited class no longer reaches from ``ENTRY`` (through successors and
  ``Call`` return labels) are not in ``STEPS``;
* lock and unlock steps are marked on the step (``lock="bh"`` / ``"plain"``,
  ``unlock=...``; a step that does not say is read: a body calling ``k.spin_lock`` is a
  lock step), so renaming a label changes nothing else;
* a step that touches nothing another CPU or a check can see is marked ``local=True``
  (or ``local=<predicate on the frame>`` when that depends on the frame's locals, or
  ``local=UNLESS_WALKERS`` when only the readers in flight, a TLB or a lockless walker,
  can see it): the explorer takes it at once (``is_local``).  The mark is on the function: a class that
  inherits the step unchanged has it, one that rewrites it under the same label does not
  (the new code is interleaved like any other until someone argues it local).

A path's position (``pc``) and locals are plain ints (or tuples of ints), so
``state()`` is hashable and ``copy()`` is a shallow copy: the explorer can copy a whole
machine in the middle of any function.  Class names are the kernel's function names
(``page_table_alloc``); ``__tlb_remove_table`` is the class ``tlb_remove_table_`` (a
name starting with two underscores would be mangled inside other class bodies), and
its ``FUNC`` is the kernel name, which is what traces show.
"""

from __future__ import annotations

from operator import attrgetter

from s390emu import structs as _S

from .bodies import lock_calls, returned_labels
from .errors import StepError
from .liveness import live_locals

DONE = "<done>"
BLOCKED = "<blocked>"
UNLESS_WALKERS = "<unless walkers>"     # a local mark: local when the kernel models no walkers

_CONTEXT_LOCK = _S.mm_struct.fields["context.lock"]
_KINDS = (None, "bh", "plain")


class Call:
    """A nested kernel call: run ``path`` to completion, then continue at ``ret``."""

    __slots__ = ("path", "ret")

    def __init__(self, path: "Path", ret: str):
        self.path = path
        self.ret = ret


def step(label: str, *, then: tuple[str, ...] | None = None, lock: str | None = None,
         unlock: str | None = None, local=False):
    """Declare a method as the step ``label`` of its kernel function (in order).

    ``then``: its successor labels, for a body that computes them (else they are read
    from the body); ``lock`` / ``unlock``: ``"bh"`` or ``"plain"`` for a step that takes
    or releases a spinlock; ``local``: ``True``, or a predicate on the frame, for a step
    no other CPU or check can see (see the module docstring).
    """
    if lock not in _KINDS or unlock not in _KINDS:
        raise StepError(f"step {label!r}: lock/unlock must be 'bh' or 'plain', not {lock or unlock!r}")

    def mark(fn):
        fn._step_label = label
        fn._step_then = None if then is None else frozenset(then) - {DONE, BLOCKED}
        fn._step_lock, fn._step_unlock = lock, unlock
        fn._step_local = local
        return fn

    return mark


def is_local(fr: "Path", walkers: bool = False) -> bool:
    """Whether frame ``fr``'s next step touches nothing another CPU or a check can see:
    the function that runs it was marked ``local`` (and its predicate holds for ``fr``;
    ``UNLESS_WALKERS``: the kernel models no readers in flight)."""
    when = fr._LOCAL.get(fr.pc)
    if when is None:
        return False
    if when is UNLESS_WALKERS:
        return not walkers
    return when is True or when(fr)


PATHS: dict[str, type] = {}     # every Path class by module and name (frozen frames name theirs)


class Path:
    """One running kernel function.  Subclasses declare ``LOCALS`` and ``@step`` methods.

    >>> class f(Path):
    ...     LOCALS = ("x",)
    ...     @step("x = 1")
    ...     def a(self, k):
    ...         self.x = 1
    ...         return DONE
    >>> p = f(); p.pc, p.state()
    ('x = 1', ('f', 'x = 1', 0, 0, 0))
    """

    FUNC = ""
    LOCALS: tuple[str, ...] = ()
    STEPS: dict = {}
    ENTRY = ""
    # Locals every path has: the value returned by a nested call, and its own result.
    _BASE = ("ret", "result")
    # Locals that code outside the steps reads (the checks look at every running
    # frame's page): always part of ``state()``.
    EXTERNAL: tuple[str, ...] = ("page",)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        steps, redirects = _steps_and_redirects(cls)
        own = [v for v in cls.__dict__.values() if getattr(v, "_step_label", None) is not None]
        if own and not cls.ENTRY:
            # The first step declared; a subclass that patches some steps keeps its base's.
            cls.ENTRY = own[0]._step_label
        if not cls.__dict__.get("FUNC"):
            cls.FUNC = cls.__name__
        succ = _successors(cls, steps, redirects) if cls.ENTRY else {}
        cls.STEPS = _reachable(cls.ENTRY, steps, succ) if cls.ENTRY else steps
        cls.SUCCESSORS = {label: succ.get(label) for label in cls.STEPS}
        marks = {label: _lock_marks(label, fn) for label, fn in cls.STEPS.items()}
        cls.LOCKS = {label: m[0] for label, m in marks.items() if m[0]}
        cls.UNLOCKS = {label: m[1] for label, m in marks.items() if m[1]}
        cls._LOCAL = {label: fn._step_local for label, fn in cls.STEPS.items() if fn._step_local}
        resolve = _resolver(cls, redirects)
        cls._RESOLVE = None if resolve is None else staticmethod(resolve)
        cls._ALL = cls._BASE + tuple(cls.LOCALS)
        cls._LOCALS_OF = attrgetter(*cls._ALL)      # _ALL has at least two names: a tuple
        cls._LIVE_OF = None                         # {label: getter}, made on first use
        # Frozen as (name, pc and every local): ``pgalloc.cpu.Cpu.__reduce__``.
        cls._NAME = f"{cls.__module__}.{cls.__qualname__}"
        cls._FIELDS = ("pc",) + cls._ALL
        cls._FIELDS_OF = attrgetter(*cls._FIELDS)
        PATHS[cls._NAME] = cls

    def __init__(self, **kw):
        for name in self._ALL:
            setattr(self, name, 0)
        for name, value in kw.items():
            if name not in self._ALL:
                raise StepError(f"{self.FUNC}() has no local {name!r}")
            setattr(self, name, value)
        self.pc = self.ENTRY

    def state(self, live: bool = False) -> tuple:
        """Hashable position and locals; with ``live``, only the locals a later step
        can still read (``pgalloc.liveness``)."""
        if not live:
            return (type(self).__name__, self.pc) + self._LOCALS_OF(self)
        getters = type(self)._LIVE_OF
        if getters is None:
            getters = type(self)._live_getters()
        return (type(self).__name__, self.pc) + getters.get(self.pc, self._LOCALS_OF)(self)

    @classmethod
    def _live_getters(cls) -> dict:
        out = {}
        for label, names in live_locals(cls).items():
            if len(names) >= 2:
                out[label] = attrgetter(*names)
            elif names:
                out[label] = lambda p, _n=names[0]: (getattr(p, _n),)
            else:
                out[label] = lambda p: ()
        cls._LIVE_OF = out
        return out

    def copy(self) -> "Path":
        """A copy with the same position and locals (locals are ints or tuples: shallow is enough)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def on_enter(self, k) -> None:
        """Bookkeeping when the function is called (not a step: no bytes change)."""

    def on_return(self, k) -> None:
        """Bookkeeping when the function returns (not a step: no bytes change)."""

    def lock_addr(self) -> int:
        """The lock a ``spin_lock*`` step of this function takes (default: ``mm->context.lock``)."""
        return self.mm + _CONTEXT_LOCK

    def blocked(self, k) -> bool:
        """Whether the next step must wait for something other than a spinlock (an IPI
        acknowledged by every other CPU: ``tlb_remove_table_sync_one``)."""
        return False

    def is_lock_step(self) -> bool:
        """Whether the next step takes a spinlock (``lock_addr()``): it returns ``BLOCKED``
        while another CPU holds it."""
        return self.pc in self.LOCKS

    def is_unlock_step(self) -> bool:
        """Whether the next step releases a spinlock."""
        return self.pc in self.UNLOCKS

    def __repr__(self) -> str:
        locs = ", ".join(f"{n}={getattr(self, n):#x}" if isinstance(getattr(self, n), int) else f"{n}={getattr(self, n)!r}"
                         for n in self.LOCALS)
        return f"{self.FUNC}({locs}) @ {self.pc!r}"


# -- control flow, settled when a class is created -------------------------------------------

def _steps_and_redirects(cls) -> tuple[dict, dict]:
    """Steps by label along the MRO, nearest class last (a version that patches a function
    replaces some labels and keeps the rest; a plain mixin class can carry steps several
    functions share), and the redirects in force: ``{label: {old: new or None}}``, where
    ``None`` stands for "every label the step returns" (``REDIRECT = {label: new}``)."""
    steps: dict = {}
    redirects: dict = {}
    for klass in reversed(cls.__mro__):
        for v in klass.__dict__.values():
            label = getattr(v, "_step_label", None)
            if label is not None:
                steps[label] = v
                redirects.pop(label, None)      # a rewritten step drops the edges made for the old one
        for label, to in klass.__dict__.get("REDIRECT", {}).items():
            redirects[label] = {**redirects.get(label, {}), **(to if isinstance(to, dict) else {None: to})}
    return steps, redirects


def _successors(cls, steps: dict, redirects: dict) -> dict:
    """``{label: frozenset of successor labels, or None when unknown}``, redirects applied,
    each checked to name a step (``StepError`` otherwise)."""
    out = {}
    for label, fn in steps.items():
        labels = fn._step_then if fn._step_then is not None else returned_labels(fn)
        edges = redirects.get(label)
        if edges is not None:
            if labels is None:
                raise StepError(f"{cls.__name__}: REDIRECT of step {label!r}, whose successors cannot be "
                                "read from its body: declare them with @step(..., then=(...))")
            stale = [old for old in edges if old is not None and old not in labels]
            if stale:
                raise StepError(f"{cls.__name__}: REDIRECT of step {label!r} from {stale[0]!r}, which is not "
                                f"one of its successors ({', '.join(map(repr, sorted(labels)))})")
            labels = frozenset(edges.get(x, edges.get(None, x)) for x in labels)
        if labels is not None:
            for nxt in sorted(labels):
                if nxt not in steps:
                    raise StepError(f"{cls.__name__} ({cls.__module__}): step {label!r} goes to {nxt!r}, "
                                    f"which is no step of {cls.FUNC or cls.__name__}")
        out[label] = labels
    for label in redirects:
        if label not in steps:
            raise StepError(f"{cls.__name__}: REDIRECT names {label!r}, which is no step of the class")
    return out


def _reachable(entry: str, steps: dict, succ: dict) -> dict:
    """The steps reachable from ``entry``, in declaration order; all of them when a reached
    step's successors are unknown (nothing can be dropped then)."""
    if entry not in steps:
        raise StepError(f"ENTRY {entry!r} is no step ({', '.join(map(repr, steps))})")
    seen, todo = {entry}, [entry]
    while todo:
        nxt = succ[todo.pop()]
        if nxt is None:
            return steps
        for label in nxt - seen:
            seen.add(label)
            todo.append(label)
    return {label: fn for label, fn in steps.items() if label in seen}


def _lock_marks(label: str, fn) -> tuple[str | None, str | None]:
    """A step's ``(lock, unlock)`` kinds: declared, else read from the body's
    ``k.spin_lock`` / ``k.spin_unlock`` calls; a declaration the body contradicts is refused."""
    read = lock_calls(fn)
    marks = []
    for declared, body, what in ((fn._step_lock, read[0], "lock"), (fn._step_unlock, read[1], "unlock")):
        if declared and body and declared != body:
            raise StepError(f"step {label!r} is declared {what}={declared!r} but its body calls "
                            f"spin_{what}(..., bh={body == 'bh'})")
        marks.append(declared or body)
    return marks[0], marks[1]


def _resolver(cls, redirects: dict):
    """What ``Kernel.step`` applies to a step's outcome in this class: the redirects, and
    the run-time check of steps whose successors were not known; ``None`` when neither."""
    unknown = frozenset(label for label, s in cls.SUCCESSORS.items() if s is None)
    edges = {label: e for label, e in redirects.items() if label in cls.STEPS}
    if not unknown and not edges:
        return None
    steps = cls.STEPS

    def resolve(label: str, res):
        e = edges.get(label)
        ret = res.ret if isinstance(res, Call) else res
        if e is not None and ret not in (DONE, BLOCKED):
            new = e.get(ret, e.get(None, ret))
            if new != ret:
                ret = new
                res = Call(res.path, new) if isinstance(res, Call) else new
        if label in unknown and ret not in steps and ret not in (DONE, BLOCKED):
            raise StepError(f"{cls.__name__} ({cls.__module__}): step {label!r} returned {ret!r}, "
                            f"which is no step of {cls.FUNC}")
        return res

    return resolve
