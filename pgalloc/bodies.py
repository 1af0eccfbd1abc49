"""What a step's body says about its control flow, read from its source with ``ast``.

``pgalloc.steps`` reads, when a ``Path`` class is created, the labels each step can
return (``returned_labels``) and the spinlock calls it makes (``lock_calls``);
``pgalloc.liveness`` reads the locals.  Both read through ``tree``.  A body this module
does not follow (no source, a label computed at run time) gives ``None``: the caller
then checks at run time, or assumes the worst.

This module imports nothing of the project.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

_FLOW = ("DONE", "BLOCKED")         # the non-label outcomes a step returns


class Unknown(Exception):
    """Something the reading does not follow."""


def tree(fn) -> ast.FunctionDef:
    """The ``ast`` of function ``fn`` (raises ``Unknown`` when its source cannot be read)."""
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as e:
        raise Unknown(str(e)) from None
    try:
        node = ast.parse(src).body[0]
    except SyntaxError as e:
        raise Unknown(str(e)) from None
    if not isinstance(node, ast.FunctionDef):
        raise Unknown("not a function")
    return node


def _own_nodes(node: ast.AST):
    """The nodes of a function body, not those of functions or lambdas nested in it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield child
        yield from _own_nodes(child)


def _written_out(node: ast.FunctionDef, e) -> set[str]:
    """The labels expression ``e`` can be: string constants, a choice between such, or a
    plain variable of the function only ever assigned such.  Raises ``Unknown``."""
    if isinstance(e, ast.Constant) and isinstance(e.value, str):
        return {e.value}
    if isinstance(e, ast.IfExp):
        return _written_out(node, e.body) | _written_out(node, e.orelse)
    if isinstance(e, ast.Name):
        values = [a.value for a in _own_nodes(node) if isinstance(a, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == e.id for t in a.targets)]
        stores = [n for n in _own_nodes(node) if isinstance(n, ast.Name) and n.id == e.id
                  and isinstance(n.ctx, ast.Store)]
        if values and len(values) == len(stores):
            return set().union(*(_written_out(node, v) for v in values))
    raise Unknown(f"computed label {ast.unparse(e)[:60]}")


def _returned(fn, node: ast.FunctionDef, e, seen: frozenset) -> set[str]:
    if isinstance(e, ast.Name) and e.id in _FLOW:
        return set()
    if isinstance(e, ast.IfExp):
        return _returned(fn, node, e.body, seen) | _returned(fn, node, e.orelse, seen)
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
        if e.func.id == "Call":         # Call(path, "label"): the label it resumes at
            ret = e.args[1] if len(e.args) > 1 else next((kw.value for kw in e.keywords if kw.arg == "ret"), None)
            if ret is None:
                raise Unknown(f"Call without a return label: {ast.unparse(e)[:60]}")
            return _written_out(node, ret)
        helper = getattr(fn, "__globals__", {}).get(e.func.id)
        if inspect.isfunction(helper):  # a module-level helper whose value is the label
            return _labels(helper, seen)
        raise Unknown(f"label from {e.func.id}()")
    return _written_out(node, e)


def _labels(fn, seen: frozenset = frozenset()) -> set[str]:
    fn = inspect.unwrap(fn)         # a body under a wrapping decorator: its helpers are in its own module
    if fn in seen:
        return set()
    node = tree(fn)
    out: set[str] = set()
    returns = [n for n in _own_nodes(node) if isinstance(n, ast.Return)]
    if not returns:
        raise Unknown("no return")
    for r in returns:
        if r.value is None:
            raise Unknown("a bare return")
        out |= _returned(fn, node, r.value, seen | {fn})
    return out


def returned_labels(fn) -> frozenset[str] | None:
    """Every label step body ``fn`` can return or resume at (``Call(path, label)``), through
    module-level helpers whose value it returns; ``None`` when that cannot be read.

    >>> from pgalloc.versions import v64
    >>> sorted(returned_labels(v64.page_table_free.xor_p))
    ['page_table_release_check; __free_page']
    """
    try:
        return frozenset(_labels(fn))
    except Unknown:
        return None


def lock_calls(fn) -> tuple[str | None, str | None]:
    """``(lock, unlock)``: ``"bh"`` or ``"plain"`` when body ``fn`` calls ``k.spin_lock`` /
    ``k.spin_unlock`` (with ``bh`` True or False), else ``None`` (also when unreadable)."""
    try:
        node = tree(fn)
    except Unknown:
        return None, None
    found = {"spin_lock": None, "spin_unlock": None}
    for n in _own_nodes(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in found:
            bh = n.args[1] if len(n.args) > 1 else next((kw.value for kw in n.keywords if kw.arg == "bh"), None)
            plain = isinstance(bh, ast.Constant) and bh.value is False
            found[n.func.attr] = "plain" if plain else "bh"
    return found["spin_lock"], found["spin_unlock"]
