"""6.1's marker table (s390emu.inspect.kernel_layout.markers_6_1) from symbols given here:
the kernel's sort, the areas left out pair by pair, KFence and KASAN named."""

from __future__ import annotations

from s390emu.inspect.kernel_layout import markers_6_1

BASE = {"_stext": 0x100000, "_end": 0x133b000}
VALUES = {"high_memory": 0x10000000, "vmemmap": 0x37200000000, "vmemmap_size": 0x400000,
          "VMALLOC_START": 0x37fffd00000, "VMALLOC_END": 0x3ff7fd00000, "MODULES_VADDR": 0x3ff7fd00000,
          "MODULES_END": 0x3ffffd00000, "__abs_lowcore": 0x3ffffdfe000, "__memcpy_real_area": 0x3fffffff000,
          "__samode31": 0x1673000, "__eamode31": 0x1676000}


class Symbols:
    """What markers_6_1 asks of a KernelSymbols: addresses, sizes, the values stored there."""

    def __init__(self, addresses=BASE, values=VALUES, sizes=None):
        self.addresses, self.values, self.sizes = dict(addresses), dict(values), dict(sizes or {})

    def address(self, name):
        return self.addresses.get(name)

    def size(self, name):
        return self.sizes.get(name)

    def value(self, name):
        return self.values.get(name)


def test_every_area_sorted_stably_by_address_as_sort_address_markers_does():
    marks, unplaced = markers_6_1(Symbols(sizes={"lowcore_ptr": 4 * 8}), {})
    assert unplaced == []
    assert marks == [
        (0, "Identity Mapping Start"),
        (0x100000, "Identity Mapping End"), (0x100000, "Kernel Image Start"),      # table order kept at one address
        (0x133b000, "Kernel Image End"), (0x133b000, "Identity Mapping Start"),
        (0x1673000, "Amode31 Area Start"), (0x1676000, "Amode31 Area End"),
        (0x10000000, "Identity Mapping End"),
        (0x37200000000, "vmemmap Area Start"), (0x37200400000, "vmemmap Area End"),
        (0x37fffd00000, "vmalloc Area Start"),
        (0x3ff7fd00000, "vmalloc Area End"), (0x3ff7fd00000, "Modules Area Start"),
        (0x3ffffd00000, "Modules Area End"),
        (0x3ffffdfe000, "Lowcore Area Start"), (0x3ffffdfe000 + 4 * 8192, "Lowcore Area End"),
        (0x3fffffff000, "Real Memory Copy Area Start"), (0x40000000000, "Real Memory Copy Area End")]
    assert all(type(addr) is int for addr, _name in marks)          # addresses, printed as hex


def test_vmcoreinfo_samode31_wins_over_the_symbols():
    marks, _ = markers_6_1(Symbols(sizes={"lowcore_ptr": 8}), {"SAMODE31": "2000000", "EAMODE31": "2003000"})
    assert [(a, n) for a, n in marks if n.startswith("Amode31")] == [(0x2000000, "Amode31 Area Start"),
                                                                    (0x2003000, "Amode31 Area End")]
    marks, _ = markers_6_1(Symbols(sizes={"lowcore_ptr": 8}), {"SAMODE31": "2000000"})   # half of it: the symbols
    assert (0x1673000, "Amode31 Area Start") in marks


def test_each_missing_value_leaves_out_its_pair_and_names_it_once():
    values = {k: v for k, v in VALUES.items() if k not in ("vmemmap_size", "MODULES_END", "high_memory")}
    marks, unplaced = markers_6_1(Symbols(values=values), {})
    assert unplaced == ["Identity Mapping", "vmemmap Area", "Modules Area", "Lowcore Area"]
    names = [n for _a, n in marks]
    assert names.count("Identity Mapping Start") == 1 and names.count("Identity Mapping End") == 1
    assert not any(n.startswith(("vmemmap", "Modules", "Lowcore")) for n in names)
    marks, unplaced = markers_6_1(Symbols(addresses={"_end": 0x133b000}, values={}), {})
    assert marks == []
    assert unplaced == ["Identity Mapping", "Amode31 Area", "Kernel Image", "vmemmap Area", "vmalloc Area",
                        "Modules Area", "Lowcore Area", "Real Memory Copy Area"]


def test_a_zero_size_lowcore_ptr_places_no_lowcore_area():
    _, unplaced = markers_6_1(Symbols(sizes={"lowcore_ptr": 0}), {})
    assert unplaced == ["Lowcore Area"]


def test_kfence_and_kasan_are_named_as_not_placed():
    sym = Symbols(addresses={**BASE, "__kfence_pool": 0x5000000, "kasan_early_shadow_page": 0x6000000},
                  sizes={"lowcore_ptr": 8})
    marks, unplaced = markers_6_1(sym, {})
    assert unplaced == ["KFence Pool (CONFIG_KFENCE's pool size is not in the dump)",
                        "Kasan Shadow (its bounds are constants of the build)"]
    assert len(marks) == 18
