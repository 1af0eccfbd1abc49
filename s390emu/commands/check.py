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
from .common import EXIT_INCOMPLETE, EXIT_OK, EXIT_VIOLATION, echo_json, fail_file, hex64, version_code
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
@click.option("--rules", "rules", metavar="V",
              help="A Linux dump: check under allocator version V's rules (v515, v64, v66, v67) instead of "
                   "those its OSRELEASE names.")
@click.option("--vmlinux", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A Linux dump: the kernel's debug vmlinux (e.g. Debian's linux-image-*-dbg), read with "
                   "drgn, for the mms: their pgtable_list and ASCE (list-membership and ownership checks).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout; addresses as \"0x...\".")
def check(dump_file: Path | None, version: str | None, rules: str | None, vmlinux: Path | None,
          as_json: bool) -> None:
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
    struct page, frame, fragment byte and its bits), 5 incomplete (a Linux dump without
    --vmlinux: no violation in the checks run), 1 a corrupt or unreadable dump (one line
    on stderr), 2 bad usage.

    A Linux kernel's dump (no s390emu machine) is checked on what its bytes give,
    under the rules of its release (OSRELEASE; --rules overrides): bit_legality of
    every page-table page and reachability from the kernel's ASCE and every CPU's
    CR1/CR7/CR13 (kernel tables made before the page allocator are counted, not
    reported); with --vmlinux also every mm's ASCE, list_membership and ownership.
    The checks it could not run are listed, and then a dump without violations exits
    5 (incomplete), not 0.

    \b
    Examples:
      s390emu check                          (the built-in demo, allocator v66)
      s390emu check --version seed
      s390emu dump save demo.vmcore && s390emu check --dump demo.vmcore
      s390emu check --dump demo.vmcore --json | jq '.violations[].invariant'
      s390emu check --dump guest.elf --vmlinux vmlinux-6.1.0-50-s390x
    """
    from pgalloc.attach import AttachError, attach, check_dump

    st, name = dump_or_demo(dump_file, version)
    if st.linux:
        _check_linux(st, name, rules, vmlinux, as_json)
    if rules is not None or vmlinux is not None:
        raise click.UsageError("--rules and --vmlinux go with a Linux kernel's dump; an s390emu machine names its "
                               "own allocator (S390EMU_PGALLOC) and keeps its mms on its mm list")
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


def _check_linux(st, name: str, rules: str | None, vmlinux: Path | None, as_json: bool) -> None:
    """``check`` of a Linux kernel's dump (``s390emu.inspect.linuxcheck``); exits."""
    from pgalloc.checks import fmt
    from pgalloc.errors import VersionError
    from pgalloc.registry import BUILT_IN, rules_for_release

    from ..inspect.linuxcheck import check_linux
    from ..inspect.vmlinux import VmlinuxError, kernel_mms
    from ..vmcoreinfo import LayoutError

    if rules is None:
        try:
            rules, why = rules_for_release(st.vmcoreinfo.get("OSRELEASE", ""))
        except VersionError as e:
            fail_file(f"{name}: {e}")
    elif rules not in BUILT_IN or rules == "seed":
        raise click.BadParameter(f"{rules!r} is no kernel's rules (v515, v64, v66, v67)", param_hint="'--rules'")
    else:
        why = f"--rules {rules}"
    try:
        mms = None
        if vmlinux is not None:
            mms = kernel_mms(st, str(vmlinux))
        c = check_linux(st, rules, why, mms)
    except (LayoutError, VmlinuxError) as e:
        fail_file(f"{name}: {e}")
    except (AddressingError, ValueError, IndexError, OverflowError) as e:
        fail_file(f"{name}: the kernel structures are unreadable: {e}")
    if as_json:
        echo_json({"dump": name, "version": rules, "kernel": st.vmcoreinfo.get("OSRELEASE"), "rules_reason": why,
                   "mms": [hex64(m.address) for m in mms or ()], "asces": [hex64(a) for a in c.asces],
                   "page_tables": c.page_tables, "early_kernel_tables": c.early_tables, "rcu_queued": None,
                   "skipped": c.skipped,
                   "violations": [{"invariant": f.invariant, "page": hex64(f.page), "frame": hex64(f.frame),
                                   "byte": f.byte, "bits": fmt(f.byte) if f.byte is not None else "",
                                   "message": f.message} for f in c.findings]})
    else:
        click.echo(f"{name}: Linux {st.vmcoreinfo.get('OSRELEASE')}, rules {rules} ({why}); "
                   f"{len(c.asces)} ASCEs walked{f', {len(mms)} mms' if mms is not None else ''}, "
                   f"{c.page_tables} page tables reached, {c.early_tables} kernel tables from before the page allocator")
        for f in c.findings:
            where = f"page {f.page:#x} (frame {f.frame:#x})" + (f" byte {fmt(f.byte)}" if f.byte is not None else "")
            click.echo(f"VIOLATION [{f.invariant}] {where}: {f.message}")
        for s in c.skipped:
            click.echo(f"skipped {s}")
        n = len(c.findings)
        click.echo(f"{n} violation{'s' if n != 1 else ''}" if n else
                   f"incomplete: no violation in the checks run, {len(c.skipped)} skipped" if c.skipped else
                   "clean: no violation")
    sys.exit(EXIT_VIOLATION if c.findings else EXIT_INCOMPLETE if c.skipped else EXIT_OK)
