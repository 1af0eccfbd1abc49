"""Dump inspection: what the CLI's inspection commands and ``tools/`` print, as a library.

=================  ===========================================================
``source``         storage to inspect, opened one way: a dump, a raw image, the demo
``ptdump``         Linux's kernel_page_tables lines for an ASCE, the table tree as DOT
``pagetables``     the page-table frames of a storage with their fragment bytes
``memmap``         struct page of any kernel (s390emu, SPARSEMEM, FLATMEM) through DAT
``mms``            the live mms, from VMCOREINFO
``fragmap``        the page-table frames drawn as SVG
=================  ===========================================================

This package (with the CLI and ``tools/``) is the only part of ``s390emu`` that may
import ``dat`` and ``pgalloc``; it walks tables with ``dat`` and imports ``pgalloc``
only to build the demo.  It never imports the CLI.

>>> from s390emu.inspect import open_demo, ptdump_lines
>>> st = open_demo("v66")
>>> next(ptdump_lines(st.mem, st.demo.asce5, markers(st.mem, st.demo.asce5, st.kernel_root)))
'---[ User Address Space Start ]---'
"""

from .fragmap import fragmap_svg
from .mms import live_mms
from .pagetables import page_table_frames, storage_frames
from .ptdump import first_table_outside, markers, ptdump_lines, runs, table_tree_dot
from .source import SPACES, NoSuchCpu, Storage, open_demo, open_dump, open_image

__all__ = ["SPACES", "NoSuchCpu", "Storage", "first_table_outside", "fragmap_svg", "live_mms", "markers", "open_demo",
           "open_dump", "open_image", "page_table_frames", "ptdump_lines", "storage_frames", "runs", "table_tree_dot"]
