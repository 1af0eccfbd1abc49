"""The invariants the kernel object itself raises, beside those of ``pgalloc.checks``
(``test_invariants.py``): ``deadlock``, ``lock_context``, ``locking`` (an unlock of a
lock not held), ``list_corruption`` (DEBUG_LIST), ``use_after_free`` and the
``WARN_ON_ONCE`` family, each by a one- or two-step ``Path`` built for it, expected by
name, beside its clean neighbour.
"""

from __future__ import annotations

import pytest

import pgalloc
from pgalloc import mm as MM
from pgalloc.errors import Violation
from pgalloc.steps import DONE, Path, step
from s390emu import lists
from s390emu import structs as S

LRU = S.page.fields["lru"]


class lock_twice(Path):
    """``spin_lock_bh(&mm->context.lock)``, then again if ``twice`` (a self-deadlock)."""

    LOCALS = ("mm", "twice")

    @step("spin_lock_bh(&mm->context.lock)")
    def first(self, k):
        k.spin_lock(self.lock_addr(), True)
        return "spin_lock_bh(&mm->context.lock) again" if self.twice else "spin_unlock_bh(&mm->context.lock)"

    @step("spin_lock_bh(&mm->context.lock) again")
    def second(self, k):
        k.spin_lock(self.lock_addr(), True)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return DONE


class plain_lock(Path):
    """``spin_lock(&mm->context.lock)`` (bottom halves left on) and its unlock."""

    LOCALS = ("mm",)

    @step("spin_lock(&mm->context.lock)")
    def lock(self, k):
        k.spin_lock(self.lock_addr(), False)
        return "spin_unlock(&mm->context.lock)"

    @step("spin_unlock(&mm->context.lock)")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), False)
        return DONE


class unlock_only(Path):
    """``spin_unlock_bh`` of a lock this CPU never took."""

    LOCALS = ("mm",)

    @step("spin_unlock_bh(&mm->context.lock)")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return DONE


class del_page(Path):
    """``list_del(&page->lru)`` under the lock."""

    LOCALS = ("mm", "page")

    @step("spin_lock_bh(&mm->context.lock)")
    def lock(self, k):
        k.spin_lock(self.lock_addr(), True)
        return "list_del(&page->lru)"

    @step("list_del(&page->lru)")
    def del_(self, k):
        k.list_del(self.page)
        return "spin_unlock_bh(&mm->context.lock)"

    @step("spin_unlock_bh(&mm->context.lock)")
    def unlock(self, k):
        k.spin_unlock(self.lock_addr(), True)
        return DONE


def kernel(version="v64"):
    k = pgalloc.Kernel(version, checks=True)
    return k, MM.mm_alloc(k)


def violation(k, path, cpu=0, context="process"):
    with pytest.raises(Violation) as e:
        k.run(path, cpu, context)
    return e.value


def test_taking_the_lock_once_is_clean_and_twice_is_a_self_deadlock():
    k, mm = kernel()
    k.run(lock_twice(mm=mm, twice=0))
    assert k.locks == {}
    v = violation(k, lock_twice(mm=mm, twice=1))
    assert v.name == "deadlock" and v.message.endswith("that its own process context holds (spin_lock_bh): self-deadlock")


def test_spinning_on_a_lock_another_cpu_holds_is_a_deadlock_for_run():
    k, mm = kernel()
    k.start(1, lock_twice(mm=mm, twice=0))
    k.step(1)                                              # CPU1 holds the lock
    v = violation(k, lock_twice(mm=mm, twice=0), cpu=0)
    assert v.name == "deadlock" and "spins on lock" in v.message
    k.step(1)                                              # CPU1 unlocks: CPU0 may go on
    k.step(0)
    k.step(0)
    assert k.locks == {}


def test_a_lock_taken_plainly_in_process_context_and_in_softirq_is_lock_context():
    k, mm = kernel()
    k.run(plain_lock(mm=mm))                               # process context only: fine
    v = violation(k, lock_twice(mm=mm, twice=0), 0, "softirq")
    assert v.name == "lock_context"


def test_the_same_lock_with_bh_off_in_process_context_is_clean():
    k, mm = kernel()
    k.run(lock_twice(mm=mm, twice=0), 0, "softirq")
    k.run(lock_twice(mm=mm, twice=0))
    assert k.locks == {}


def test_unlocking_a_lock_not_held_is_locking():
    k, mm = kernel()
    v = violation(k, unlock_only(mm=mm))
    assert (v.name, v.message) == ("locking", f"CPU0 unlocks {mm + S.mm_struct.fields['context.lock']:#x} held by None")


def test_list_del_of_a_deleted_entry_is_list_corruption_with_or_without_checks():
    # DEBUG_LIST is always on: the kernel turns the list's own ListCorruption into the
    # invariant, checks or not (with checks, list_operation would speak first).
    k = pgalloc.Kernel("v64")
    mm = MM.mm_alloc(k)
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    k.run(del_page(mm=mm, page=page))                      # listed: a clean list_del
    v = violation(k, del_page(mm=mm, page=page))           # poisoned by the first
    assert (v.name, v.page) == ("list_corruption", page)
    assert v.message == f"list corruption at {page + LRU:#x}: list_del of an entry that was already deleted (LIST_POISON)"


def test_a_corrupt_pgtable_list_seen_by_the_checks_after_a_step_is_a_list_corruption_violation():
    k, mm = kernel()
    page = k.mem_map.virt_to_page(k.page_table_alloc(mm))
    k.mem.write_u64(page + LRU + 8, 0xDEAD000)             # the listed page's prev no longer points back
    v = violation(k, del_page(mm=mm, page=page))
    assert v.name == "list_corruption" and "list corruption" in v.message and v.step.startswith("CPU0 process")


def test_an_atomic_op_on_a_free_page_inside_a_step_is_use_after_free():
    k, mm = kernel()
    t0 = k.page_table_alloc(mm)
    page = k.mem_map.virt_to_page(t0)
    assert k.atomic_read(page) >> 24 == 0x01
    lists.list_del_init(k.mem, page + LRU)
    k.mem_map.set_refcount(page, 1)
    k.free_page(page)
    with pytest.raises(Violation) as e:
        k.atomic_read(page)
    assert e.value.name == "use_after_free"


def test_warn_on_once_raises_with_checks_and_is_remembered_without():
    k, mm = kernel()
    with pytest.raises(Violation) as e:
        k.warn("WARN_ON_ONCE(x)", 0x40, "why")
    assert (e.value.name, e.value.message) == ("WARN_ON_ONCE(x)", "why")
    quiet = pgalloc.Kernel("v64")
    quiet.warn("WARN_ON_ONCE(x)", 0x40, "why")
    assert [(w.name, w.page, w.message) for w in quiet.warnings] == [("WARN_ON_ONCE(x)", 0x40, "why")]
