"""The step declarations: successors checked when a class is created, unreachable inherited
steps dropped, redirects, lock and local marks, and today's version-file format."""

import pathlib

import pytest

from pgalloc import Kernel, mm as MM
from pgalloc import seed, v64, v66
from pgalloc.errors import StepError, VersionError
from pgalloc.registry import VERSIONS, load_version
from pgalloc.steps import BLOCKED, DONE, Call, Path, is_local, step


class two_steps(Path):
    LOCALS = ("x",)

    @step("a")
    def a(self, k):
        return "b" if self.x else DONE

    @step("b")
    def b(self, k):
        return DONE


def test_successors_are_read_from_the_bodies():
    assert two_steps.SUCCESSORS == {"a": frozenset({"b"}), "b": frozenset()}
    assert v64.page_table_free.SUCCESSORS["atomic_xor_bits(A|P)"] == {
        "list_add(&page->lru, &mm->context.pgtable_list)", "list_del(&page->lru)"}
    # Call(path, ret) resumes at ret; a helper's returned value is the label.
    assert v64.pte_free_defer.SUCCESSORS["tlb_remove_table_sync_one"] == {"return", "pte_free(mm, pgtable)"}
    assert v66.page_table_free.SUCCESSORS[
        "if ((mask & 0x03U) && !PageActive(page)) list_add else list_del_init"] == {"spin_unlock_bh(&mm->context.lock)"}


def test_a_successor_that_names_no_step_is_refused_when_the_class_is_created():
    with pytest.raises(StepError, match=r"step 'a' goes to 'c', which is no step of bad"):
        class bad(Path):
            @step("a")
            def a(self, k):
                return "c"


def test_a_declared_successor_is_checked_too():
    with pytest.raises(StepError, match="goes to 'nowhere'"):
        class bad(Path):
            @step("a", then=("nowhere",))
            def a(self, k):
                return k.label_from_somewhere()


def test_an_inherited_step_that_can_no_longer_be_reached_is_dropped():
    class shorter(two_steps):
        @step("a")
        def a(self, k):
            return DONE

    assert list(shorter.STEPS) == ["a"] and list(two_steps.STEPS) == ["a", "b"]
    # The seed's page_table_free starts at its own entry and XORs A alone.
    assert "atomic_xor_bits(A|P)" in v64.page_table_free.STEPS
    assert "atomic_xor_bits(A|P)" not in seed.page_table_free.STEPS
    assert "if (!mm_alloc_pgste(mm))" not in seed.page_table_free.STEPS


def test_a_redirect_changes_one_edge_and_the_run_follows_it():
    class detour(two_steps):
        REDIRECT = {"a": {"b": "c"}}

        @step("c")
        def c(self, k):
            self.result = 7
            return DONE

    assert detour.SUCCESSORS == {"a": frozenset({"c"}), "c": frozenset()}
    assert list(detour.STEPS) == ["a", "c"]            # b is no longer reached
    assert detour.STEPS["a"] is two_steps.STEPS["a"]   # the body is the base's, not a copy
    k = Kernel("v64", mem_size=4 << 20)
    assert k.run(detour(x=1)) == 7
    # v6.6's frees: v6.4's XOR, sent to the PageActive test.
    assert v66.page_table_free.STEPS["atomic_xor_bits(A|P)"] is v64.page_table_free.STEPS["atomic_xor_bits(A|P)"]
    assert v66.page_table_free.SUCCESSORS["atomic_xor_bits(A|P)"] == {
        "if ((mask & 0x03U) && !PageActive(page)) list_add else list_del_init"}


def test_a_redirect_must_name_an_edge_that_exists():
    with pytest.raises(StepError, match="REDIRECT of step 'a' from 'x', which is not one of its successors"):
        class bad(two_steps):
            REDIRECT = {"a": {"x": "b"}}
    with pytest.raises(StepError, match="REDIRECT names 'z', which is no step"):
        class bad2(two_steps):
            REDIRECT = {"z": "b"}


def test_rewriting_a_step_drops_the_redirects_made_for_the_old_one():
    class detour(two_steps):
        REDIRECT = {"a": "c"}

        @step("c")
        def c(self, k):
            return DONE

    class rewritten(detour):
        @step("a")
        def a(self, k):
            return "b"

    assert rewritten.SUCCESSORS["a"] == {"b"}


def test_a_label_computed_at_run_time_is_checked_when_it_is_returned():
    class computed(Path):
        LOCALS = ("x",)

        @step("a")
        def a(self, k):
            return ("b", "nowhere")[self.x]

        @step("b")
        def b(self, k):
            return DONE

    assert computed.SUCCESSORS["a"] is None and list(computed.STEPS) == ["a", "b"]
    k = Kernel("v64", mem_size=4 << 20)
    assert k.run(computed(x=0)) == 0
    with pytest.raises(StepError, match=r"computed \(tests.pgalloc.test_steps\): step 'a' returned 'nowhere', which is no step of computed"):
        Kernel("v64", mem_size=4 << 20).run(computed(x=1))


def test_lock_marks_are_on_the_step_and_read_from_legacy_bodies():
    assert v64.page_table_free.LOCKS == {"spin_lock_bh(&mm->context.lock)": "bh"}
    assert v64.page_table_free.UNLOCKS == {"spin_unlock_bh(&mm->context.lock)": "bh"}

    class renamed(Path):
        LOCALS = ("mm",)

        @step("take the lock")            # no mark, no spin_lock in the label: read from the body
        def lock(self, k):
            return "drop it" if k.spin_lock(self.lock_addr(), False) else BLOCKED

        @step("drop it")
        def unlock(self, k):
            k.spin_unlock(self.lock_addr(), False)
            return DONE

    assert renamed.LOCKS == {"take the lock": "plain"} and renamed.UNLOCKS == {"drop it": "plain"}
    assert renamed(mm=0).is_lock_step()
    with pytest.raises(StepError, match="declared lock='bh' but its body calls spin_lock"):
        class wrong(Path):
            @step("l", lock="bh")
            def lock(self, k):
                return DONE if k.spin_lock(0, False) else BLOCKED


def test_local_marks_belong_to_the_code_not_the_label():
    class rewritten(seed.pte_free_half):
        @step("if (mask & 0x0CU) call_rcu(other half)")
        def requeue(self, k):
            return DONE

    for label in ("if (mask & 0x0CU) call_rcu(other half)", "__tlb_remove_table(table | 1 << bit)"):
        ours, theirs = seed.pte_free_half(page=0, bit=0), rewritten(page=0, bit=0)
        ours.pc = theirs.pc = label
        assert is_local(ours)
        assert is_local(theirs) == (label != "if (mask & 0x0CU) call_rcu(other half)")
    ours.pc = "if (mask & 0x0CU) call_rcu(other half)"
    ours.mask = 0x04                        # an H bit in the mask: it queues the other half
    assert not is_local(ours)
    assert is_local(v64.page_table_free(mm=0, table=0))        # its entry, the PGSTE flag test
    fr = v64.page_table_free(mm=0, table=0)
    fr.pc = "atomic_xor_bits(A|P)"
    assert not is_local(fr)


# The example patch as commit fa4c2bc shipped it, before REDIRECT (v6.4's XOR copied for a
# new label): the fixture the explorer's tests load too, under a name of its own here.
LEGACY = (pathlib.Path(__file__).resolve().parents[1] / "explore" / "fixtures" / "v66_relist_deferred_fa4c2bc.py").read_text(
    ).replace('NAME = "v66-relist-deferred-fa4c2bc"', 'NAME = "legacy"')
assert 'NAME = "legacy"' in LEGACY


def test_a_version_file_in_todays_format_loads_with_its_successors_read_and_checked(tmp_path):
    f = tmp_path / "legacy.py"
    f.write_text(LEGACY)
    v = VERSIONS[load_version(str(f))]
    assert v.page_table_free.SUCCESSORS["atomic_xor_bits(A|P)"] == {"if (mask & 0x03U) list_add else list_del_init"}
    assert v.RULES is v66.RULES                 # a patch inherits its base's checks
    k = Kernel(v.NAME, mem_size=4 << 20, checks=True)
    m = MM.mm_alloc(k)
    a, b = k.page_table_alloc(m), k.page_table_alloc(m)
    k.page_table_free(m, a)
    assert k.byte(k.mem_map.virt_to_page(b)) == 0x02 and k.list_first(m + MM.MM["context.pgtable_list"])
    bad = tmp_path / "typo.py"
    bad.write_text(LEGACY.replace('NAME = "legacy"', 'NAME = "typo"').replace(
        'return "if (mask & 0x03U) list_add_tail else list_del_init"', 'return "if (mask & 0x03U) list_add_tail"'))
    with pytest.raises(VersionError, match=r"StepError: .*step 'atomic_xor_bits\(A\|P\)' "
                                           r"goes to 'if \(mask & 0x03U\) list_add_tail'"):
        load_version(str(bad))


def test_a_version_file_without_the_star_import_gets_the_rules_of_its_flags(tmp_path):
    f = tmp_path / "by-hand.py"
    f.write_text("from pgalloc import v66\n"
                 "NAME = 'by-hand'\n"
                 "FRAGMENTS, HAS_H, LIST_DEL_INIT, DEFER_IS_PTE_FREE, CRST_COMPOUND = True, False, True, False, False\n"
                 "CALLBACKS = v66.CALLBACKS\n"
                 "page_table_alloc, page_table_free = v66.page_table_alloc, v66.page_table_free\n"
                 "page_table_free_rcu, tlb_remove_table_ = v66.page_table_free_rcu, v66.tlb_remove_table_\n"
                 "pte_free_defer, pte_free_now = v66.pte_free_defer, v66.pte_free_now\n")
    assert VERSIONS[load_version(str(f))].RULES is v66.RULES


def test_the_example_patch_is_todays_format_with_a_redirect_and_the_same_graph(tmp_path):
    new = VERSIONS[load_version("examples/patches/v66-relist-deferred.py")]
    f = tmp_path / "copying.py"
    f.write_text(LEGACY.replace('NAME = "legacy"', 'NAME = "copying"'))
    old = VERSIONS[load_version(str(f))]
    for func in ("page_table_free", "page_table_free_rcu"):
        assert getattr(old, func).SUCCESSORS == getattr(new, func).SUCCESSORS
        assert list(getattr(old, func).STEPS) == list(getattr(new, func).STEPS)


def test_call_return_labels_are_successors():
    class caller(Path):
        @step("call")
        def call(self, k):
            return Call(two_steps(x=0), "after")

        @step("after")
        def after(self, k):
            return DONE

    assert caller.SUCCESSORS["call"] == {"after"}


def test_one_version_file_named_through_a_symlink_is_the_same_version(tmp_path):
    f = tmp_path / "linked.py"
    f.write_text(LEGACY.replace('NAME = "legacy"', 'NAME = "linked"'))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "linked.py").symlink_to(f)
    assert load_version(str(f)) == load_version(str(tmp_path / "other" / "linked.py")) == "linked"
