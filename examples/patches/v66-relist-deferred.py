"""A patch to try the explorer on: v6.6 without the PageActive test in the frees' relist.

8211dad627981 keeps a page whose half went through ``pte_free_defer`` off
``pgtable_list`` (PageActive), so that the deferred half is not handed out again before
the RCU grace period that GUP-fast walkers rely on.  This file drops that test::

    s390emu explore --version examples/patches/v66-relist-deferred.py --max-ops 2

A version file starts from the version it patches (``from pgalloc.v66 import *``),
gives itself a NAME, and subclasses the functions it changes: a new step where the code
changes, and a ``REDIRECT`` where only the next step does (here the XOR of A|P, whose
body stays v6.4's, now goes to the new list step).  ``docs/patches.md`` is the guide.
"""

from pgalloc.v66 import *  # noqa: F401,F403 - everything as in v6.6 ...
from pgalloc import v66
from pgalloc.pgtable import PGTABLE_LIST
from pgalloc.steps import step

NAME = "v66-relist-deferred"


def _relist_or_unlist(self, k, tail: bool) -> str:
    """... but the page goes back on the list whenever its other half is allocated."""
    if self.mask & 0x03:
        k.list_add(self.page, self.mm + PGTABLE_LIST, tail=tail)
    else:
        k.list_del(self.page, init=True)
    return "spin_unlock_bh(&mm->context.lock)"


class page_table_free(v66.page_table_free):
    REDIRECT = {"atomic_xor_bits(A|P)": "if (mask & 0x03U) list_add else list_del_init"}

    @step("if (mask & 0x03U) list_add else list_del_init")
    def list_op(self, k):
        return _relist_or_unlist(self, k, tail=False)


class page_table_free_rcu(v66.page_table_free_rcu):
    REDIRECT = {"atomic_xor_bits(A|P)": "if (mask & 0x03U) list_add_tail else list_del_init"}

    @step("if (mask & 0x03U) list_add_tail else list_del_init")
    def list_op(self, k):
        return _relist_or_unlist(self, k, tail=True)
