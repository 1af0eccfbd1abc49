"""The tables s390emu's reachability walk finds on the real guest are the ones a walker of
the fixture's own (tools/real_guest.py's tables_of, reading through drgn) recorded, for
the kernel's ASCE and every process's."""

from __future__ import annotations

from dat import reachable_tables
from s390emu.inspect import open_dump


def test_reachable_tables_are_the_recorded_ones_for_every_asce(real_guest):
    st = open_dump(real_guest.elf)
    spaces = [("kernel", real_guest.truth["kernel"])] + [(f"{p['pid']} {p['comm']}", p) for p in real_guest.processes]
    for name, space in spaces:
        r = reachable_tables(st.mem, space["asce"])
        crst = sorted(int(o) for arr in r.crst.values() for o in arr)
        assert crst == sorted(space["tables"]["crst"]), name
        assert sorted(map(int, r.page_tables)) == sorted(space["tables"]["pte"]), name
    assert all(len(p["tables"]["pte"]) >= 3 for p in real_guest.processes)
    assert len(real_guest.truth["kernel"]["tables"]["pte"]) > 100       # 256 MiB identity map: 128 tables
