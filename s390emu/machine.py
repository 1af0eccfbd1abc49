"""An emulated s390x machine as Linux lays it out: storage, lowcores, ``mem_map``, a zone.

Absolute storage map (all of it in ``PhysicalMemory``, nothing on the side):

====================  ==============================================================
``0x0000-0x1fff``     lowcore of CPU 0 (prefix 0); other CPUs' lowcores are 8K blocks
                      from the page allocator, each CPU's prefix points at its own
``0x2000``            the zone's ``free_area[MAX_ORDER + 1]``
``0x2300``            ``nr_cpus`` and ``lowcore_ptr[]`` (each CPU's prefix)
``0x2400``            ``mm_list``: a ``list_head`` of every live ``mm_struct``
``0x2800-0x2fff``     the VMCOREINFO note (``lowcore.vmcore_info`` points here)
``0x3000``            ``mem_map``: one 64-byte ``struct page`` per frame
after ``mem_map``     ``swapper_pg_dir`` (the kernel's region-third table), then free
====================  ==============================================================

CPU state that a dump must carry (prefix, control registers 0-15) is kept where
STORE STATUS puts it: in each CPU's lowcore save areas.  A ``Machine`` can therefore be
rebuilt from the bytes alone (``Machine.attach``), which is how dumps are read back.
"""

from __future__ import annotations

from . import lists
from . import structs as S
from .frames import MAX_ORDER, FrameAllocator
from .errors import InvalidArgument
from .memory import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from .page import MemMap
from .vmcoreinfo import VMCOREINFO_MAX, LayoutError, note, read_vmcoreinfo, symbol

ZONE = 0x2000
NR_CPUS = 0x2300           # u32: how many CPUs
LOWCORE_PTR = 0x2304       # u32 lowcore_ptr[NR_CPUS_MAX]: each CPU's prefix
MM_LIST = 0x2400
VMCOREINFO = 0x2800
MEM_MAP = 0x3000

# Lowcore save areas written by STORE STATUS (arch/s390/include/asm/lowcore.h).
LC_PREFIX_SAVE = 0x1318
LC_CREGS_SAVE = 0x1380
NR_CPUS_MAX = 63          # lowcore_ptr[] must end below MM_LIST

OSRELEASE = "6.6.0-s390emu"

# Kernel identity mapping: region-third ASCE, private bit off (arch/s390 kernel ASCE).
_ASCE_TYPE_REGION3 = 0x04
_ASCE_TABLE_LENGTH = 0x03
_REGION3_ENTRY_EMPTY = 0x24
_REGION3_ENTRY = 0x07
_SEGMENT_ENTRY_EMPTY = 0x20
_SEGMENT_ENTRY_LARGE = 0x400
_SEGMENT_ENTRY_NOEXEC = 0x100
CRST_ENTRIES = 2048


def layout_vmcoreinfo() -> dict[str, str]:
    """The VMCOREINFO keys that say where this kernel keeps its structures (every machine
    publishes the same): ``PAGESIZE``, the symbols but ``swapper_pg_dir``, the numbers,
    sizes and offsets."""
    info = {
        "PAGESIZE": str(PAGE_SIZE),
        "SYMBOL(mem_map)": f"{MEM_MAP:x}",
        "SYMBOL(lowcore_ptr)": f"{LOWCORE_PTR:x}",
        "SYMBOL(nr_cpus)": f"{NR_CPUS:x}",
        "SYMBOL(s390emu_free_area)": f"{ZONE:x}",
        "SYMBOL(s390emu_mm_list)": f"{MM_LIST:x}",
        "NUMBER(MAX_ORDER)": str(MAX_ORDER),
        "NUMBER(NR_CPUS)": str(NR_CPUS_MAX),
        "NUMBER(PG_active)": str(S.PG_active),
        "NUMBER(PG_head)": str(S.PG_head),
        "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)": str(~S.PG_buddy & 0xFFFFFFFF),
        "NUMBER(PAGE_TABLE_MAPCOUNT_VALUE)": str(~S.PG_table & 0xFFFFFFFF),
    }
    for struct in (S.page, S.list_head, S.mm_struct, S.free_area):
        info[f"SIZE({struct.name})"] = str(struct.size)
        for field, off in struct.fields.items():
            info[f"OFFSET({struct.name}.{field})"] = str(off)
    return info


class Machine:
    """Storage plus the kernel structures every other layer builds on.

    >>> m = Machine(16 << 20, ncpus=2)
    >>> m.nr_cpus, m.prefix(0), m.frames.nr_free() > 3000
    (2, 0, True)
    """

    def __init__(self, mem_size: int = 64 << 20, ncpus: int = 2, *, mem: PhysicalMemory | None = None):
        self.mem = mem if mem is not None else PhysicalMemory(mem_size)
        self.mem_map = MemMap(self.mem, MEM_MAP)
        self.frames = FrameAllocator(self.mem, self.mem_map, ZONE)
        if mem is None:
            self._boot(ncpus)

    # -- boot ------------------------------------------------------------------------------

    def _boot(self, ncpus: int) -> None:
        mem, nr_pages = self.mem, self.mem.size >> PAGE_SHIFT
        map_end = (MEM_MAP + nr_pages * S.page.size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if not 1 <= ncpus <= NR_CPUS_MAX:
            raise InvalidArgument(f"{ncpus} CPUs: a machine has 1 to {NR_CPUS_MAX}")
        if map_end + (1 << 20) > mem.size:
            raise InvalidArgument(f"storage of {mem.size:#x} bytes is too small for mem_map and the kernel")
        # Every struct page starts as a reserved page with one reference (memblock).
        words = S.page.size // 8
        pages64 = mem.u64[MEM_MAP // 8:MEM_MAP // 8 + nr_pages * words].reshape(nr_pages, words)
        pages64[:] = 0
        pages64[:, S.page.flags // 8] = 1 << S.PG_reserved
        pages32 = mem.u32[MEM_MAP // 4:MEM_MAP // 4 + nr_pages * words * 2].reshape(nr_pages, words * 2)
        pages32[:, S.page._refcount // 4] = 1
        pages32[:, S.page.page_type // 4] = S.PAGE_TYPE_NONE
        self.frames.init_zone()
        lists.INIT_LIST_HEAD(mem, MM_LIST)
        self.frames.free_range(map_end >> PAGE_SHIFT, nr_pages)
        self.frames.poison = False  # boot memory is zero, as the kernel finds it
        self.swapper_pg_dir = self._identity_map()
        self.frames.poison = True
        for cpu in range(ncpus):
            prefix = 0 if cpu == 0 else self.frames.alloc_pages(1)
            mem.fill(prefix, 0x2000, 0)
            self._store_prefix(cpu, prefix)
        # After the lowcores are cleared: the absolute lowcore's pointer to the VMCOREINFO
        # note, a doubleword at an unaligned offset as the kernel's.
        mem.write(S.lowcore.vmcore_info, VMCOREINFO.to_bytes(8, "big"))
        self.write_vmcoreinfo()

    def _identity_map(self) -> int:
        """``swapper_pg_dir``: all storage mapped 1:1 with 1 MiB EDAT-1 segment frames."""
        r3t = self.frames.alloc_pages(2)
        self.mem.table(r3t, CRST_ENTRIES)[:] = _REGION3_ENTRY_EMPTY
        seg_size = 1 << 20
        for base in range(0, self.mem.size, 1 << 31):
            st = self.frames.alloc_pages(2)
            table = self.mem.table(st, CRST_ENTRIES)
            table[:] = _SEGMENT_ENTRY_EMPTY
            n = min(CRST_ENTRIES, (self.mem.size - base + seg_size - 1) // seg_size)
            for i in range(n):
                table[i] = base + i * seg_size | _SEGMENT_ENTRY_LARGE | _SEGMENT_ENTRY_NOEXEC
            self.mem.write_u64(r3t + 8 * (base >> 31), st | _REGION3_ENTRY)
        return r3t

    @property
    def kernel_asce(self) -> int:
        """The kernel's ASCE: ``swapper_pg_dir`` as a region-third table, TL=3, P=0."""
        return self.swapper_pg_dir | _ASCE_TYPE_REGION3 | _ASCE_TABLE_LENGTH

    # -- CPUs: prefix and control registers in the lowcore save areas -------------------------

    def _store_prefix(self, cpu: int, prefix: int) -> None:
        self.mem.write_u32(prefix + LC_PREFIX_SAVE, prefix)
        self.mem.write_u32(LOWCORE_PTR + 4 * cpu, prefix)
        self.mem.write_u32(NR_CPUS, max(self.nr_cpus, cpu + 1))

    @property
    def nr_cpus(self) -> int:
        """How many CPUs this machine has."""
        return self.mem.read_u32(NR_CPUS)

    def prefix(self, cpu: int) -> int:
        """CPU ``cpu``'s prefix register (``lowcore_ptr[cpu]``)."""
        if not 0 <= cpu < self.nr_cpus:
            raise InvalidArgument(f"no CPU {cpu}: this machine has {self.nr_cpus}")
        return self.mem.read_u32(LOWCORE_PTR + 4 * cpu)

    def control_register(self, cpu: int, n: int) -> int:
        """CPU ``cpu``'s control register ``n`` (from its lowcore save area)."""
        return self.mem.read_u64(self.prefix(cpu) + LC_CREGS_SAVE + 8 * n)

    def control_registers(self, cpu: int) -> tuple[int, ...]:
        """CPU ``cpu``'s control registers 0-15, as STORE STATUS saved them."""
        return tuple(self.control_register(cpu, n) for n in range(16))

    def set_control_register(self, cpu: int, n: int, value: int) -> None:
        """Load control register ``n`` of CPU ``cpu`` (kept in its lowcore save area)."""
        self.mem.write_u64(self.prefix(cpu) + LC_CREGS_SAVE + 8 * n, value)

    # -- VMCOREINFO ------------------------------------------------------------------------

    def vmcoreinfo(self) -> dict[str, str]:
        """The VMCOREINFO keys this kernel publishes (what ``write_vmcoreinfo`` stores)."""
        layout = layout_vmcoreinfo()
        info = {"OSRELEASE": OSRELEASE, "PAGESIZE": layout.pop("PAGESIZE"),      # the order kdump writes
                "SYMBOL(swapper_pg_dir)": f"{self.swapper_pg_dir:x}", **layout}
        # The text in storage is the source of truth for what was published on top of the
        # layout (OSRELEASE, keys such as S390EMU_PGALLOC): keep it across rewrites.
        for key, value in read_vmcoreinfo(self.mem).items():
            if key == "OSRELEASE" or key not in info:
                info[key] = value
        return info


    def publish_vmcoreinfo(self, keys: dict[str, str]) -> None:
        """Set VMCOREINFO keys (``OSRELEASE``, extra ``NAME=value`` keys) in the stored text.

        >>> m = Machine(8 << 20, ncpus=1)
        >>> m.publish_vmcoreinfo({"OSRELEASE": "6.4.0-s390emu", "S390EMU_PGALLOC": "v64"})
        >>> read_vmcoreinfo(m.mem)["OSRELEASE"], read_vmcoreinfo(m.mem)["S390EMU_PGALLOC"]
        ('6.4.0-s390emu', 'v64')
        """
        for key, value in keys.items():
            if not key or any(c in key for c in "=\n\0") or any(c in str(value) for c in "\n\0"):
                raise InvalidArgument(f"not a VMCOREINFO line: {key!r}={value!r}")
        self.write_vmcoreinfo({k: str(v) for k, v in keys.items()})

    def write_vmcoreinfo(self, extra: dict[str, str] | None = None) -> None:
        """Store the VMCOREINFO note where ``lowcore.vmcore_info`` points (plus ``extra`` keys)."""
        info = self.vmcoreinfo()
        info.update(extra or {})
        data = note("".join(f"{k}={v}\n" for k, v in info.items()).encode())
        if len(data) >= VMCOREINFO_MAX:
            raise InvalidArgument("VMCOREINFO text does not fit its page")
        self.mem.fill(VMCOREINFO, VMCOREINFO_MAX, 0)
        self.mem.write(VMCOREINFO, data)

    @classmethod
    def attach(cls, mem: PhysicalMemory, vmcoreinfo: dict[str, str] | None = None) -> "Machine":
        """A ``Machine`` over existing storage (a loaded image or dump), found through
        VMCOREINFO: ``vmcoreinfo`` (a dump's note, trusted as kdump readers trust it, so
        that a lowcore whose ``vmcore_info`` pointer is lost still opens), else the text
        stored in ``mem``.

        Raises ``LayoutError`` when that VMCOREINFO names no s390emu kernel.

        >>> m = Machine(8 << 20, ncpus=1)
        >>> Machine.attach(m.mem).swapper_pg_dir == m.swapper_pg_dir
        True
        """
        info = read_vmcoreinfo(mem) if vmcoreinfo is None else vmcoreinfo
        if info.get("SYMBOL(mem_map)") != f"{MEM_MAP:x}":
            raise LayoutError("storage holds no s390emu VMCOREINFO (is it an s390emu image?)")
        swapper_pg_dir = symbol(info, "swapper_pg_dir")
        m = cls(mem=mem)
        m.swapper_pg_dir = swapper_pg_dir
        return m
