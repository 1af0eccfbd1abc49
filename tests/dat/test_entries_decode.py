"""``dat.entries.decode`` and ``flags_mask``: crash's "flags in binary" line and
``(flags = ...)`` mask for each kind of entry, pinned field by field (the translate
CLI prints them; a wrong mask or label there was invisible to the walker's tests).

Every field of each layout is shown all ones (its width is its mask's bit count), all
zeros, and with one bit set at each end of a multi-bit field (the shift), worked out by
hand from the entry formats in the Principles of Operation (``dat.entries``' masks).
"""

from __future__ import annotations

import pytest

from dat.entries import decode, flags_mask


@pytest.mark.parametrize("name,entry,line", [
    ("PTE", 0x000, "I=0; P=0"),
    ("PTE", 0x400, "I=1; P=0"),
    ("PTE", 0x200, "I=0; P=1"),
    ("PTE", 0x7FF, "I=1; P=1"),
    ("STE", 0x3FF, "FC=0; P=1; I=1; CS=1; TT=11"),
    ("STE", 0x008, "FC=0; P=0; I=0; CS=0; TT=10"),
    ("STE", 0x1FFFF, "AV=1; ACC=1111; F=1; FC=1; P=1; I=1; CS=1; TT=11"),
    ("STE", 0x10400, "AV=1; ACC=0000; F=0; FC=1; P=0; I=0; CS=0; TT=00"),
    ("STE", 0x8400, "AV=0; ACC=1000; F=0; FC=1; P=0; I=0; CS=0; TT=00"),
    ("STE", 0x1400, "AV=0; ACC=0001; F=0; FC=1; P=0; I=0; CS=0; TT=00"),
    ("STE", 0x0C00, "AV=0; ACC=0000; F=1; FC=1; P=0; I=0; CS=0; TT=00"),
    ("RTTE", 0x1FFFF, "AV=1; ACC=1111; F=1; FC=1; P=1; I=1; CR=1; TT=11"),
    ("RTTE", 0x3FF, "FC=0; P=1; TF=11; I=1; CR=1; TT=11; TL=11"),
    ("RTTE", 0x080, "FC=0; P=0; TF=10; I=0; CR=0; TT=00; TL=00"),
    ("RTTE", 0x041, "FC=0; P=0; TF=01; I=0; CR=0; TT=00; TL=01"),
    ("RTTE", 0x20007, "FC=0; P=0; TF=00; I=0; CR=0; TT=01; TL=11"),
    ("RSTE", 0x7FF, "P=1; TF=11; I=1; TT=11; TL=11"),
    ("RSTE", 0x400, "P=0; TF=00; I=0; TT=00; TL=00"),      # no large frames at region-second
    ("RFTE", 0x7FF, "P=1; TF=11; I=1; TT=11; TL=11"),
    ("RFTE", 0x002, "P=0; TF=00; I=0; TT=00; TL=10"),
])
def test_decode_shows_each_field_of_each_layout(name, entry, line):
    assert decode(name, entry) == line


@pytest.mark.parametrize("name,entry,mask", [
    ("RTTE", 0x400, (0x7FFFFFFF, 8)),     # a 2G frame: the flags up to the frame address
    ("RTTE", 0x000, (0xFFF, 3)),
    ("STE", 0x400, (0xFFFFF, 5)),         # a 1M frame
    ("STE", 0x000, (0x7FF, 3)),
    ("PTE", 0x400, (0xFFF, 3)),
    ("RSTE", 0x400, (0xFFF, 3)),
    ("RFTE", 0x000, (0xFFF, 3)),
])
def test_flags_mask_per_entry_kind(name, entry, mask):
    assert flags_mask(name, entry) == mask
