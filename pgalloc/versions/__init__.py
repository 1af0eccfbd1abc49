"""The allocator versions, each a module that is a delta on the version it starts from.

``v64`` (v6.2 .. v6.5) is written out whole; ``v515`` (before c2c224932fd0), ``seed``
(Hugh Dickins' June 2023 patch) and ``v66`` (8211dad627981) subclass its functions and
replace or redirect only the steps they change; ``v67`` (one table per 4K page) is
written out whole again.  Each declares, under its block comment, its fragment-byte
layout and rules (the flags ``FRAGMENTS``, ``HAS_H``, ``LIST_DEL_INIT``, ...) and its
``RULES`` (``pgalloc.checks.Rules``: list rules and its own extra checks).

A version imports the core it runs on (``steps``, ``pgtable``, ``pgtable_bits``,
``crst``, ``tlb``, ``checks``) and the version it patches, never the kernel, the
registry (``pgalloc.registry``) or the explorer.  ``pgalloc`` registers each module
under its old name too (``pgalloc.v66``), and keeps ``pgalloc.versions.VERSIONS`` and
``load_version`` for today's importers.
"""
