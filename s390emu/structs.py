"""Kernel structure layouts, declared once.

Every kernel structure the emulator keeps lives in emulated storage at these offsets,
big-endian, 8-byte pointers.  Kernel virtual addresses equal absolute addresses (the
s390 identity mapping before Linux 6.10), so a pointer stored in the bytes is directly
an address in ``PhysicalMemory``.  The dump writer publishes these offsets in VMCOREINFO
(``SIZE(page)``, ``OFFSET(page._refcount)``, ...) and the dump readers take them from
there, the way crash and makedumpfile do.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Struct:
    """A C structure: its name, its size and the byte offset of each named field."""

    name: str
    size: int
    fields: dict[str, int]

    def __getattr__(self, field: str) -> int:
        try:
            return self.fields[field]
        except KeyError:
            raise AttributeError(f"struct {self.name} has no field {field!r}") from None


# include/linux/mm_types.h, 64-bit, with the overlays s390's page tables use:
# lru (list_head) and rcu_head share bytes 8..23; pt_mm is page->index.
page = Struct("page", 64, {
    "flags": 0,
    "lru": 8, "lru.next": 8, "lru.prev": 16,
    "rcu_head": 8, "rcu_head.next": 8, "rcu_head.func": 16,
    "compound_head": 8,
    "mapping": 24,
    "index": 32, "pt_mm": 32,
    "private": 40,
    "_mapcount": 48, "page_type": 48,
    "_refcount": 52,
    "memcg_data": 56,
})

list_head = Struct("list_head", 16, {"next": 0, "prev": 8})

# mm_struct, reduced to what s390 page-table code touches; mm->context is mm_context_t.
mm_struct = Struct("mm_struct", 128, {
    "mm_users": 0,          # atomic_t
    "mm_count": 4,          # atomic_t
    "pgd": 8,
    "context": 16,
    "context.lock": 16,     # spinlock_t: 0 free, else ~cpu (s390 SPINLOCK_LOCKVAL)
    "context.flush_mm": 20,
    "context.pgtable_list": 24,
    "context.asce": 40,
    "context.asce_limit": 48,
    "context.alloc_pgste": 56,  # byte
    "context.has_pgste": 57,    # byte
    "context.gmap_asce": 64,
    "owner": 72,            # an id for display (pid-like)
    "page_table_lock": 80,  # spinlock_t (crst_table_upgrade)
    "mmlist": 88,           # list_head on the machine's mm_list (MM_LIST)
    "context.cpu_attach_mask": 112,   # cpumask_t, one bit per CPU (NR_CPUS_MAX < 64): CPUs with the ASCE attached
    "cpu_bitmap": 120,                # mm_cpumask(mm): CPUs that may hold TLB entries of the mm
})

# struct free_area array of the single zone the frame allocator manages.
free_area = Struct("free_area", 24, {"free_list": 0, "nr_free": 16})

# s390 absolute lowcore fields the tools read (arch/s390/include/asm/lowcore.h).
lowcore = Struct("lowcore", 0x2000, {
    "vmcore_info": 0x0E0C,   # u64, unaligned: physical address of the VMCOREINFO note
    "os_info": 0x0E18,
})

# page->flags bits (include/linux/page-flags.h order, s390 has no arch bits here).
PG_locked = 0
PG_referenced = 2
PG_uptodate = 3
PG_dirty = 4
PG_lru = 5
PG_head = 6
PG_active = 7
PG_reserved = 10
PG_private = 11

# page_type is stored inverted in _mapcount (kernels 5.x-6.x): -1 means "no type".
PAGE_TYPE_NONE = 0xFFFF_FFFF
PG_buddy = 0x0000_0080
PG_table = 0x0000_0200

POISON_FREE = 0x6B        # SLUB's POISON_FREE; also what freed frames are filled with
LIST_POISON1 = 0x100      # list_del() leaves these in next/prev
LIST_POISON2 = 0x122
