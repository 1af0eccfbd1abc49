"""The kernel's own view of a Linux dump, through its debug info (``--vmlinux``) and drgn.

drgn (``pip install drgn``; the ``test`` extra has it) is used as a library: it opens the
dump with the VMCOREINFO text (given to it, since QEMU's ELF dumps carry none as a
note), loads the debug vmlinux (Debian's ``linux-image-*-dbg``:
``usr/lib/debug/boot/vmlinux-*``) and walks the task list.  Each mm comes back as a
``linuxcheck.Mm``: its address, ``mm->context.asce``, its tasks, and the struct pages
on ``mm->context.pgtable_list`` (through ``page.lru``), which ``check`` holds against
the allocator's rules and ``pages`` shows as LISTED.

The list itself is walked through the kernel's ASCE with this project's walker, not by
drgn: drgn 0.3.0 reads QEMU's ELF dumps by virtual address only where the identity map
lets it (``could not find physical memory segment`` for ``swapper_pg_dir``, hence for
every vmemmap address, where the list's nodes are).
"""

from __future__ import annotations

from ..errors import S390emuError
from ..vmcoreinfo import LayoutError
from .linuxcheck import Mm
from .memmap import KernelSpace

MAX_LISTED = 1 << 20        # a longer pgtable_list is a corrupt one


class VmlinuxError(S390emuError):
    """The debug info cannot be used with the dump (missing drgn, wrong file, no match)."""


def kernel_mms(st, vmlinux: str) -> list[Mm]:
    """Every mm a task uses in the storage ``st`` (a ``source.Storage`` opened from a
    dump file), through ``vmlinux`` and drgn; the pgtable_lists are read through the
    kernel's ASCE.

    Raises ``VmlinuxError`` with one line when drgn is missing or cannot read the kernel.
    """
    try:
        import drgn
        from drgn.helpers.linux.pid import for_each_task
    except ImportError:
        raise VmlinuxError("--vmlinux needs drgn (pip install drgn)") from None
    path, kernel = st.name, KernelSpace(st.mem, st.kernel_asce())
    text = "".join(f"{k}={val}\n" for k, val in st.vmcoreinfo.items()).encode()
    try:
        prog = drgn.Program(vmcoreinfo=text)
        prog.set_core_dump(str(path))
        prog.load_debug_info([str(vmlinux)])
        lru = drgn.offsetof(prog.type("struct page"), "lru")
        mms: dict[int, Mm] = {}
        for task in for_each_task(prog):
            mm = task.mm
            if not mm:
                continue
            address = mm.value_()
            comm = f"{task.comm.string_().decode(errors='replace')}[{int(task.pid)}]"
            if address in mms:
                mms[address] = mms[address]._replace(tasks=mms[address].tasks + (comm,))
                continue
            head = mm.context.pgtable_list.address_of_().value_()
            mms[address] = Mm(address, int(mm.context.asce), (comm,), _list(kernel, head, lru))
    except (drgn.FaultError, drgn.MissingDebugInfoError, LookupError, ValueError, OSError) as e:
        raise VmlinuxError(f"{vmlinux}: drgn cannot read the kernel of {path} with it: "
                           f"{' '.join(str(e).split())}") from None
    return list(mms.values())


def _list(kernel: KernelSpace, head: int, lru: int) -> tuple[int, ...]:
    """The struct pages on the list at ``head`` (nodes at ``page.lru``), read through the
    kernel's ASCE; ``VmlinuxError`` for a list that does not close."""
    out, node, seen = [], kernel.read_u64(head), {head}
    try:
        while node != head:
            if node in seen or len(out) >= MAX_LISTED:
                raise VmlinuxError(f"the pgtable_list at {head:#x} does not close (node {node:#x})")
            seen.add(node)
            out.append(node - lru)
            node = kernel.read_u64(node)
    except LayoutError as e:
        raise VmlinuxError(f"the pgtable_list at {head:#x}: {e}") from None
    return tuple(out)
