"""A CPU of the kernel object: its process-context and softirq stacks of running kernel
functions (``Path`` frames), how many times each context disabled bottom halves and how
deep its ``local_irq_save`` nesting is, with the compact frozen form (plain tuples) the
explorer's frozen worlds use."""

from __future__ import annotations

from .steps import PATHS, Path

PROCESS, SOFTIRQ = "process", "softirq"


class Cpu:
    """A CPU: process-context stack, softirq stack, bottom-half-disable counts, and
    ``irq``: how many ``local_irq_save`` are in force (interrupts off while > 0)."""

    __slots__ = ("proc", "soft", "bh_proc", "bh_soft", "result", "irq")

    def __init__(self):
        self.proc: list[Path] = []
        self.soft: list[Path] = []
        self.bh_proc = 0
        self.bh_soft = 0
        self.result = 0
        self.irq = 0

    def copy(self) -> "Cpu":
        """An independent copy (each frame copied: ``Path.copy``)."""
        c = Cpu()
        c.proc = [f.copy() for f in self.proc]
        c.soft = [f.copy() for f in self.soft]
        c.bh_proc, c.bh_soft, c.result, c.irq = self.bh_proc, self.bh_soft, self.result, self.irq
        return c

    def state(self, live: bool = False) -> tuple:
        """Hashable: every frame's ``state(live)``, the bottom-half counts and, when
        interrupts are off, the ``local_irq_save`` depth."""
        st = (tuple(f.state(live) for f in self.proc), tuple(f.state(live) for f in self.soft),
              self.bh_proc, self.bh_soft)
        return st + (self.irq,) if self.irq else st

    def frozen(self) -> tuple:
        """The CPU as plain tuples (``thawed`` takes it back): each frame as its class's
        name and its pc and locals.  Freezing worlds is hot in the explorer, and both the
        generic pickle protocol for slotted objects and a class reference per frame (an
        import lookup each, when unpickled) are several times slower."""
        return (tuple((f._NAME, f._FIELDS_OF(f)) for f in self.proc),
                tuple((f._NAME, f._FIELDS_OF(f)) for f in self.soft), self.bh_proc, self.bh_soft, self.result,
                self.irq)

    def __reduce__(self):
        return (_cpu, self.frozen())


def _frames(frames: tuple) -> list:
    out = []
    for name, values in frames:
        cls = PATHS[name]
        f = object.__new__(cls)
        f.__dict__.update(zip(cls._FIELDS, values))
        out.append(f)
    return out


def _cpu(proc: tuple, soft: tuple, bh_proc: int, bh_soft: int, result, irq: int = 0) -> Cpu:
    """A ``Cpu`` from its frozen form (``Cpu.frozen``, ``Cpu.__reduce__``)."""
    c = object.__new__(Cpu)
    c.proc, c.soft = _frames(proc), _frames(soft)
    c.bh_proc, c.bh_soft, c.result, c.irq = bh_proc, bh_soft, result, irq
    return c


def thawed(form: tuple) -> Cpu:
    """The ``Cpu`` whose ``Cpu.frozen()`` form is ``form``."""
    return _cpu(*form)
