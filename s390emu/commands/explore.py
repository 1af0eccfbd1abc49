"""``s390emu explore``: every interleaving of concurrent page-table paths, with minimal traces."""

from __future__ import annotations

import os
import sys

import click

from .common import EXIT_OK, EXIT_USAGE, EXIT_VIOLATION, allocator_version, echo_json, fail_file


@click.command("explore")
@click.option("--version", "version", default=None, metavar="V",
              help="Allocator version: v515, v64, seed, v66, v67, or a version file (a patch: see "
                   "examples/patches/); a scenario file may name it instead.")
@click.option("--max-ops", type=click.IntRange(0, 20), default=None, metavar="N",
              help="Generated mode: every combination of up to N operations over the CPUs.")
@click.option("--scenario", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Scenario mode: a TOML file fixing the setup and each CPU's operations.")
@click.option("--cpus", type=click.IntRange(1, 8), default=None, metavar="K", help="CPUs (default 2).")
@click.option("--pages", type=click.IntRange(1, 4), default=1, show_default=True,
              help="Generated mode: page-table pages in the setup, both halves in use.")
@click.option("--ops", "vocabulary", default=None, metavar="LIST",
              help="Generated mode: comma-separated operation kinds to combine (default: all).")
@click.option("--max-steps", type=click.IntRange(0), default=0, metavar="S",
              help="Bound the trace length in transitions (0: none).")
@click.option("--max-states", type=click.IntRange(1), default=2_000_000, show_default=True,
              help="Stop after this many states (reported as bound reached).")
@click.option("--max-seconds", type=click.FloatRange(0), default=0, metavar="S",
              help="Stop after about S seconds (at the end of a BFS level) and report what was found (0: none).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes splitting each BFS level (default: CPU count).")
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
@click.option("--first", is_flag=True, help="Stop at the first BFS level with a violation.")
@click.option("--json", "as_json", is_flag=True, help="Write the result as one JSON document.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True), default=None, metavar="F",
              help="Also write an HTML timeline (one column per CPU) to F.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def explore(version, max_ops, scenario, cpus, pages, vocabulary, max_steps, max_states, max_seconds, workers,
            sleep_sets, no_movers, no_subsumption, no_local_steps, no_dead_locals, first, as_json, html_file, no_progress):
    """Explore every interleaving of page-table allocator paths on several CPUs.

    RCU callbacks run as softirq work on any CPU after their grace period, in any order;
    the process exit is a concurrent path.  Every invariant of pgalloc's checks is tested
    after every atomic step; each distinct violation is reported with a shortest trace.

    \b
      s390emu explore --version v515 --max-ops 2
      s390emu explore --version seed --max-ops 3 --html seed.html
      s390emu explore --scenario examples/scenarios/release-race.toml

    Exit status: 0 nothing broke within the bounds, 4 a violation was found,
    1 an unreadable scenario file, 2 bad usage.
    """
    from pgalloc.explore import DEFAULT_VOCABULARY, OP_KINDS, Setup, explore as run
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
        if version:
            setup.version = version
        if not setup.version:
            raise click.UsageError(f"{scenario} names no version: give --version")
        if cpus is not None and cpus != setup.cpus:
            raise click.UsageError(f"{scenario} has {setup.cpus} CPUs; --cpus {cpus} does not match")
    else:
        if not version:
            raise click.UsageError("--version is required with --max-ops")
        voc = DEFAULT_VOCABULARY
        if vocabulary:
            voc = tuple(v.strip() for v in vocabulary.split(",") if v.strip())
            bad = [v for v in voc if v not in OP_KINDS]
            if bad:
                raise click.BadParameter(f"unknown operation(s) {', '.join(bad)} (one of {', '.join(OP_KINDS)})",
                                         param_hint="--ops")
        setup = Setup(version=version, cpus=cpus or 2, max_ops=max_ops, pages=pages, vocabulary=voc)
    setup.version = allocator_version(setup.version, "--version")
    setup.max_steps = max_steps or setup.max_steps
    setup.max_states = max_states if max_states != 2_000_000 else setup.max_states
    setup.max_seconds = max_seconds or setup.max_seconds
    setup.sleep_sets = sleep_sets or setup.sleep_sets
    setup.movers = setup.movers and not no_movers
    setup.subsumption = setup.subsumption and not no_subsumption
    setup.local_steps = setup.local_steps and not no_local_steps
    setup.dead_locals = setup.dead_locals and not no_dead_locals
    nworkers = workers or os.cpu_count() or 1

    progress = None
    bar = None
    if not no_progress and not as_json:
        bar = click.progressbar(length=setup.max_states, label=f"explore {setup.version}", file=sys.stderr,
                                show_eta=False, show_percent=False,
                                item_show_func=lambda x: x)
        bar.__enter__()
        last = [0]

        def progress(depth, states, frontier):
            bar.update(states - last[0], f"depth {depth}, {states:,} states, frontier {frontier:,}")
            last[0] = states
    try:
        result = run(setup, workers=nworkers, progress=progress, first_only=first)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if html_file:
        try:
            with open(html_file, "w", encoding="utf-8") as fh:
                fh.write(html_report(result))
        except OSError as e:
            fail_file(f"{html_file}: {e.strerror or e}")
    if as_json:
        echo_json(result.as_dict())
    else:
        click.echo(text_report(result))
    sys.exit(EXIT_VIOLATION if result.violations else EXIT_OK)


__all__ = ["explore", "EXIT_USAGE"]
