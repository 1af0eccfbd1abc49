"""``s390emu explore``: every interleaving of concurrent page-table paths, with minimal traces."""

from __future__ import annotations

import math
import os
import sys
import time

import click

from ..output import OutputError, write_text
from .common import (EXIT_CHECKPOINT, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION, allocator_version,
                     echo_json, fail_file, refuse_overwrite)


def _finite(ctx, param, value):
    """Refuse ``nan`` and ``inf``: a number of seconds is finite."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of seconds")
    return value


@click.command("explore")
@click.option("--version", "version", default=None, metavar="V",
              help="Allocator version: v515, v64, seed, v66, v67, or a version file (a patch: see "
                   "examples/patches/); a scenario file may name it instead.")
@click.option("--max-ops", type=click.IntRange(0, 20), default=None, metavar="N",
              help="Generated mode: every combination of up to N operations over the CPUs.")
@click.option("--scenario", default=None, metavar="FILE",
              help="Scenario mode: a TOML file fixing the setup and each CPU's operations.")
@click.option("--cpus", type=click.IntRange(1, 8), default=None, metavar="K", help="CPUs (default 2).")
@click.option("--pages", type=click.IntRange(1, 4), default=1, show_default=True,
              help="Generated mode: page-table pages in the setup, both halves in use.")
@click.option("--pgste", is_flag=True,
              help="Generated mode: the mm is a KVM guest's (mm_alloc_pgste): each page table is a whole 4K "
                   "page, its upper 2K the PGSTEs, freed with tag 3 (a scenario sets pgste in [setup]).")
@click.option("--ops", "vocabulary", default=None, metavar="LIST",
              help="Generated mode: comma-separated operation kinds to combine (default: all but switch_mm; "
                   "gup_fast, pte_map and switch_mm need walkers).")
@click.option("--max-steps", type=click.IntRange(0), default=0, metavar="S",
              help="Bound the trace length in transitions (0: none).")
@click.option("--max-states", type=click.IntRange(1), default=None, metavar="M",
              help="Stop after M states, reported as incomplete (default: the scenario's, else 2,000,000).")
@click.option("--max-seconds", type=click.FloatRange(0), default=0, metavar="S", callback=_finite,
              help="Stop after about S seconds (at the end of a BFS level) and report what was found (0: none).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes splitting each BFS level (default: CPU count).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the search runs: worker processes here, or Ray actors each owning a part of the "
                   "visited states (needs the 'ray' extra; docs/explorer.md).")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="With --engine ray: the Ray cluster to join (default: start a local one for --workers actors).")
@click.option("--sleep-sets", is_flag=True, help="Add the sleep-set reduction (docs/explorer.md: how the search is kept small).")
@click.option("--no-movers", is_flag=True,
              help="Do not fuse bh-off spin_lock/spin_unlock with their neighbour steps, nor the start of "
                   "an operation or an RCU callback with its first visible step.")
@click.option("--no-subsumption", is_flag=True, help="Explore a state again even when one with more budget left was.")
@click.option("--no-local-steps", is_flag=True,
              help="Interleave the steps that touch nothing another CPU sees too (returns, calls, own reads, "
                   "pmd_populate of the own slot, call_rcu of the own gather, the seed's pte_free_half "
                   "returning when its mask shows no H bit).")
@click.option("--no-dead-locals", is_flag=True,
              help="Key running functions by all their locals, also those no later step reads.")
@click.option("--walkers/--no-walkers", default=None,
              help="Model the readers in flight: every CPU's TLB, GUP-fast and pte_offset_map walkers, the "
                   "callers' flushes and IPIs (default: on; --no-walkers is the search before them).")
@click.option("--first", is_flag=True, help="Stop at the first BFS level with a violation.")
@click.option("--json", "as_json", is_flag=True, help="Write the result as one JSON document.")
@click.option("--html", "html_file", default=None, metavar="F",
              help="Also write an HTML timeline (one column per CPU) to F (checked before the search).")
@click.option("--force", is_flag=True, help="Overwrite the --html file if it exists.")
@click.option("--checkpoint", "checkpoint", default=None, metavar="DIR",
              help="Write the search to DIR at each BFS level's end; if DIR holds this search's checkpoint "
                   "(of either engine, any --workers), resume from it (another search's: exit 6, DIR left "
                   "as it is).")
@click.option("--restart", is_flag=True, help="With --checkpoint: start the search over, replacing DIR's checkpoint.")
@click.option("--progress/--no-progress", default=None,
              help="Progress (states, rate, frontier, depth) on stderr; default: when stderr is a terminal.")
def explore(version, max_ops, scenario, cpus, pages, pgste, vocabulary, max_steps, max_states, max_seconds, workers,
            engine, ray_address, sleep_sets, no_movers, no_subsumption, no_local_steps, no_dead_locals, walkers, first,
            as_json, html_file, force, checkpoint, restart, progress):
    """Explore every interleaving of page-table allocator paths on several CPUs.

    RCU callbacks run as softirq work on any CPU after their grace period, in any order;
    the process exit is a concurrent path.  Every invariant of pgalloc's checks is tested
    after every atomic step; each distinct violation is reported with a shortest trace.

    \b
      s390emu explore --version v515 --max-ops 2
      s390emu explore --version seed --max-ops 3 --html seed.html
      s390emu explore --scenario examples/scenarios/release-race.toml

    Exit status: 0 nothing broke and every interleaving within the bounds was explored,
    4 a violation was found, 5 incomplete (cut by a bound, Ctrl-C or a dead worker or
    Ray actor, or a scenario operation never started: not clean, not a violation), 1 an
    unreadable scenario file, checkpoint or output path, 2 bad usage, 6 a --checkpoint
    DIR holding another search's checkpoint (or another format's, or other files).
    Either engine resumes either's checkpoint, with any --workers.
    """
    from pgalloc.explore import DEFAULT_VOCABULARY, OP_KINDS, Setup, explore as run
    from pgalloc.explore.checkpoint import CheckpointFileError
    from pgalloc.explore.operations import INFLIGHT_OPS
    from pgalloc.explore.report import html_report, text_report
    from pgalloc.explore.scenario import ScenarioError, load_scenario

    if (max_ops is None) == (scenario is None):
        raise click.UsageError("give exactly one of --max-ops N and --scenario FILE")
    if scenario is not None:
        try:
            setup = load_scenario(scenario)
        except OSError as e:
            fail_file(f"{scenario}: {e.strerror or e}")
        except ScenarioError as e:
            fail_file(f"{scenario}: {e}")
        if not version and not setup.version:
            raise click.UsageError(f"{scenario} names no version: give --version")
        if not version:
            setup.version = scenario_version(scenario, setup.version)
        if cpus is not None and cpus != setup.cpus:
            raise click.UsageError(f"{scenario} has {setup.cpus} CPUs; --cpus {cpus} does not match")
        if pgste:
            raise click.UsageError(f"--pgste is for generated mode: {scenario} sets pgste in its [setup]")
    else:
        if not version:
            raise click.UsageError("--version is required with --max-ops")
        voc = DEFAULT_VOCABULARY
        if vocabulary:
            voc = tuple(v.strip() for v in vocabulary.split(",") if v.strip())
            if not voc:
                raise click.BadParameter("names no operation kind", param_hint="--ops")
            bad = [v for v in voc if v not in OP_KINDS]
            if bad:
                raise click.BadParameter(f"unknown operation(s) {', '.join(bad)} (one of {', '.join(OP_KINDS)})",
                                         param_hint="--ops")
        setup = Setup(version=version, cpus=cpus or 2, max_ops=max_ops, pages=pages, pgste=pgste, vocabulary=voc)
    if version:
        setup.version = allocator_version(version, "--version")
    setup.max_steps = max_steps or setup.max_steps
    setup.max_states = max_states or setup.max_states
    setup.max_seconds = max_seconds or setup.max_seconds
    setup.sleep_sets = sleep_sets or setup.sleep_sets
    setup.movers = setup.movers and not no_movers
    setup.subsumption = setup.subsumption and not no_subsumption
    setup.local_steps = setup.local_steps and not no_local_steps
    setup.dead_locals = setup.dead_locals and not no_dead_locals
    if walkers is not None:
        setup.walkers = walkers
    if vocabulary and not setup.walkers:
        needs = [v for v in setup.vocabulary if v in INFLIGHT_OPS]
        if needs:
            raise click.UsageError(f"--ops {', '.join(needs)}: operations of the readers in flight, which "
                                   "--no-walkers leaves out")
    nworkers = workers or os.cpu_count() or 1
    if html_file:
        refuse_overwrite(html_file, force, "--html")     # before the search, not after it
    if restart and not checkpoint:
        raise click.UsageError("--restart needs --checkpoint DIR")
    if ray_address and engine != "ray":
        raise click.UsageError("--ray-address needs --engine ray")
    resume = resume_from(checkpoint, setup, restart) if checkpoint else None

    if progress is None:
        progress = sys.stderr.isatty()
    meter = Progress(setup) if progress else None
    try:
        if engine == "ray":
            result = run_on_ray(setup, nworkers, meter, first, ray_address, checkpoint, resume)
        else:
            result = run(setup, workers=nworkers, progress=meter, first_only=first, checkpoint=checkpoint,
                         resume=resume)
    except CheckpointFileError as e:
        fail_file(f"--checkpoint: {e}")
    finally:
        if meter is not None:
            meter.close()
    if result.cut == "interrupted":
        click.echo(f"s390emu: interrupted after {result.states:,} states; the findings so far follow", err=True)
    elif result.cut == "worker-died":
        who = "a Ray actor died (killed, out of memory, or its machine lost)" if engine == "ray" else \
            "a worker process died (killed, or out of memory)"
        again = f" (the same command resumes from {checkpoint})" if checkpoint else ""
        click.echo(f"s390emu: {who} after {result.states:,} states; the findings so far follow{again}", err=True)
    if html_file:
        try:
            write_text(html_file, html_report(result), force, "--html")
        except OutputError as e:
            fail_file(str(e))
    if as_json:
        echo_json(result.as_dict())
    else:
        click.echo(text_report(result))
    sys.exit(EXIT_VIOLATION if result.violations else EXIT_OK if result.complete else EXIT_INCOMPLETE)


def run_on_ray(setup, workers: int, meter, first: bool, address: str | None, checkpoint: str | None, resume):
    """The search on Ray actors (``pgalloc.explore.ray_engine``); no Ray installed, or a
    cluster that cannot be reached or fails, is one line and exit 2."""
    from pgalloc.explore import ray_engine

    try:
        return ray_engine.explore(setup, workers=workers, progress=meter, first_only=first, address=address,
                                  checkpoint=checkpoint, resume=resume)
    except ray_engine.RayUnavailable as e:
        click.echo(f"s390emu: {e}", err=True)
    except ray_engine.RayClusterError as e:
        click.echo(f"s390emu: --engine ray: {e}", err=True)
    sys.exit(EXIT_USAGE)


def resume_from(directory: str, setup, restart: bool):
    """The search level to resume from DIR's checkpoint, or ``None`` to start afresh; a DIR
    that must neither be resumed nor overwritten exits 6, an unreadable one 1."""
    from pgalloc.explore.checkpoint import CheckpointError, CheckpointFileError, check_directory, load

    try:
        man = check_directory(directory, setup, restart)
        if man is not None:
            return load(directory, man)
        os.makedirs(directory, exist_ok=True)       # an unwritable DIR is told before the search
        return None
    except CheckpointError as e:
        click.echo(f"s390emu: --checkpoint: {e}", err=True)
        sys.exit(EXIT_CHECKPOINT)
    except CheckpointFileError as e:
        fail_file(f"--checkpoint: {e}")
    except OSError as e:
        fail_file(f"--checkpoint: {directory}: {e.strerror or e}")


def scenario_version(scenario: str, spec: str) -> str:
    """The version a scenario file names, loaded; one it cannot name is the file's
    error (exit 1), not bad usage: no option was given."""
    from pgalloc.registry import VersionError, load_version

    try:
        return load_version(spec)
    except VersionError as e:
        fail_file(f"{scenario}: version: {e}")


class Progress:
    """The search's progress on stderr, one line rewritten in place after each BFS level:
    depth, states (and the share of ``--max-states`` they are), rate, frontier, and the
    time left where it is knowable (``--max-seconds``).  How many states are left
    is not: the frontier's successors are known only once expanded."""

    def __init__(self, setup):
        self.setup = setup
        self.t0 = time.perf_counter()
        self.width = 0

    def __call__(self, depth: int, states: int, frontier: int) -> None:
        s = self.setup
        dt = time.perf_counter() - self.t0
        rate = states / dt if dt > 0 else 0.0
        line = (f"explore {os.path.basename(s.version)}: depth {depth}, {states:,} states "
                f"({states / s.max_states:.1%} of --max-states), {rate:,.0f} states/s, frontier {frontier:,}")
        if s.max_seconds:
            line += f", at most {max(0.0, s.max_seconds - dt):,.0f} s left (--max-seconds)"
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()
        self.width = len(line)

    def close(self) -> None:
        """End the progress line."""
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()



__all__ = ["explore", "EXIT_USAGE"]
