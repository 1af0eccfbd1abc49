"""``s390emu check`` on a Linux kernel's dump: the allocator invariants the bytes allow.

An s390emu machine is checked by ``pgalloc.attach`` (the whole kernel rebuilt from its
bytes).  A real kernel's dump holds no allocator state but its bytes: here the checks run
on what those give, under the rules of the kernel's release (``rules_for_release``, or
the caller's), and say what they could not run.

* ``bit_legality``: every page-table page's fragment byte (``_refcount``'s top byte) is
  legal under the rules (a PageTable page with byte 0 is a segment table's first page
  where the rules have fragments, since ``pgtable_pmd_page_ctor`` marks it too);
* ``reachability``: every page table and CRST table a walk of a known ASCE reaches lies
  in an allocated place: a page table in a PageTable page whose half is allocated (A set,
  neither pending P nor deferred H), no table in a free buddy page.  A table reached only
  from the kernel's ASCE whose page is no PageTable page was made before the page
  allocator (memblock, early boot) and is counted as such, not reported;
* with the mms (``mms``: from the kernel's debug info, ``vmlinux.kernel_mms``):
  ``list_membership`` (a page on an mm's ``pgtable_list`` may be there under the rules)
  and ``ownership`` (no 2K table is reached from two mms).  Without them these two are
  listed in ``skipped``.

The known ASCEs are the kernel's, every CPU's CR1/CR7/CR13, and each mm's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

import dat
from pgalloc.checks import fmt, legal_byte
from pgalloc.registry import VERSIONS
from s390emu import structs as S

from ..memory import PAGE_SIZE
from ..vmcoreinfo import number
from .memmap import KernelSpace, StructPages, page_table_rule, pg_active, struct_pages


class Mm(NamedTuple):
    """An mm of the kernel: its address, ASCE, the tasks using it, and the struct pages
    (kernel addresses) on its ``context.pgtable_list``."""

    address: int
    asce: int
    tasks: tuple[str, ...] = ()
    listed: tuple[int, ...] = ()


class Finding(NamedTuple):
    """One broken invariant: its name, the struct page (kernel address, 0 if none), the
    frame, the fragment byte (None if none) and a message."""

    invariant: str
    page: int
    frame: int
    byte: int | None
    message: str


@dataclass
class LinuxCheck:
    """What ``check_linux`` found and how: the ``rules`` and why, the ASCEs walked, the
    tables reached, the early-boot kernel tables, and the checks ``skipped`` (with why)."""

    rules: str
    why: str
    asces: list[int]
    page_tables: int = 0
    early_tables: int = 0
    findings: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _Pages:
    """The ``k.mem_map`` a version's ``RULES.listed`` asks (only ``test_flag(page,
    PG_active)``), answered from the real kernel's struct pages."""

    def __init__(self, sp: StructPages, flags: int, active_bit: int | None):
        self.sp, self.flags, self.active_bit = sp, flags, active_bit

    def test_flag(self, page: int, flag: int) -> bool:
        pfn = self.sp.pfn_of(page)
        if flag != S.PG_active or self.active_bit is None or pfn is None:
            return False
        return bool(self.sp.u64(pfn, self.flags) >> self.active_bit & 1)


def check_linux(st, rules: str, why: str, mms: list[Mm] | None = None) -> LinuxCheck:
    """Check the storage ``st`` (a ``source.Storage`` with ``st.linux``) under allocator
    version ``rules``; ``mms`` from the debug info when known.  Raises ``LayoutError``
    when the struct pages cannot be found."""
    v, mem = st.vmcoreinfo, st.mem
    version = VERSIONS[rules]
    kernel_asce = st.kernel_asce()
    sp = struct_pages(mem, v, KernelSpace(mem, kernel_asce))
    ref, mapc, flags = (number(v, f"OFFSET(page.{f})") for f in ("_refcount", "_mapcount", "flags"))
    is_table = page_table_rule(v)[1](sp.words[:, mapc // 4]) & sp.present
    buddy_bit = ~number(v, "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)") & 0xFFFF_FFFF \
        if "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)" in v else None
    byte_of = lambda pfn: int(sp.words[pfn, ref // 4]) >> 24  # noqa: E731
    owners = [(0, kernel_asce)] + [(0, a) for a in st.cpu_asces()] + [(m.address, m.asce) for m in mms or ()]
    out = LinuxCheck(rules, why, list(dict.fromkeys(a for _, a in owners)))
    found = out.findings

    def page_at(frame: int) -> tuple[int, int]:
        pfn = frame >> 12
        return pfn, int(sp.address[pfn]) if pfn < len(sp.address) else 0

    # bit_legality, over every PageTable page.  A CRST table's first page is one too
    # (pgtable_pmd_page_ctor marks it), with byte 0: legal under every rule.
    for pfn in np.flatnonzero(is_table).tolist():
        byte = byte_of(pfn)
        if not legal_byte(version, byte):
            found.append(Finding("bit_legality", int(sp.address[pfn]), pfn << 12, byte,
                                 f"page-table page's byte {fmt(byte)} is illegal under the {rules} rules"))
    # reachability: every table a known ASCE's walk reaches
    reached_by: dict[int, set[int]] = {}       # 2K table -> mms (0: an ASCE of no known mm)
    via: dict[int, set[int]] = {}              # table -> ASCEs
    crst: dict[int, set[int]] = {}
    for mm, asce in owners:
        r = dat.reachable_tables(mem, asce)
        for t in r.page_tables.tolist():
            reached_by.setdefault(int(t), set()).add(mm)
            via.setdefault(int(t), set()).add(asce)
        for origins in r.crst.values():
            for o in origins.tolist():
                crst.setdefault(int(o), set()).add(asce)
    out.page_tables = len(reached_by)
    early: set[int] = set()
    for t, asces in sorted(via.items()):
        frame, half = t & ~0xFFF, (t >> 11) & 1
        pfn, page = page_at(frame)
        where = f"page table {t:#x} (reached from ASCE {', '.join(f'{a:#x}' for a in sorted(asces))})"
        if pfn >= len(is_table) or not sp.present[pfn]:
            found.append(Finding("reachability", 0, frame, None, f"{where} lies in a frame with no struct page"))
        elif not is_table[pfn]:
            if asces == {kernel_asce}:
                early.add(frame)                      # memblock-allocated at boot: no PageTable
            else:
                found.append(Finding("reachability", page, frame, None,
                                     f"{where} lies in a page that is no page-table page"))
        elif version.FRAGMENTS:
            byte = byte_of(pfn)
            a, h, p = byte >> half & 1, byte >> (2 + half) & 1, byte >> (4 + half) & 1
            if not a or h or p:
                state = "pending (P)" if p else "deferred (H)" if h else "free"
                found.append(Finding("reachability", page, frame, byte,
                                     f"{where} lies in the {'upper' if half else 'lower'} 2K half, which "
                                     f"byte {fmt(byte)} marks {state}"))
    for origin, asces in sorted(crst.items()):
        for q in range(4):
            pfn, page = page_at(origin + q * PAGE_SIZE)
            if buddy_bit is not None and pfn < len(sp.words) and sp.present[pfn] and \
                    (int(sp.words[pfn, mapc // 4]) & (0xF000_0000 | buddy_bit)) == 0xF000_0000:
                found.append(Finding("reachability", page, origin + q * PAGE_SIZE, None,
                                     f"CRST table {origin:#x} (reached from ASCE "
                                     f"{', '.join(f'{a:#x}' for a in sorted(asces))}) lies in a free (buddy) page"))
    out.early_tables = len(early)
    if mms is None:
        out.skipped += ["list_membership: the mms' pgtable_list needs the kernel's debug info (--vmlinux)",
                        "ownership: which mm owns each table needs the mms (--vmlinux)"]
        return out
    # ownership and list_membership, with the mms
    for t, by in sorted(reached_by.items()):
        mm_set = by - {0}
        if len(mm_set) > 1:
            pfn, page = page_at(t & ~0xFFF)
            found.append(Finding("ownership", page, t & ~0xFFF, byte_of(pfn) if is_table[pfn] else None,
                                 f"page table {t:#x} is reached from the mms {', '.join(f'{m:#x}' for m in sorted(mm_set))}"))
    if version.FRAGMENTS:
        k = type("LinuxKernel", (), {"mem_map": _Pages(sp, flags, pg_active(v))})()
        for m in mms:
            for page in m.listed:
                pfn = sp.pfn_of(page)
                if pfn is None or not is_table[pfn]:
                    found.append(Finding("list_membership", page, 0 if pfn is None else pfn << 12, None,
                                         f"on the pgtable_list of mm {m.address:#x} but no page-table page"))
                elif not version.RULES.listed(k, page, byte_of(pfn), set()):
                    found.append(Finding("list_membership", page, pfn << 12, byte_of(pfn),
                                         f"on the pgtable_list of mm {m.address:#x} with byte {fmt(byte_of(pfn))}"))
    return out
