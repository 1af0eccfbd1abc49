"""The markers a Linux release's ``arch/s390/mm/dump_pagetables.c`` prints around the kernel's areas.

Modelled: v6.1, read in Debian's linux-source-6.1 (6.1.192).  Its ``address_markers[]``
in enum order, then ``sort_address_markers()``: a stable insertion sort by start address
(so markers at one address keep their table order)::

    Identity Mapping Start 0          Identity Mapping End _stext
    Amode31 Area Start __samode31     Amode31 Area End __eamode31
    Kernel Image Start _stext         Kernel Image End _end
    [KFence Pool Start/End]           (CONFIG_KFENCE)
    Identity Mapping Start _end       Identity Mapping End ident_map_size
    vmemmap Area Start vmemmap        vmemmap Area End vmemmap + vmemmap_size
    vmalloc Area Start VMALLOC_START  vmalloc Area End VMALLOC_END
    Modules Area Start MODULES_VADDR  Modules Area End MODULES_END
    Lowcore Area Start __abs_lowcore  Lowcore Area End + NR_CPUS * sizeof(struct lowcore)
    Real Memory Copy Area Start __memcpy_real_area, End + PAGE_SIZE
    [Kasan Shadow Start/End]          (CONFIG_KASAN)

The values are the kernel's variables (``MODULES_VADDR`` and the others are variables
on s390 since v5.x), read through the kernel's tables at their symbols' addresses.
``ident_map_size`` is ``__initdata`` (freed and poisoned after boot); in 6.1
``high_memory`` is ``__va(PFN_DOWN(ident_map_size) * PAGE_SIZE)`` with ``__va`` the
identity, so its value, which VMCOREINFO names, is used.  ``NR_CPUS`` is the length of
``lowcore_ptr[NR_CPUS]`` (its ELF symbol size / 8: only ``--vmlinux`` has sizes).
"""

from __future__ import annotations

from .kernel_symbols import KernelSymbols

LOWCORE_SIZE = 8192          # sizeof(struct lowcore): __packed __aligned(8192) in 6.1
PAGE_SIZE = 4096


def modelled(release: str) -> bool:
    """Whether ``release`` (OSRELEASE) is one whose markers are modelled: 6.1.y."""
    return release == "6.1" or release.startswith(("6.1.", "6.1-"))


def markers_6_1(sym: KernelSymbols, vmcoreinfo: dict[str, str]) -> tuple[list[tuple[int, str]], list[str]]:
    """``(markers, unplaced)``: 6.1's ``address_markers[]`` sorted as the kernel sorts
    them (the ``{-1, NULL}`` end left out: ``ptdump_lines`` ends at the space's end), and
    the names of the areas whose addresses no source gave (left out, pair by pair)."""
    def vmcoreinfo_hex(key: str) -> int | None:
        return int(vmcoreinfo[key], 16) if key in vmcoreinfo else None

    stext, end = sym.address("_stext"), sym.address("_end")
    samode31 = vmcoreinfo_hex("SAMODE31")
    eamode31 = vmcoreinfo_hex("EAMODE31")
    if samode31 is None or eamode31 is None:
        samode31, eamode31 = sym.value("__samode31"), sym.value("__eamode31")
    ident_end = sym.value("high_memory")
    vmemmap, vmemmap_size = sym.value("vmemmap"), sym.value("vmemmap_size")
    abs_lowcore = sym.value("__abs_lowcore")
    lowcore_ptr = sym.size("lowcore_ptr")
    memcpy_real = sym.value("__memcpy_real_area")

    def span(a, b):
        return (a, b) if a is not None and b is not None else None

    areas = [
        ("Identity Mapping", span(0, stext)),
        ("Amode31 Area", span(samode31, eamode31)),
        ("Kernel Image", span(stext, end)),
    ]
    unplaced = []
    if sym.address("__kfence_pool") is not None:
        unplaced.append("KFence Pool (CONFIG_KFENCE's pool size is not in the dump)")
    areas += [
        ("Identity Mapping", span(end, ident_end)),
        ("vmemmap Area", span(vmemmap, None if vmemmap is None or vmemmap_size is None else vmemmap + vmemmap_size)),
        ("vmalloc Area", span(sym.value("VMALLOC_START"), sym.value("VMALLOC_END"))),
        ("Modules Area", span(sym.value("MODULES_VADDR"), sym.value("MODULES_END"))),
        ("Lowcore Area", span(abs_lowcore, None if abs_lowcore is None or not lowcore_ptr
                              else abs_lowcore + lowcore_ptr // 8 * LOWCORE_SIZE)),
        ("Real Memory Copy Area", span(memcpy_real, None if memcpy_real is None else memcpy_real + PAGE_SIZE)),
    ]
    if sym.address("kasan_early_shadow_page") is not None:
        unplaced.append("Kasan Shadow (its bounds are constants of the build)")
    table: list[tuple[int, str]] = []
    for name, where in areas:
        if where is None:
            unplaced.append(name)
            continue
        table += [(where[0], f"{name} Start"), (where[1], f"{name} End")]
    # sort_address_markers(): stable, by start address
    return sorted(table, key=lambda m: m[0]), list(dict.fromkeys(unplaced))
