"""Linux's s390 page-table allocator (``arch/s390/mm/pgalloc.c``) in five versions, over
the bytes of an emulated machine, written as atomic steps for the interleaving explorer.

>>> from pgalloc import Kernel, mm
>>> k = Kernel("v64", mem_size=8 << 20, checks=True)
>>> m = mm.mm_alloc(k)
>>> a, b = k.page_table_alloc(m), k.page_table_alloc(m)
>>> b - a, hex(k.byte(k.mem_map.virt_to_page(a)))
(2048, '0x3')
"""

import sys

from . import mm, registry, versions
from .checks import check_all, check_quiescent, reachability
from .errors import (AttachError, BadTable, MisuseError, PgallocError, StepError, VersionError,  # noqa: F401
                     Violation)
from .kernel import Kernel, TraceEvent
from .registry import VERSIONS
from .steps import BLOCKED, DONE, Call, Path, step
from .versions import seed, v515, v64, v66, v67  # noqa: F401 - pgalloc.v66 etc., as before

# Today's import paths keep working: ``import pgalloc.v66`` / ``from pgalloc.v66 import *``
# (the version modules lived in pgalloc/ before pgalloc/versions/), and
# ``from pgalloc.versions import VERSIONS, load_version, VersionError`` (the registry was
# the module pgalloc.versions).  The versions package itself imports neither.
for _name in registry.BUILT_IN:
    sys.modules[f"{__name__}.{_name}"] = VERSIONS[_name]
versions.VERSIONS, versions.REQUIRED = registry.VERSIONS, registry.REQUIRED
versions.load_version, versions.VersionError = registry.load_version, VersionError

__all__ = ["BLOCKED", "DONE", "Call", "Kernel", "Path", "PgallocError", "TraceEvent", "VERSIONS",
           "Violation", "check_all", "check_quiescent", "mm", "reachability", "step"]
