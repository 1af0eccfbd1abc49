"""``s390emu check``: the pgalloc invariants and the reachability check on a dump alone.

The dump's VMCOREINFO names the allocator version (``S390EMU_PGALLOC``, ``OSRELEASE``);
``pgalloc.attach`` rebuilds a kernel from the bytes (live mms from the mm list, the owner of
each page table by walking each mm's ASCE, the RCU queue from ``rcu_head.func``, held
locks from ``mm->context.lock``) and ``pgalloc.attach.check_dump`` runs every whole-state
check on it (``reference/pgalloc-versions.md`` §5).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..memory import AddressingError, ImageError
from .common import EXIT_OK, EXIT_VIOLATION, echo_json, fail_file, hex64, version_code
from .source import dump_or_demo


def _frame(k, page: int) -> int:
    return k.mem_map.page_address(page) if page and k.mem_map.is_page(page) else 0


def _describe(k, v) -> dict:
    from pgalloc.checks import fmt
    frame = _frame(k, v.page)
    byte = k.byte(v.page) if frame else None
    return {"invariant": v.name, "page": v.page, "frame": frame, "byte": byte,
            "bits": fmt(byte) if byte is not None else "", "message": v.message}


@click.command("check")
@click.option("--dump", "dump_file", type=click.Path(path_type=Path),
              help="An ELF dump or raw image of an s390emu machine. Default: the built-in demo.")
@click.option("--version", "version", metavar="V",
              help="Without --dump: build the demo with this allocator version (v515, v64, seed, v66, "
                   "v67, or a version file; default v66).  With --dump: the version file of the patch "
                   "that wrote the dump.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout; addresses as \"0x...\".")
def check(dump_file: Path | None, version: str | None, as_json: bool) -> None:
    """Check a dump's page-table allocator state: the pgalloc invariants and reachability.

    Everything comes from the dump's bytes.  VMCOREINFO names the allocator version
    (S390EMU_PGALLOC=v66, OSRELEASE=6.6.0-s390emu, ...); the live mms come from the mm
    list; every live mm's ASCE is walked to find which mm each page table belongs to;
    the RCU queue is read from the rcu_head.func words of page-table pages.  Then, per
    page-table page and per mm:

    \b
      bit_legality     fragment byte (upper byte of _refcount) has only legal bits
                       (never A and P of the same half; seed: H implies P, ...)
      list_membership  a page on a pgtable_list has a free half and no other reason
                       to be off it (v66: never PG_active; seed: exactly one A bit)
      pgste_page       a PGSTE page-table page has byte 0x03 and is never listed
      rcu_head         (seed) an H bit set has a pte_free_now callback queued
      reachability     every page table and CRST table a walk of a live mm's ASCE
                       reaches is allocated, not pending, not freed, and owned by
                       that mm only (a half reachable from two mms is reported)
      locking          an mm's context.lock is held in the dump
      list_corruption  an mm_list or pgtable_list whose links do not hold

    Exit status: 0 clean, 4 at least one violation (each printed with the invariant,
    struct page, frame, fragment byte and its bits), 1 a corrupt or unreadable dump or
    one that is not an s390emu pgalloc machine (one line on stderr), 2 bad usage.

    \b
    Examples:
      s390emu check                          (the built-in demo, allocator v66)
      s390emu check --version seed
      s390emu dump save demo.vmcore && s390emu check --dump demo.vmcore
      s390emu check --dump demo.vmcore --json | jq '.violations[].invariant'
    """
    from pgalloc.attach import AttachError, attach, check_dump

    st, name = dump_or_demo(dump_file, version)
    try:
        with version_code(st.version):
            k = attach(st.machine or st.mem, st.vmcoreinfo)
            found = [_describe(k, v) for v in check_dump(k)]
    except AttachError as e:
        fail_file(f"{name}: {e}")
    except (AddressingError, ImageError, ValueError, KeyError, IndexError, OverflowError) as e:
        fail_file(f"{name}: the kernel structures are unreadable: {e}")
    if as_json:
        echo_json({"dump": name, "version": k.version, "mms": [hex64(m) for m in k.attached_mms],
                   "page_tables": len(k.owner), "rcu_queued": len(k.rcu),
                   "violations": [{**f, "page": hex64(f["page"]), "frame": hex64(f["frame"])} for f in found]})
    else:
        click.echo(f"{name}: allocator {k.version}, {len(k.attached_mms)} live mms, "
                   f"{len(k.owner)} page tables reached, {len(k.rcu)} RCU callbacks queued")
        for f in found:
            where = f"page {f['page']:#x} (frame {f['frame']:#x}) byte {f['bits']}" if f["frame"] else "-"
            click.echo(f"VIOLATION [{f['invariant']}] {where}: {f['message']}")
        click.echo(f"{len(found)} violation{'s' if len(found) != 1 else ''}" if found else "clean: no violation")
    sys.exit(EXIT_VIOLATION if found else EXIT_OK)
