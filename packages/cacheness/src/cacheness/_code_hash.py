"""A fingerprint of a function's code, for ``@cached(code_hash=True)`` (private).

The fingerprint changes when what the function *does* changes, not when it is only
reformatted: the source is parsed with :mod:`ast`, docstrings and the function's own
decorators are dropped, and the dump of the tree (no line numbers, no comments, no
whitespace) is hashed. Functions without retrievable source (made by ``exec``, typed in
a REPL) are fingerprinted by their bytecode, constants and names instead: stable across
processes, but it changes with the Python version.

Only the function's own body counts: helpers it calls, globals it reads and the
libraries it uses do not (bump ``version=`` for those).

Example:
    >>> def area(r):
    ...     '''Area of a disc.'''
    ...     return 3.14159 * r * r
    >>> before = fingerprint(area)
    >>> def area(r):  # reformatted, no docstring: the same code
    ...     return 3.14159*r*r
    >>> fingerprint(area) == before, len(before)
    (True, 16)
    >>> def area(r):
    ...     return 3.1416 * r * r
    >>> fingerprint(area) == before
    False
"""

from __future__ import annotations

import ast
import inspect
import logging
import textwrap
from collections.abc import Callable
from types import CodeType
from typing import Any

import msgspec
import xxhash

__all__ = ["fingerprint"]

log = logging.getLogger(__name__)


def fingerprint(func: Callable[..., Any]) -> str:
    """Return 16 hex characters that change when ``func``'s normalised code changes."""
    func = inspect.unwrap(func)
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        log.debug("no source for %r: fingerprinting its bytecode", func)
        return _bytecode_fingerprint(func)
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:  # e.g. a lambda cut out of a longer expression
        log.debug("source of %r does not parse alone: fingerprinting its bytecode", func)
        return _bytecode_fingerprint(func)
    _Normaliser().visit(tree)
    if tree.body and isinstance(tree.body[0], _DEFINITIONS):
        tree.body[0].decorator_list = []
    return xxhash.xxh3_64_hexdigest(ast.dump(tree).encode())


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class _Normaliser(ast.NodeTransformer):
    """Drops docstrings (of the module, functions and classes) from a tree."""

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, (*_DEFINITIONS, ast.Module)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
        return super().generic_visit(node)


def _bytecode_fingerprint(func: Callable[..., Any]) -> str:
    code = getattr(func, "__code__", None)
    if not isinstance(code, CodeType):
        raise TypeError(
            f"code_hash=True needs a Python function, got {type(func).__name__}; "
            "use version= to invalidate its entries by hand"
        )
    doc = getattr(func, "__doc__", None)
    return xxhash.xxh3_64_hexdigest(msgspec.msgpack.encode(_code_parts(code, doc, top=True)))


def _code_parts(code: CodeType, doc: str | None, *, top: bool = False) -> list[Any]:
    consts = list(code.co_consts)
    if top and consts and consts[0] == doc:
        consts = consts[1:]  # the docstring's slot (None when there is none)
    return [
        code.co_code,
        list(code.co_names),
        list(code.co_varnames),
        list(code.co_freevars),
        list(code.co_cellvars),
        [_const(value) for value in consts],
    ]


def _const(value: Any) -> Any:
    if isinstance(value, CodeType):
        return _code_parts(value, None)
    if isinstance(value, frozenset):  # its repr order depends on PYTHONHASHSEED
        return sorted(_const(item) if isinstance(item, CodeType) else repr(item) for item in value)
    if isinstance(value, tuple):
        return [_const(item) for item in value]
    return repr(value)
