"""Helpers of the explorer's tests: walking the worlds of a search by hand."""

from pgalloc import explore as X


def bfs_worlds(setup, limit):
    """Up to ``limit`` distinct worlds of ``setup``'s search, breadth first (no checks
    of findings: a transition that raises is simply not followed)."""
    ctx, w0 = X.build(setup)
    seen, todo, out = {X.world_key(w0)}, [w0], []
    while todo and len(out) < limit:
        w = todo.pop(0)
        out.append(w)
        for t in X.transitions(ctx, w):
            c = X.copy_world(w)
            try:
                X.apply(ctx, c, t)
            except Exception:       # noqa: BLE001, S112 - a finding: nothing to follow
                continue
            key = X.world_key(c)
            if key not in seen:
                seen.add(key)
                todo.append(c)
    return ctx, out


def run(ctx, w, ts):
    """A copy of ``w`` after transitions ``ts``, or why they could not all be taken."""
    c = X.copy_world(w)
    for t in ts:
        if t not in X.transitions(ctx, c):
            return ("disabled", t)
        try:
            X.apply(ctx, c, t)
        except Exception as e:      # noqa: BLE001
            return ("raised", type(e).__name__, str(e))
    return c


def key_and_ready(ctx, w, ts):
    """The key after ``ts`` with every RCU callback counted as ready, and the ready ones."""
    c = run(ctx, w, ts)
    if isinstance(c, tuple):
        return c, None
    ready = sorted(e[:3] for e in c.k.rcu if e[3])
    c.k.rcu = [e[:3] + (True,) for e in c.k.rcu]
    return X.world_key(c), ready


def key_up_to_gather_names(ctx, w, ts):
    """The key after ``ts``, with the open mmu_gathers renamed in the order of the CPUs
    that hold them (a gather's number only says how many were opened before it)."""
    c = run(ctx, w, ts)
    if isinstance(c, tuple):
        return c
    k = c.k
    held = [fr.tlb for cpu in k.cpus for fr in cpu.proc if getattr(fr, "tlb", 0) in k.gathers]
    new = {g: 1000 + n for n, g in enumerate(dict.fromkeys(held))}
    k.gathers = {new.get(g, g): v for g, v in k.gathers.items()}
    for cpu in k.cpus:
        for fr in cpu.proc + cpu.soft:
            if getattr(fr, "tlb", 0) in new:
                fr.tlb = new[fr.tlb]
    return X.world_key(c)


def followers(ctx, worlds, picks):
    """``(w, ts, a, b)``: at each world ``w`` (whose transitions are ``ts``), each start
    ``a`` that ``picks(w, a)`` chooses, and each transition ``b`` of another CPU that can
    follow it (a start that is a finding at once has none)."""
    for w in worlds:
        ts = X.transitions(ctx, w)
        for a in ts:
            if not picks(w, a):
                continue
            after_a = X.copy_world(w)
            try:
                X.apply(ctx, after_a, a)
            except Exception:       # noqa: BLE001, S112 - a finding at once: nothing follows
                continue
            for b in X.transitions(ctx, after_a):
                if len(b) < 2 or b[1] != a[1]:
                    yield w, ts, a, b
