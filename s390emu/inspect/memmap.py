"""``struct page`` of any kernel, found as makedumpfile finds it, and read through DAT.

Three layouts (makedumpfile's ``get_mem_type`` order):

* **s390emu**: the machine's ``mem_map`` is an array in absolute storage at
  ``SYMBOL(mem_map)`` (``Machine.attach`` recognises it); kernel addresses are absolute;
* **SPARSEMEM** (every s390 kernel since 2.6.x; ``SYMBOL(mem_section)``): the section
  array, ``SPARSEMEM_EXTREME`` when ``LENGTH(mem_section)`` counts roots
  (``NR_MEM_SECTIONS / (PAGE_SIZE / SIZE(mem_section))``), then a pointer to it since
  v4.15 (``struct mem_section **mem_section``, the form tried first, as makedumpfile's
  ``validate_mem_section`` does); each present section's ``section_mem_map`` is the
  *encoded* mem_map (``mem_map - section_start_pfn``, low bits flags), so the struct page
  of ``pfn`` lies at ``(section_mem_map & ~flags) + pfn * SIZE(page)``: with
  ``SPARSEMEM_VMEMMAP`` that is ``vmemmap + pfn``, a kernel virtual address;
* **FLATMEM** (``SYMBOL(mem_map)`` alone): the variable ``mem_map`` points at the array.

Kernel addresses (the section roots, ``vmemmap``) are translated through the kernel's
ASCE with this project's walker (``dat.translate_many``, real addresses, prefix 0), so
a struct page array behind the kernel's page tables is read exactly where the kernel
would read it.  The struct pages are copied out page by page (``StructPages.words``);
the storage itself is never read whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import dat

from ..memory import PAGE_SIZE, PhysicalMemory
from ..vmcoreinfo import LayoutError, number, symbol

# section_mem_map's low bits are flags (SECTION_MARKED_PRESENT, SECTION_HAS_MEM_MAP, ...;
# 2 bits in v2.6, 5 in v6.1): the encoded mem_map is at least 64-byte aligned, so six
# bits cover every release's flags.
SECTION_MARKED_PRESENT = 1
SECTION_HAS_MEM_MAP = 2
SECTION_MAP_MASK = ~0x3F & (1 << 64) - 1


class KernelSpace:
    """Kernel virtual memory of a storage: reads through the kernel ASCE's tables.

    >>> from s390emu.inspect import open_demo
    >>> st = open_demo("v66")
    >>> KernelSpace(st.mem, st.kernel_asce()).read_u64(0x3000) == st.mem.read_u64(0x3000)
    True
    """

    def __init__(self, mem: PhysicalMemory, asce: int):
        self.mem = mem
        self.asce = asce

    def absolute(self, vaddrs) -> tuple[np.ndarray, np.ndarray]:
        """``(absolute addresses, program-interruption codes)`` of ``vaddrs`` (0 = mapped)."""
        return dat.translate_many(self.mem, self.asce, np.asarray(vaddrs, dtype=np.uint64), access="lra")

    def read(self, vaddr: int, length: int) -> bytes:
        """``length`` bytes at kernel address ``vaddr``; ``LayoutError`` where unmapped."""
        pages = np.arange(vaddr & ~0xFFF, vaddr + length, PAGE_SIZE, dtype=np.uint64)
        real, codes = self.absolute(pages)
        if codes.any():
            bad = int(pages[np.flatnonzero(codes)[0]])
            raise LayoutError(f"kernel address {bad:#x} is not mapped by the kernel's ASCE")
        out = bytearray()
        for i, page in enumerate(pages.tolist()):
            lo, hi = max(vaddr, page), min(vaddr + length, page + PAGE_SIZE)
            out += self.mem.read(int(real[i]) + lo - page, hi - lo)
        return bytes(out)

    def read_u64(self, vaddr: int) -> int:
        """The big-endian doubleword at kernel address ``vaddr``."""
        return int.from_bytes(self.read(vaddr, 8), "big")


@dataclass
class StructPages:
    """The struct pages of every frame of storage, copied out of the kernel's mem_map.

    ``words[pfn]`` is frame ``pfn``'s ``struct page`` as big-endian words (zeros where no
    struct page is mapped: ``present[pfn]`` is False); ``address[pfn]`` its kernel address
    (what the kernel's pointers hold: the vmemmap address on a real kernel), ``layout``
    one of ``s390emu``, ``sparsemem``, ``sparsemem-extreme``, ``flatmem``.
    """

    layout: str
    size: int
    words: np.ndarray
    address: np.ndarray
    present: np.ndarray

    def u64(self, pfn: int, offset: int) -> int:
        """The doubleword at ``offset`` in frame ``pfn``'s struct page."""
        w = self.words[pfn]
        return int(w[offset // 4]) << 32 | int(w[offset // 4 + 1])

    def pfn_of(self, page_address: int) -> int | None:
        """The frame whose struct page lies at kernel address ``page_address`` (None if none)."""
        i = int(np.searchsorted(self.address, page_address))
        if i < len(self.address) and self.address[i] == page_address and self.present[i]:
            return i
        return None


def struct_pages(mem: PhysicalMemory, vmcoreinfo: dict[str, str], kernel: KernelSpace | None,
                 *, s390emu: bool = False) -> StructPages:
    """Every frame's ``struct page`` (see the module docstring for the layouts).

    ``kernel`` reads kernel addresses (None: absolute, as on an s390emu machine, whose
    ``s390emu`` flag says its ``SYMBOL(mem_map)`` is the array itself).  Raises
    ``LayoutError`` naming the key or address that is missing.

    >>> from s390emu.inspect import open_demo
    >>> st = open_demo("v66")
    >>> sp = struct_pages(st.mem, st.vmcoreinfo, None, s390emu=True)
    >>> sp.layout, sp.size, hex(int(sp.address[1]))
    ('s390emu', 64, '0x3040')
    """
    v = vmcoreinfo
    base = symbol(v, "mem_map") if s390emu else 0
    size = number(v, "SIZE(page)")
    if size % 8 or size <= 0:
        raise LayoutError(f"VMCOREINFO SIZE(page)={size} is not a whole number of doublewords")
    nr = mem.size // PAGE_SIZE
    if s390emu:
        if not mem.contains(base, nr * size):
            raise LayoutError(f"mem_map at {base:#x} ({nr} pages) does not fit in storage")
        words = mem.u32[base // 4:(base + nr * size) // 4].reshape(nr, size // 4)
        address = base + np.arange(nr, dtype=np.uint64) * np.uint64(size)
        return StructPages("s390emu", size, words, address, np.ones(nr, dtype=bool))
    if kernel is None:
        raise LayoutError("no kernel ASCE to read the kernel's mem_map through")
    if "SYMBOL(mem_section)" in v:
        layout, encoded = _sections(kernel, v, nr)
    elif "SYMBOL(mem_map)" in v:
        layout, encoded = "flatmem", np.full(nr, kernel.read_u64(symbol(v, "mem_map")), dtype=np.uint64)
    else:
        raise LayoutError("VMCOREINFO has neither SYMBOL(mem_section) nor SYMBOL(mem_map)")
    pfns = np.arange(nr, dtype=np.uint64)
    address = np.where(encoded != 0, encoded + pfns * np.uint64(size), np.uint64(0))
    return _copy_out(kernel, layout, size, address, encoded != 0)


def _sections(kernel: KernelSpace, v: dict[str, str], nr: int) -> tuple[str, np.ndarray]:
    """``(layout, encoded mem_map per pfn)`` from the mem_section array (0: no section)."""
    ms_size = number(v, "SIZE(mem_section)")
    off = number(v, "OFFSET(mem_section.section_mem_map)")
    section_bits = number(v, "NUMBER(SECTION_SIZE_BITS)")
    physmem_bits = number(v, "NUMBER(MAX_PHYSMEM_BITS)")
    length = number(v, "LENGTH(mem_section)")
    at = symbol(v, "mem_section")
    per_section = 1 << (section_bits - 12)
    nr_sections = 1 << (physmem_bits - section_bits)
    per_root = PAGE_SIZE // ms_size
    wanted = -(-nr // per_section)                       # sections that cover storage
    extreme = length == nr_sections // per_root
    if extreme:
        # v4.15+: mem_section is a pointer to the root array; before, the array itself.
        roots = [kernel.read_u64(at)] if kernel.read_u64(at) else []
        roots.append(at)
        layout = "sparsemem-extreme"
    else:
        roots, per_root, layout = [at], nr_sections, "sparsemem"
    for root_array in roots:
        encoded = np.zeros(nr, dtype=np.uint64)
        try:
            for s in range(wanted):
                if extreme:
                    root = kernel.read_u64(root_array + 8 * (s // per_root))
                    if not root:
                        continue
                    section = root + (s % per_root) * ms_size
                else:
                    section = root_array + s * ms_size
                smm = kernel.read_u64(section + off)
                if smm & (SECTION_MARKED_PRESENT | SECTION_HAS_MEM_MAP) == SECTION_MARKED_PRESENT | SECTION_HAS_MEM_MAP:
                    encoded[s * per_section:(s + 1) * per_section] = smm & SECTION_MAP_MASK
        except LayoutError:
            continue                                     # not this form: try the next
        if encoded.any():
            return layout, encoded
    raise LayoutError(f"mem_section at {at:#x} holds no present section with a mem_map")


def _copy_out(kernel: KernelSpace, layout: str, size: int, address: np.ndarray, mapped: np.ndarray,
              chunk: int = 1 << 16) -> StructPages:
    """Copy every struct page out of kernel memory: each doubleword of each struct page
    translated by its 4K page (a struct page may straddle two), ``chunk`` frames at a time."""
    nr, quads = len(address), size // 8
    out = np.zeros((nr, quads), dtype=">u8")
    present = np.zeros(nr, dtype=bool)
    mem = kernel.mem
    steps = np.arange(quads, dtype=np.uint64) * np.uint64(8)
    for lo in range(0, nr, chunk):
        idx = lo + np.flatnonzero(mapped[lo:lo + chunk])
        if not len(idx):
            continue
        virt = address[idx, None] + steps                      # every doubleword's address
        pages, inverse = np.unique(virt >> np.uint64(12), return_inverse=True)
        real, codes = kernel.absolute(pages << np.uint64(12))
        absolute = real[inverse].reshape(virt.shape) + (virt & np.uint64(0xFFF))
        ok = (codes[inverse].reshape(virt.shape) == 0).all(axis=1) & (absolute < mem.size).all(axis=1)
        rows = idx[ok]
        out[rows] = mem.u64[(absolute[ok] >> np.uint64(3)).astype(np.intp)]
        present[rows] = True
    return StructPages(layout, size, out.view(">u4"), address, present)


# -- which struct page says PageTable, and PG_active, per release --------------------------

PAGE_TYPE_BASE = 0xF000_0000
PGTY_TABLE = 0xF2              # v6.12+: the page type is page_type's top byte


def release(vmcoreinfo: dict[str, str]) -> tuple[int, int] | None:
    """``(major, minor)`` of ``OSRELEASE`` (``6.1.0-50-s390x`` is (6, 1)), None without it.

    >>> release({"OSRELEASE": "6.1.0-50-s390x"}), release({})
    ((6, 1), None)
    """
    parts = vmcoreinfo.get("OSRELEASE", "").split(".")
    try:
        return int(parts[0]), int(parts[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def page_table_rule(vmcoreinfo: dict[str, str]) -> tuple[str, object]:
    """``(description, test)``: how this kernel's ``page_type`` marks a page-table page,
    ``test`` mapping an array of page_type words to booleans (``PageTable``).

    ``NUMBER(PAGE_TABLE_MAPCOUNT_VALUE)`` when VMCOREINFO has it (s390emu kernels);
    else by release, include/linux/page-flags.h: ``PG_table`` 0x400 from v4.18 (beside
    ``PG_kmemcg`` 0x200), 0x200 from v5.11 (``PG_kmemcg`` gone, memcg_data), 0x40000 from
    v6.10 (the low 16 bits freed for the type's owner), and from v6.12 the type in the
    top byte (``PGTY_table`` 0xf2).  Raises ``LayoutError`` when neither says.

    >>> import numpy as np
    >>> desc, test = page_table_rule({"OSRELEASE": "6.1.0-50-s390x"})
    >>> desc, test(np.array([0xFFFFFDFF, 0xFFFFFFFF, 0xFFFFFF7F], dtype=np.uint32)).tolist()
    ('PG_table 0x200 (v5.11-v6.9)', [True, False, False])
    """
    v = vmcoreinfo
    if "NUMBER(PAGE_TABLE_MAPCOUNT_VALUE)" in v:
        bit = ~number(v, "NUMBER(PAGE_TABLE_MAPCOUNT_VALUE)") & 0xFFFF_FFFF
        return f"PG_table {bit:#x} (VMCOREINFO)", _base_test(bit)
    rel = release(v)
    if rel is None:
        raise LayoutError("VMCOREINFO has neither NUMBER(PAGE_TABLE_MAPCOUNT_VALUE) nor OSRELEASE: "
                          "which struct pages mark page tables is unknown")
    if rel >= (6, 12):
        return f"page_type top byte {PGTY_TABLE:#x} (v6.12+)", lambda t: (np.asarray(t, dtype=np.uint32) >> 24) == PGTY_TABLE
    for since, bit, span in (((6, 10), 0x40000, "v6.10-v6.11"), ((5, 11), 0x200, "v5.11-v6.9"),
                             ((4, 18), 0x400, "v4.18-v5.10")):
        if rel >= since:
            return f"PG_table {bit:#x} ({span})", _base_test(bit)
    raise LayoutError(f"OSRELEASE {v['OSRELEASE']}: kernels before v4.18 do not mark page-table pages")


def _base_test(bit: int):
    """``PageType(page, flag)`` before v6.12: the base bits set and the flag cleared."""
    mask = np.uint32(PAGE_TYPE_BASE | bit)
    return lambda t: (np.asarray(t, dtype=np.uint32) & mask) == np.uint32(PAGE_TYPE_BASE)


def pg_active(vmcoreinfo: dict[str, str]) -> int | None:
    """The bit number of ``PG_active`` in ``page->flags``: ``NUMBER(PG_active)`` when
    published, else ``NUMBER(PG_lru) + 1`` for releases before v6.10 (``PG_active``
    follows ``PG_lru`` in ``enum pageflags`` through v6.9); None when unknown.

    >>> pg_active({"NUMBER(PG_lru)": "4", "OSRELEASE": "6.1.0"}), pg_active({"OSRELEASE": "6.13.0"})
    (5, None)
    """
    if "NUMBER(PG_active)" in vmcoreinfo:
        return number(vmcoreinfo, "NUMBER(PG_active)")
    rel = release(vmcoreinfo)
    if "NUMBER(PG_lru)" in vmcoreinfo and rel is not None and rel < (6, 10):
        return number(vmcoreinfo, "NUMBER(PG_lru)") + 1
    return None
