"""The explorer's worlds: storage that keys itself as a difference, keys, freezing
over ``Kernel.snapshot()``/``restore()``, the symmetric key."""

import marshal

from pgalloc import explore as X
from pgalloc.explore import Setup, explore, search

from .worlds import bfs_worlds


def test_the_write_tracking_difference_equals_a_full_comparison_of_storage(monkeypatch):
    orig = X.ExploreMemory.diff
    seen = []

    def checked(self):
        a = orig(self)
        b = self.full_diff()
        seen.append(a == b)
        return a
    monkeypatch.setattr(X.ExploreMemory, "diff", checked)
    explore(Setup(version="seed", max_ops=2, max_states=1500))
    assert seen and all(seen)


def test_keys_from_the_parents_cpu_states_equal_keys_computed_afresh(monkeypatch):
    # The search keys a successor with the states of the CPUs it shares with its parent;
    # a step that changed a shared CPU in place would make the two differ.
    orig = X.world_key
    seen = []

    def checked(w, symmetric=False, diff=None, live=True, known=None):
        key = orig(w, symmetric, diff, live, known)
        seen.append(key == orig(w, symmetric, diff, live))
        return key
    monkeypatch.setattr(search, "world_key", checked)
    explore(Setup(version="seed", max_ops=2))
    assert len(seen) > 1000 and all(seen)


def test_frozen_worlds_thaw_to_the_same_key():
    ctx, w0 = X.build(Setup(version="v66", max_ops=2))
    ts = X.transitions(ctx, w0)
    w = X.copy_world(w0)
    X.apply(ctx, w, ts[0])
    w2 = X.thaw(ctx, X.freeze(w))
    assert X.world_key(w2) == X.world_key(w)
    assert w2.k.position(0) == w.k.position(0)


def test_a_successor_frozen_with_its_parents_cpu_forms_and_states_is_the_world_frozen_afresh(monkeypatch):
    # expand freezes a successor's unchanged CPUs as the forms, and keys them with the
    # states, that the thawed parent carried: a CPU changed in place, or a stale form,
    # would make the frozen world differ from freezing it from scratch.  (Compared as
    # values: marshal writes an object met twice as a reference, so equal worlds built
    # from different objects can differ in their bytes.)
    orig = search.freeze
    seen = []

    def checked(w, diff=None, scratch=None):
        blob = orig(w, diff, scratch)
        keyed = w.keyed
        w.keyed = tuple(X.cpu_key(c) for c in w.k.cpus)     # what the key was made of, afresh
        seen.append(marshal.loads(blob[1:]) == marshal.loads(orig(w, diff)[1:]) and keyed == w.keyed)
        return blob
    monkeypatch.setattr(search, "freeze", checked)
    explore(Setup(version="seed", max_ops=2))
    assert len(seen) > 1000 and all(seen)


class _Opaque:
    """A value marshal cannot write (no step keeps one today)."""

    def __eq__(self, other):
        return isinstance(other, _Opaque)

    def __hash__(self):
        return 1

    def __lt__(self, other):
        return False


def test_a_world_marshal_cannot_write_is_pickled_and_keyed_all_the_same():
    ctx, w0 = X.build(Setup(version="v66", max_ops=2))
    w = X.copy_world(w0)
    X.apply(ctx, w, X.transitions(ctx, w)[0])
    fr = next(f for c in w.k.cpus for f in c.proc)
    marshalled = X.freeze(w)
    fr.ret = _Opaque()
    blob = X.freeze(w)
    assert marshalled[:1] == b"M" and blob[:1] == b"P"
    w2 = X.thaw(ctx, blob)
    assert isinstance(next(f for c in w2.k.cpus for f in c.proc).ret, _Opaque)
    assert X.world_key(w2, live=False) == X.world_key(w, live=False)
    assert X.world_key(w, live=False) != X.world_key(X.thaw(ctx, marshalled), live=False)


def test_freezing_keeps_every_kernel_attribute_a_transition_changes():
    # A frozen world carries only ``Kernel.snapshot()``, and ``Kernel.restore`` rebuilds
    # the rest from the setup's kernel: an attribute either of them missed, or a constant
    # that a transition changed, would be lost on the way to a worker.
    ctx, worlds = bfs_worlds(Setup(version="seed", max_ops=2), 400)
    for w in worlds:
        w2 = X.thaw(ctx, X.freeze(w))
        assert set(vars(w2.k)) == set(vars(w.k)) == set(vars(ctx.template))
        assert (w.k.version, w.k.v, w.k.checks, w.k.tlb_batch_max) == (
            ctx.template.version, ctx.template.v, ctx.template.checks, ctx.template.tlb_batch_max)
        assert X.world_key(w2) == X.world_key(w) and w2.k.zero_page == w.k.zero_page
        assert w2.k.key() == w.k.key() and w2.k.next_gid == w.k.next_gid


def test_a_kernel_restored_from_its_snapshot_is_the_same_kernel():
    """``snapshot()``/``restore()`` round trip on a kernel in the middle of a step
    sequence: every attribute of a built kernel, the same key, and it runs on."""
    from pgalloc import mm as MM
    from pgalloc.kernel import Kernel, KernelKey
    k = Kernel("v66", mem_size=8 << 20, checks=True)
    m = MM.mm_alloc(k)
    k.page_table_alloc(m)
    k.start(0, k.v.page_table_alloc(mm=m))
    k.step(0)
    r = Kernel.restore(k, k.copy().snapshot(), k.copy().machine)
    assert set(vars(r)) == set(vars(k))
    assert isinstance(k.key(), KernelKey) and r.key() == k.key() and r.key().cpus == k.key().cpus
    while k.busy(0):
        k.step(0)
        r.step(0)
        assert r.key() == k.key()


def test_worlds_that_differ_by_which_cpu_holds_a_lock_get_one_symmetric_key():
    """The lock word in memory holds ~cpu: keyed with CPU symmetry, that block is hashed
    as if the CPUs were renumbered, so the mirror worlds meet (and without, they differ)."""
    ctx, w0 = X.build(Setup(version="v66", max_ops=2))
    worlds = []
    for cpu in (0, 1):
        w = X.copy_world(w0)
        X.apply(ctx, w, ("start", cpu, ("flush_lazy",)))
        assert list(w.k.locks.values())[0][0] == cpu
        worlds.append(w)
    a, b = worlds
    assert a.k.mem.digest() != b.k.mem.digest()
    assert X.world_key(a, symmetric=True) == X.world_key(b, symmetric=True)
    assert X.world_key(a) != X.world_key(b)
    thawed = X.thaw(ctx, X.freeze(b))
    assert X.world_key(thawed, symmetric=True) == X.world_key(a, symmetric=True)
