"""The allocator versions by name: ``VERSIONS["v64"]`` is the module ``pgalloc.v64``."""

from __future__ import annotations

from . import seed, v515, v64, v66, v67

VERSIONS = {"v515": v515, "v64": v64, "seed": seed, "v66": v66, "v67": v67}
