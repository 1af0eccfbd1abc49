"""The interleaving explorer: every interleaving of concurrent page-table paths, with
minimal counterexample traces (issue 4).

A *world* is a ``Kernel`` (memory bytes, CPUs with their running kernel functions, RCU
queue, mmu_gather batches, lock holders) plus the generator's own small state (how many
operations were started, whether the process has exited, which scenario operation each
CPU runs next).  From a world, the *transitions* are:

* ``("start", cpu, op)``: an idle CPU starts an operation in process context
  (``page_table_alloc``, ``pte_free``, ``pte_free_tlb`` + ``tlb_finish_mmu`` (also the
  no-memory fallback), THP collapse ``pte_free_defer``, process exit ``mmput`` ->
  ``exit_mmap`` -> ``mmdrop``, dropping a lazy mm reference ``mmdrop``,
  ``__tlb_flush_mm_lazy`` (plain ``spin_lock``), a speculative page reference);
* ``("step", cpu)``: the CPU's running context (softirq if one runs, else process)
  takes one atomic step of its innermost kernel function;
* ``("gp",)``: a grace period elapses (only outside every RCU read-side section);
* ``("rcu", cpu, callback)``: a ready RCU callback starts as softirq work on ``cpu``
  (any CPU with bottom halves enabled, interrupting whatever process context runs).

The search is breadth first, so the first trace that breaks an invariant is a shortest
one (in transitions).  Visited worlds are cached by key (the memory as the hashes of the
1 KiB blocks where it differs from the setup's memory, plus ``Kernel.key()``'s other
parts with only the live locals of each running function (``pgalloc.liveness``), plus
the generator state); steps that no other CPU can observe are taken at once
(``is_local``, ``settle``); a world is not explored again when one explored before
differs from it only by a larger budget (fewer operations started, a superset of
lockdep usage bits: ``subsumes``), and a *sleep set* partial-order reduction (off by
default) skips a transition at a world when an independent transition already explored
the same interleaving: two transitions of different CPUs are independent when their
memory footprints (words read and written, recorded while they run) do not conflict and
neither touches the shared kernel state outside memory (RCU queue, lock table,
allocation records, bottom-half counts).  Lipton's movers shorten the paths themselves:
a spinlock taken with bottom halves off is fused with the step after it, and its release
with the step before it (``take``, ``settle``), and starting a page-table operation or
an RCU callback runs on to its first visible step (``apply``).  Each BFS level is split
over worker processes.

The modules, each importing only those above it:

=============  =====================================================================
``world``      ``ExploreMemory``, ``Scratch``, ``World``; freeze/thaw over
               ``Kernel.snapshot()``/``restore()``; the visited-state key, subsumption
``operations`` the vocabulary (``OP_KINDS``), ``possible_ops``, ``make_path``,
               ``transitions`` (the kernel's callers are ``pgalloc.callers``)
``setup``      ``Setup``, ``Context``, ``build`` (``SetupViolation``: a check failed in it)
``reductions`` local steps, movers, eager grace periods, sleep-set independence;
               ``apply`` takes one transition with them (``Recorder``: what replay needs)
``dependence`` which pairs of transitions commute, and why the others do not (``census``)
``findings``   ``Finding``; deadlock and quiescent-state checks
``replay``     a finding's trace rows
``checkpoint`` the search at a level's end (``Level``), saved to a directory and loaded
               to resume it (``explore --checkpoint DIR``)
``search``     the BFS over worker processes, ``Result`` (with ``cut``: why a search
               stopped early, one of ``CUTS``), ``run_in_order``
``scenario``   scenario files; ``report``: text and HTML reports
=============  =====================================================================

>>> r = explore(Setup(version="v64", cpus=2, max_ops=1))
>>> r.violations, r.complete
([], True)
"""

from .findings import Finding
from .operations import DEFAULT_VOCABULARY, MM_OPS, OP_KINDS, TABLE_OPS, make_path, possible_ops, transitions
from .reductions import Recorder, apply, is_local, settle
from .replay import describe_transition, replay
from .search import CUTS, Result, expand, explore, run_in_order
from .setup import Context, Setup, SetupViolation, build, parse_ops_bound
from .world import ExploreMemory, Scratch, World, clone_onto, copy_world, cpu_key, freeze, subsumes, thaw, world_key

__all__ = ["CUTS", "Context", "DEFAULT_VOCABULARY", "ExploreMemory", "Finding", "MM_OPS",
           "OP_KINDS", "Recorder", "Result", "Scratch", "Setup", "SetupViolation", "TABLE_OPS", "World", "apply", "build", "clone_onto",
           "copy_world", "cpu_key", "describe_transition", "expand", "explore", "freeze", "is_local", "make_path",
           "parse_ops_bound", "possible_ops", "replay", "run_in_order", "settle", "subsumes", "thaw", "transitions",
           "world_key"]
