"""Linux s390's TLB flushes (``arch/s390/include/asm/tlbflush.h``, ``pgtable.h``,
``mm/pgtable.c``) and which CPUs hold an mm's ASCE (``mmu_context.h``), over the
kernel's per-CPU TLBs (``Kernel.tlbs``, entries as ``dat.tlb`` keeps them).

Each primitive is called inside one step and is atomic there: the reference finds no
text on a broadcast purge racing another CPU's translation, and Linux frees tables right
after a global IDTE or CSP with no IPI, so it relies on the purge being complete when
the instruction ends (reference ``walkers-and-tlb.md`` §1.2).  The machine has IDTE and
the local-clearing facility (``MACHINE_HAS_IDTE``, ``MACHINE_HAS_TLB_LC``: zEC12 and
later) and no gmap ASCE, so:

* ``__tlb_flush_idte(asce)``: IDTE clearing-by-ASCE, every CPU;
* ``__tlb_flush_global``: CSP with the purge bit, every entry of every CPU;
* ``__tlb_flush_local``: PTLB, every entry of this CPU;
* ``__tlb_flush_mm(mm)``: ``mm_cpumask(mm) := cpu_attach_mask``, then IDTE by ASCE;
* ``ptep_flush_direct``: IPTE local if ``mm_cpumask == {this CPU}``, else global;
* ``ptep_flush_lazy``: if ``cpu_attach_mask == {this CPU}`` the PTEs are invalidated by a
  plain store and ``flush_mm = 1`` (the purge is left to ``__tlb_flush_mm_lazy``), else
  IPTE global;
* ``pmdp_flush_direct`` (``pmdp_collapse_flush``): IDTE of the segment entry, local if
  ``mm_cpumask == {this CPU}``, else global, then the new entry is stored.

A kernel name that starts with two underscores is spelt here without them and with a
trailing one (``__tlb_flush_mm`` is ``tlb_flush_mm_``): the steps that call these are
methods, and inside a class body Python would mangle the name.

The CPU-mask and ASCE state is in storage: ``mm->context.cpu_attach_mask``,
``mm_cpumask(mm)`` (``cpu_bitmap``), ``context.flush_mm``, and each CPU's control
registers 1 and 7 in its lowcore.  ``s390_invalid_asce`` is modelled as 0, which forms
nothing.
"""

from __future__ import annotations

from dat import tlb as TLB
from s390emu import structs as S

from .pgtable_bits import _PAGE_INVALID, _SEGMENT_ENTRY_EMPTY, PTRS_PER_PTE

MM = S.mm_struct.fields
CR_PRIMARY, CR_SECONDARY = 1, 7
S390_INVALID_ASCE = 0


# -- the masks, in the mm_struct ---------------------------------------------------------------

def cpu_attach_mask(k, mm: int) -> int:
    """``mm->context.cpu_attach_mask`` as a bit mask of CPUs."""
    return k.mem.read_u64(mm + MM["context.cpu_attach_mask"])


def mm_cpumask(k, mm: int) -> int:
    """``mm_cpumask(mm)`` as a bit mask of CPUs."""
    return k.mem.read_u64(mm + MM["cpu_bitmap"])


def set_mask(k, mm: int, field: str, cpu: int, on: bool) -> None:
    """``cpumask_set_cpu`` / ``cpumask_clear_cpu`` on ``field`` of ``mm``."""
    addr = mm + MM[field]
    old = k.mem.read_u64(addr)
    k.mem.write_u64(addr, old | 1 << cpu if on else old & ~(1 << cpu))


def asce_of(k, mm: int) -> int:
    """``mm->context.asce``."""
    return k.mem.read_u64(mm + MM["context.asce"])


def this_cpu(k) -> int:
    """The CPU running the current step."""
    return k.cur[0]


# -- purges ------------------------------------------------------------------------------------

def _purge(k, cpus, fn) -> None:
    for c in cpus:
        if k.tlbs[c]:
            k.tlbs[c] = fn(k.tlbs[c])


def tlb_flush_idte_(k, asce: int) -> None:
    """IDTE clearing-by-ASCE (``IDTE_PTOA``): every CPU's entries formed through ``asce``."""
    k.note_purge(f"IDTE by ASCE {asce:#x}, all CPUs")
    _purge(k, range(len(k.cpus)), lambda t: TLB.purge_asce(t, asce))


def tlb_flush_global_(k) -> None:
    """CSP with the purge bit: every entry of every CPU."""
    k.note_purge("CSP purge, all CPUs")
    _purge(k, range(len(k.cpus)), lambda t: frozenset())


def tlb_flush_local_(k) -> None:
    """PTLB: every entry of this CPU."""
    k.note_purge(f"PTLB, CPU{this_cpu(k)} only")
    _purge(k, (this_cpu(k),), lambda t: frozenset())


def tlb_flush_mm_(k, mm: int) -> None:
    """``mm_cpumask(mm) := cpu_attach_mask``, then IDTE by ASCE on every CPU (never local)."""
    k.mem.write_u64(mm + MM["cpu_bitmap"], cpu_attach_mask(k, mm))
    tlb_flush_idte_(k, asce_of(k, mm))


def tlb_flush_mm_if_pending(k, mm: int) -> None:
    """What ``__tlb_flush_mm_lazy`` does under ``mm->context.lock`` (the lock itself is the
    step's: ``pgalloc.users.tlb_flush_mm_lazy_``): if ``flush_mm``, clear it and
    ``__tlb_flush_mm``."""
    if k.mem.read_u32(mm + MM["context.flush_mm"]):
        k.mem.write_u32(mm + MM["context.flush_mm"], 0)
        tlb_flush_mm_(k, mm)


def _only_me(k, mask: int) -> bool:
    return mask == 1 << this_cpu(k)


def ptep_flush_direct(k, mm: int, table: int) -> None:
    """IPTE of every PTE of page table ``table`` (``ptep_xchg_direct`` on each), then
    the PTEs are ``_PAGE_INVALID``: local when ``mm_cpumask(mm)`` is this CPU alone."""
    local = _only_me(k, mm_cpumask(k, mm))
    k.note_purge(f"IPTE {'local' if local else 'global'} of the PTEs of {table:#x}")
    _purge(k, (this_cpu(k),) if local else range(len(k.cpus)), lambda t: TLB.purge_table(t, table))
    k.mem.table(table, PTRS_PER_PTE)[:] = _PAGE_INVALID


def ptep_flush_lazy(k, mm: int, table: int) -> None:
    """``ptep_xchg_lazy`` on every PTE of ``table``: with only this CPU attached, a plain
    store and ``flush_mm = 1``; else IPTE global."""
    if _only_me(k, cpu_attach_mask(k, mm)):
        k.mem.table(table, PTRS_PER_PTE)[:] = _PAGE_INVALID
        k.mem.write_u32(mm + MM["context.flush_mm"], 1)
        return
    k.note_purge(f"IPTE global of the PTEs of {table:#x}")
    _purge(k, range(len(k.cpus)), lambda t: TLB.purge_table(t, table))
    k.mem.table(table, PTRS_PER_PTE)[:] = _PAGE_INVALID


def pmdp_flush_direct(k, mm: int, ste: int, new: int = _SEGMENT_ENTRY_EMPTY) -> None:
    """``pmdp_xchg_direct`` (``pmdp_collapse_flush``): IDTE of the segment entry at ``ste``
    (its table's entries and the PTEs read through it), local when ``mm_cpumask(mm)`` is
    this CPU alone, then ``set_pmd(new)``.  Nothing to purge if the entry is invalid."""
    old = k.mem.read_u64(ste)
    if not old & 0x20:
        table = old & ~0x7FF
        local = _only_me(k, mm_cpumask(k, mm))
        k.note_purge(f"IDTE {'local' if local else 'global'} of the STE at {ste:#x} -> {table:#x}")
        _purge(k, (this_cpu(k),) if local else range(len(k.cpus)), lambda t: TLB.purge_table(t, table))
    k.mem.write_u64(ste, new)


# -- which CPUs have the ASCE loaded (mmu_context.h) -------------------------------------------

def user_asce(k, cpu: int) -> int:
    """The user ASCE loaded on ``cpu``: control register 7 (kernel mode)."""
    return k.machine.control_register(cpu, CR_SECONDARY)


def attach(k, cpu: int, mm: int) -> None:
    """``switch_mm_irqs_off(prev, mm)`` and ``finish_arch_post_lock_switch`` run on ``cpu``
    at once: ``cpu_attach_mask`` and ``mm_cpumask`` get the CPU, control register 7 the
    mm's ASCE (what a CPU running one of the mm's threads has)."""
    set_mask(k, mm, "context.cpu_attach_mask", cpu, True)
    set_mask(k, mm, "cpu_bitmap", cpu, True)
    k.machine.set_control_register(cpu, CR_SECONDARY, asce_of(k, mm))
    k.reload_asces()
    k.tlb_fill()


def detach(k, cpu: int, mm: int) -> None:
    """``switch_mm_irqs_off(mm, next)`` to another mm: control register 7 gets
    ``s390_invalid_asce`` and ``cpu_attach_mask`` loses the CPU; ``mm_cpumask`` keeps it
    (the TLB may still hold the mm's entries)."""
    set_mask(k, mm, "context.cpu_attach_mask", cpu, False)
    k.machine.set_control_register(cpu, CR_SECONDARY, S390_INVALID_ASCE)
    k.reload_asces()
