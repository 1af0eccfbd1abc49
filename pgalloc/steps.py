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

DONE = "<done>"
BLOCKED = "<blocked>"

_CONTEXT_LOCK = _S.mm_struct.fields["context.lock"]


class Call:
    """A nested kernel call: run ``path`` to completion, then continue at ``ret``."""

    __slots__ = ("path", "ret")

    def __init__(self, path: "Path", ret: str):
        self.path = path
        self.ret = ret


def step(label: str):
    """Declare a method as the step ``label`` of its kernel function (in order)."""

    def mark(fn):
        fn._step_label = label
        return fn

    return mark


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
        # Steps by label along the MRO, nearest class last: a version that patches a
        # function replaces some labels and keeps the rest, and a plain mixin class can
        # carry steps that several functions share.
        steps = {}
        for klass in reversed(cls.__mro__):
            for v in klass.__dict__.values():
                label = getattr(v, "_step_label", None)
                if label is not None:
                    steps[label] = v
        own = [v for v in cls.__dict__.values() if getattr(v, "_step_label", None) is not None]
        cls.STEPS = steps
        if own and not cls.ENTRY:
            # The first step declared; a subclass that patches some steps keeps its base's.
            cls.ENTRY = own[0]._step_label
        if not cls.__dict__.get("FUNC"):
            cls.FUNC = cls.__name__
        cls._ALL = cls._BASE + tuple(cls.LOCALS)
        cls._LOCALS_OF = attrgetter(*cls._ALL)      # _ALL has at least two names: a tuple
        cls._LIVE_OF = None                         # {label: getter}, made on first use
        # Frozen as (name, pc and every local): ``pgalloc.kernel.Cpu.__reduce__``.
        cls._NAME = f"{cls.__module__}.{cls.__qualname__}"
        cls._FIELDS = ("pc",) + cls._ALL
        cls._FIELDS_OF = attrgetter(*cls._FIELDS)
        PATHS[cls._NAME] = cls

    def __init__(self, **kw):
        for name in self._ALL:
            setattr(self, name, 0)
        for name, value in kw.items():
            if name not in self._ALL:
                raise TypeError(f"{self.FUNC}() has no local {name!r}")
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
        from .liveness import live_locals
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

    def is_lock_step(self) -> bool:
        return self.pc.startswith("spin_lock")

    def is_unlock_step(self) -> bool:
        return self.pc.startswith("spin_unlock")

    def __repr__(self) -> str:
        locs = ", ".join(f"{n}={getattr(self, n):#x}" if isinstance(getattr(self, n), int) else f"{n}={getattr(self, n)!r}"
                         for n in self.LOCALS)
        return f"{self.FUNC}({locs}) @ {self.pc!r}"
