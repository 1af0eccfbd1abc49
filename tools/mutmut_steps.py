"""mutmut 3, with the project's ``@step`` methods mutated too: ``python tools/mutmut_steps.py run ...``.

mutmut 3 leaves every decorated function alone (a decorator may have side effects when
the copies it makes for its trampoline are defined, docs/testing.md), and every step of
a kernel function in ``pgalloc`` is a method decorated with ``@step(label, ...)``: in
``pgalloc/versions/*`` nearly all the code.  ``@step`` only sets attributes on the
function it is given (``pgalloc.steps.step``), so here a method whose one decorator is
``@step(...)`` is mutated like an undecorated one, the decorator's arguments are left
alone as mutmut leaves all decorators, and only the trampoline (the method the class
sees) keeps the decorator: the original's and the mutants' copies are plain methods, so
that ``Path.__init_subclass__`` finds each label once.  The step machinery reads a
step's successors from its source (``pgalloc.bodies``), through the trampoline's
``__wrapped__`` to the original body.

Everything else is mutmut's own command line (``tools/mutation.py`` runs this instead
of ``python -m mutmut``).
"""

from __future__ import annotations

import sys

import libcst as cst
from mutmut.mutation import file_mutation as fm


def _is_step(node) -> bool:
    """A function whose only decorator is a call of ``step`` (``@step("label", ...)``)."""
    if not isinstance(node, cst.FunctionDef) or len(node.decorators) != 1:
        return False
    d = node.decorators[0].decorator
    return isinstance(d, cst.Call) and isinstance(d.func, cst.Name) and d.func.value == "step"


_skip = fm.MutationVisitor._skip_node_and_children


def _skip_node_and_children(self, node):
    if not _is_step(node):
        return _skip(self, node)
    # mutmut's own reasons to skip an undecorated function: a "pragma: no mutate" line,
    # a name it never mutates
    position = self.get_metadata(fm.PositionProvider, node, None)
    if position and position.start.line in self._ignored_node_lines:
        self.ignored_functions.add(node.name.value)
        return True
    return node.name.value in fm.NEVER_MUTATE_FUNCTION_NAMES


_arrange = fm.function_trampoline_arrangement


def _function_trampoline_arrangement(function, mutants, class_name):
    empty, nodes, assignments, names = _arrange(function, mutants, class_name)
    if _is_step(function):
        # nodes[0] is the trampoline; the copies after it lose the decorator
        nodes = [nodes[0]] + [n.with_changes(decorators=[]) if isinstance(n, cst.FunctionDef) else n
                              for n in nodes[1:]]
    return empty, nodes, assignments, names


fm.MutationVisitor._skip_node_and_children = _skip_node_and_children
fm.function_trampoline_arrangement = _function_trampoline_arrangement

if __name__ == "__main__":
    from mutmut.__main__ import cli

    sys.argv[0] = "mutmut"
    cli()
