"""The allocator versions by name: ``VERSIONS["v64"]`` is the module ``pgalloc.versions.v64``.

A patch under review is one more version: a Python file that starts from the version it
patches and replaces what the patch changes (``load_version``)::

    from pgalloc.v66 import *               # everything as in v6.6 ...  (pgalloc.versions.v66)
    from pgalloc import v66
    from pgalloc.steps import step

    NAME = "my-patch"

    class page_table_free(v66.page_table_free):
        @step("atomic_xor_bits(P)")         # ... but this step
        def xor_p(self, k):
            ...

Functions call each other through the kernel's version (``k.v.page_table_free``), so a
replaced function is the one every caller runs.  ``docs/patches.md`` is the guide.

The versions do not import this module (nor the kernel): it imports them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys

from .errors import VersionError
from .versions import seed, v515, v64, v66, v67

VERSIONS = {"v515": v515, "v64": v64, "seed": seed, "v66": v66, "v67": v67}
BUILT_IN = tuple(VERSIONS)

# What each allocator version publishes in VMCOREINFO (``OSRELEASE`` and
# ``S390EMU_PGALLOC``), so that a dump says which allocator wrote its bytes.
OSRELEASES = {"v515": "5.15.0-s390emu", "v64": "6.4.0-s390emu", "seed": "6.4.0-s390emu-seed",
              "v66": "6.6.0-s390emu", "v67": "6.7.0-s390emu"}
PGALLOC_KEY = "S390EMU_PGALLOC"


def osrelease(version: str) -> str:
    """The ``OSRELEASE`` a machine with allocator ``version`` publishes (a patch's: 6.6's
    with its name appended)."""
    return OSRELEASES.get(version, f"6.6.0-s390emu-{version}")


# What a version module must define (``checks`` and the explorer read the flags; ``RULES`` too, which a
# file written before it existed gets from its flags: ``_rules_of_flags``).
REQUIRED = ("NAME", "FRAGMENTS", "HAS_H", "LIST_DEL_INIT", "DEFER_IS_PTE_FREE", "CRST_COMPOUND", "CALLBACKS",
            "page_table_alloc", "page_table_free", "page_table_free_rcu", "tlb_remove_table_", "pte_free_defer")


def _rules_of_flags(module):
    """The ``RULES`` of a file written before versions declared them, without the star
    import that brings its base's: the rules its flags stood for then."""
    if not module.FRAGMENTS:
        return v67.RULES
    if module.HAS_H:
        return seed.RULES
    return v66.RULES if module.LIST_DEL_INIT else v64.RULES


def describe_error(e: BaseException) -> str:
    """An exception raised by a version file's code, in one line (``sys.exit(3)`` included)."""
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r})"
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_version(spec: str) -> str:
    """The name of version ``spec``: a built-in name, or a ``.py`` file defining one
    (registered in ``VERSIONS`` under its ``NAME``).  Raises ``VersionError``."""
    if spec in VERSIONS:
        return spec
    if not spec.endswith(".py"):
        raise VersionError(f"unknown version {spec!r}: one of {', '.join(VERSIONS)}, or a version file (.py)")
    if not os.path.isfile(spec):
        raise VersionError(f"{spec}: no such version file")
    path = os.path.realpath(spec)          # one file is one version, by whatever link it is named
    for known, module in VERSIONS.items():
        if getattr(module, "__file__", None) == path:
            return known                    # loaded before (a module is executed once)
    name = "pgalloc_patch_" + os.path.splitext(os.path.basename(spec))[0].replace("-", "_")
    try:
        loader = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module          # so that its paths pickle (the explorer's frozen worlds)
        loader.loader.exec_module(module)
    except KeyboardInterrupt:
        sys.modules.pop(name, None)
        raise
    except BaseException as e:  # noqa: BLE001 - anything the user's file raises (sys.exit too) is reported
        sys.modules.pop(name, None)
        raise VersionError(f"{spec}: cannot load it: {describe_error(e)}") from None
    missing = [n for n in REQUIRED if not hasattr(module, n)]
    if missing:
        raise VersionError(f"{spec}: a version file must define {', '.join(missing)} "
                           "(start it with 'from pgalloc.v66 import *', or the version it patches)")
    if not isinstance(module.NAME, str) or not re.fullmatch(r"[!-~]+", module.NAME):
        raise VersionError(f"{spec}: NAME = {module.NAME!r} is not a name: one word of printable ASCII "
                           "(it is written into VMCOREINFO's OSRELEASE line)")
    if not hasattr(module, "RULES"):
        module.RULES = _rules_of_flags(module)
    if module.NAME in VERSIONS and VERSIONS[module.NAME] is not module:
        raise VersionError(f"{spec}: NAME = {module.NAME!r} is already a version; give the patch its own NAME")
    VERSIONS[module.NAME] = module
    return module.NAME


# Which allocator rules a real kernel release runs (``s390emu check`` on a Linux dump):
# c2c224932fd0 ("s390/mm: fix 2KB pgtable release race") is in v5.17 and was backported to
# 5.15.17 and 5.16.3 (the stable reviews of 2022-01-24: "[PATCH 5.15 688/846]"); the v6.4
# rules hold through v6.5, v6.6 merged PageActive, v6.7 one table per page.
_STABLE_FIX = {(5, 15): 17, (5, 16): 3}


def rules_for_release(osrelease: str) -> tuple[str, str]:
    """``(version, why)``: the built-in allocator version whose rules kernel
    ``osrelease`` (VMCOREINFO's ``OSRELEASE``) runs, and a line saying why.

    >>> rules_for_release("6.1.0-50-s390x")
    ('v64', 'OSRELEASE 6.1.0-50-s390x: v5.17-v6.5 have c2c224932fd0 and the v6.4 rules')
    >>> rules_for_release("5.15.12")[0], rules_for_release("6.6.8")[0], rules_for_release("6.8.0")[0]
    ('v515', 'v66', 'v67')
    """
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", osrelease or "")
    if not m:
        raise VersionError(f"OSRELEASE {osrelease!r} is not a kernel release: name the rules with --rules")
    major, minor, sub = int(m[1]), int(m[2]), int(m[3] or 0)
    rel = (major, minor)
    if rel >= (6, 7):
        return "v67", f"OSRELEASE {osrelease}: v6.7+ keep one 4K page table per page"
    if rel == (6, 6):
        return "v66", f"OSRELEASE {osrelease}: v6.6's rules (PageActive, RCU for whole pages)"
    if rel >= (5, 17):
        return "v64", f"OSRELEASE {osrelease}: v5.17-v6.5 have c2c224932fd0 and the v6.4 rules"
    fixed_at = _STABLE_FIX.get(rel)
    if fixed_at is not None and sub >= fixed_at:
        return "v64", f"OSRELEASE {osrelease}: {major}.{minor}.{fixed_at}+ has c2c224932fd0 backported"
    if fixed_at is not None and sub == 0 and "-" in osrelease:
        return "v64", (f"OSRELEASE {osrelease}: a distribution {major}.{minor} kernel, whose stable level the "
                       f"release does not say; assumed to have c2c224932fd0 ({major}.{minor}.{fixed_at}+): "
                       "--rules v515 if it does not")
    return "v515", f"OSRELEASE {osrelease}: before c2c224932fd0 (v5.17, {', '.join(f'{a}.{b}.{c}' for (a, b), c in _STABLE_FIX.items())})"
