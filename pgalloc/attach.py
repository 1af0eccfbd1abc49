"""A ``Kernel`` rebuilt from the bytes alone: what ``s390emu check --dump`` runs the invariants on.

A dump holds storage, nothing else.  Everything the checks need is recovered from it the
way crash or drgn would, through the dump's VMCOREINFO text:

* the allocator version: ``S390EMU_PGALLOC=<version>`` (and ``OSRELEASE``, which must
  agree with it: ``6.6.0-s390emu`` is v66, ``6.4.0-s390emu-seed`` the seed, ...);
* the live mms: ``SYMBOL(s390emu_mm_list)`` through ``mm_struct.mmlist``;
* ``Kernel.owner`` (which mm each page table was handed to): a walk of every live mm's
  ASCE (``dat.reachable_tables``); a table reached from two mms belongs to the one that
  also reaches the other half of its frame (else the first), and the reachability check
  names every entry that reaches it, marking those that are not the owner's;
* the RCU queue: the ``struct page`` of a page-table page whose ``rcu_head.func`` holds
  the text address of one of this version's callbacks (``kernel.func_addr``) and that is
  on no ``pgtable_list`` (``lru`` overlays ``rcu_head``).  The seed's ``pte_free_now0`` /
  ``pte_free_now1`` head counts only while the H bit of its half is set: once the
  callback ran, the page can keep the stale ``func`` (other half still RCU-pending).
  ``tlb_remove_table_rcu`` batches are not in memory (their ``rcu_head`` is 0), so a
  dump cannot show them: their halves are visible only as P bits;
* a dump is otherwise a quiescent snapshot: no CPU is inside an allocator path, no
  mmu_gather is open.  A non-zero ``mm->context.lock`` word is a held lock: it is recorded
  in ``Kernel.locks`` (holder ``~word``) and reported as a ``locking`` finding.

Findings made while attaching (held locks, a corrupt list) are kept in
``Kernel.warnings``; ``check_dump(k)`` returns them together with every check's findings.

>>> from pgalloc.demo import build_demo
>>> k = attach(build_demo("v64").machine)
>>> k.version, len(live_mms(k)), check_dump(k)
('v64', 2, [])
"""

from __future__ import annotations

from dat import reachable_tables
from s390emu import lists
from s390emu import structs as S
from s390emu.lists import ListCorruption
from s390emu.machine import MEM_MAP, MM_LIST, Machine, layout_vmcoreinfo, read_vmcoreinfo
from s390emu.memory import PhysicalMemory

from .checks import live_mms, page_checks, pagetable_pages, reachability
from .errors import AttachError, Violation
from .kernel import Kernel, func_addr
from .pgtable import RCU_HEAD
from .registry import PGALLOC_KEY, VERSIONS, osrelease

__all__ = ("AttachError", "attach", "check_dump", "version_of")

_MM = S.mm_struct.fields
_LRU = S.page.fields["lru"]
MAX_MMS = 1 << 16


def version_of(vmcoreinfo: dict[str, str]) -> str:
    """The allocator version a VMCOREINFO names.

    >>> version_of({"OSRELEASE": "6.4.0-s390emu-seed", "S390EMU_PGALLOC": "seed"})
    'seed'
    """
    version = vmcoreinfo.get(PGALLOC_KEY)
    if version is None:
        rel = vmcoreinfo.get("OSRELEASE", "(none)")
        raise AttachError(f"VMCOREINFO has no {PGALLOC_KEY} key (OSRELEASE {rel}): "
                          "not a machine run by an s390emu pgalloc kernel")
    if version not in VERSIONS:
        raise AttachError(f"VMCOREINFO {PGALLOC_KEY}={version} is not an allocator version "
                          f"({', '.join(VERSIONS)}), nor a version file loaded")
    rel = vmcoreinfo.get("OSRELEASE")
    if rel != osrelease(version):
        raise AttachError(f"VMCOREINFO disagrees with itself: {PGALLOC_KEY}={version} but "
                          f"OSRELEASE={rel} (expected {osrelease(version)})")
    return version


def _check_layout(vmcoreinfo: dict[str, str]) -> None:
    """Raise ``AttachError`` when ``vmcoreinfo`` places a structure where s390emu's kernel
    does not: the checks read ``struct page`` and ``mm_struct`` at the kernel's offsets, so
    a dump whose VMCOREINFO says otherwise cannot be checked (``pages``, which follows
    VMCOREINFO, refuses such a dump too)."""
    expected = layout_vmcoreinfo()
    for key, value in vmcoreinfo.items():
        if key in expected and value != expected[key]:
            raise AttachError(f"VMCOREINFO {key}={value} is not the s390emu kernel's ({expected[key]}): "
                              "the dump cannot be checked")


def _mm_list(mem: PhysicalMemory) -> tuple[list[int], list[Violation]]:
    """The mms on ``mm_list``, walked defensively (a broken link ends the walk, reported)."""
    off = _MM["mmlist"]
    out: list[int] = []
    seen = {MM_LIST}
    prev, node = MM_LIST, mem.read_u64(MM_LIST)
    while node != MM_LIST:
        mm = node - off
        if (node in seen or not mem.contains(mm, S.mm_struct.size) or mem.read_u64(node + 8) != prev
                or len(out) >= MAX_MMS):
            return out, [Violation("list_corruption", 0, f"mm_list at {MM_LIST:#x}: broken link {node:#x} "
                                   f"after {prev:#x}; {len(out)} mms read before it")]
        seen.add(node)
        out.append(mm)
        prev, node = node, mem.read_u64(node)
    return out, []


def attach(source: Machine | PhysicalMemory, vmcoreinfo: dict[str, str] | None = None) -> Kernel:
    """A ``Kernel`` over ``source``'s bytes, with the state only a running kernel keeps
    (owner record, RCU queue, held locks) rebuilt from those bytes.

    ``vmcoreinfo`` defaults to the text stored in ``source``.  Raises ``AttachError`` when
    ``source`` is not an s390emu machine run by a pgalloc kernel.

    >>> from pgalloc.demo import build_demo
    >>> d = build_demo("v66")
    >>> k = attach(d.machine)
    >>> k.owner == d.kernel.owner, k.rcu, k.locks
    (True, [], {})
    """
    if isinstance(source, Machine):
        machine = source
    else:
        try:
            machine = Machine.attach(source)
        except (ValueError, KeyError) as e:
            raise AttachError(f"storage holds no usable s390emu VMCOREINFO ({e})") from None
    info = read_vmcoreinfo(machine.mem) if vmcoreinfo is None else vmcoreinfo
    _check_layout(info)
    version = version_of(info)
    k = Kernel(version, machine=machine)
    mem = machine.mem
    mms, findings = _mm_list(mem)
    # Owner record: every page table reachable from a live mm's ASCE.
    reached: dict[int, list[int]] = {}
    for mm in mms:
        asce = mem.read_u64(mm + _MM["context.asce"])
        for t in reachable_tables(mem, asce).page_tables.tolist():
            reached.setdefault(int(t), []).append(mm)
    for t, by in reached.items():
        k.owner[t] = by[0] if len(set(by)) == 1 else _likely_owner(t, by, reached)
    # Held locks: a non-zero context.lock word.
    for mm in mms:
        word = mem.read_u32(mm + _MM["context.lock"])
        if word:
            cpu = ~word & 0xFFFFFFFF
            k.locks[mm + _MM["context.lock"]] = (cpu, "unknown", "spin_lock")
            findings.append(Violation("locking", 0, f"mm {mm:#x}: context.lock is held (lock word {word:#010x}, "
                                      f"CPU {cpu if cpu < 1 << 16 else '?'}) in a dump that should be quiescent"))
    # RCU queue: page-table pages whose rcu_head.func is one of this version's callbacks.
    funcs = {func_addr(name): name for name in k.v.CALLBACKS}
    if funcs:
        listed: set[int] = set()
        for mm in mms:
            try:
                listed.update(n - _LRU for n in _list_nodes(k, mm))
            except ListCorruption:
                pass          # check_all reports it
        for page in pagetable_pages(k).tolist():
            name = funcs.get(mem.read_u64(page + RCU_HEAD + 8))
            if name is None or page in listed:
                continue
            if name in ("pte_free_now0", "pte_free_now1") and not k.byte(page) >> (2 + int(name[-1])) & 1:
                continue      # stale: that half's callback already ran
            k.rcu.append((page + RCU_HEAD, name, (), False))
    k.warnings = findings
    k.attached_mms = mms
    return k


def _likely_owner(table: int, by: list[int], reached: dict[int, list[int]]) -> int:
    """The owner of a table reached from several mms, as far as the bytes tell: the mm
    that alone reaches the other half of its frame (both halves of a frame are handed out
    by one mm's ``pgtable_list``), else the first mm on ``mm_list`` that reaches it; the
    reachability check then names the other entries as not the owner's."""
    other = set(reached.get(table ^ 0x800, ()))
    return next(iter(other)) if len(other) == 1 and next(iter(other)) in by else by[0]


def _list_nodes(k: Kernel, mm: int) -> list[int]:
    return lists.list_entries(k.mem, mm + _MM["context.pgtable_list"])


def check_dump(k: Kernel) -> list[Violation]:
    """Every finding on an attached kernel: what ``attach`` found (held locks, a broken
    ``mm_list``), the per-page invariants (bits, list membership, rcu_head) and
    reachability.  A corrupt ``pgtable_list`` is a ``list_corruption`` finding, after which
    only the reachability check (which needs no list) runs."""
    out = list(k.warnings)
    mms = getattr(k, "attached_mms", None)
    if mms is None:
        mms = live_mms(k)
    try:
        out += page_checks(k)
    except ListCorruption as e:
        if not any(v.name == "list_corruption" for v in out):
            out.append(Violation("list_corruption", _page_of(k, e.addr), str(e)))
    return out + reachability(k, mms)


def _page_of(k: Kernel, addr: int) -> int:
    """The ``struct page`` whose ``lru`` is ``addr``, if ``addr`` lies in ``mem_map``."""
    if MEM_MAP <= addr < MEM_MAP + k.mem_map.nr_pages * S.page.size and (addr - MEM_MAP) % S.page.size == _LRU:
        return addr - _LRU
    return 0
