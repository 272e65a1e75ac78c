"""cacheness uses blobcache-storage only through its public contract.

The contract is ``cacheness.storage.__all__`` and ``cacheness.storage.errors.__all__``:
what a pinned storage version promises. These tests read cacheness's source (AST, not
imports), so a new reach into a private module or around ``BlobStore`` fails here with
the file and line, before the lowest-storage CI job would find it the hard way.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import cacheness
import cacheness.storage
import cacheness.storage.errors

cli = pytest.importorskip("cacheness.storage.cli")  # the command line's extra (click, rich)

SOURCE = Path(cacheness.__file__).parent
PUBLIC = {
    "cacheness.storage": set(cacheness.storage.__all__),
    "cacheness.storage.errors": set(cacheness.storage.errors.__all__),
    # the storage command line, which cacheness's own extends (only cacheness/cli.py)
    "cacheness.storage.cli": set(cli.__all__),
}
# A BlobStore's backends are its business: the cache asks the store itself.
BACKEND_ATTRIBUTES = {"metadata", "blobs"}


def sources() -> list[Path]:
    found = sorted(path for path in SOURCE.rglob("*.py") if "storage" not in path.parts)
    assert len(found) > 20  # the walk found the package
    return found


def storage_imports(tree: ast.AST) -> Iterator[tuple[int, str, str | None]]:
    """(line, module, name) for every import of a storage module; name None for ``import``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cacheness":
                for alias in node.names:
                    if alias.name == "storage":
                        yield node.lineno, "cacheness.storage", None
            elif node.module.startswith("cacheness.storage"):
                for alias in node.names:
                    yield node.lineno, node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cacheness.storage"):
                    yield node.lineno, alias.name, None


def is_store(node: ast.expr) -> bool:
    """True for ``store``, ``self._store``, ``cache.store``...: a BlobStore by its name."""
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return name in ("store", "_store")


def test_the_contract_is_not_empty():
    assert {"BlobStore", "import_optional", "combine_filters"} <= PUBLIC["cacheness.storage"]
    assert "ConfigError" in PUBLIC["cacheness.storage.errors"]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_cacheness_imports_only_public_storage_names(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wrong = []
    for line, module, name in storage_imports(tree):
        if module not in PUBLIC:
            wrong.append(f"{path.name}:{line}: imports from {module}, which is not public")
        elif name is not None and name not in PUBLIC[module]:
            wrong.append(f"{path.name}:{line}: {module}.{name} is not in {module}.__all__")
    assert wrong == []


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_cacheness_never_names_a_private_storage_module(path):
    # Docstrings and doctests too, and dotted strings handed to importlib or mock.
    text = path.read_text(encoding="utf-8")
    private = [
        f"{path.name}:{text.count(chr(10), 0, match.start()) + 1}: {match.group()}"
        for match in re.finditer(r"cacheness\.storage\._\w+", text)
    ]
    assert private == []


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_cacheness_does_not_reach_through_a_blob_store(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    reaches = [
        f"{path.name}:{node.lineno}: .{node.attr} of a BlobStore"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in BACKEND_ATTRIBUTES
        and is_store(node.value)
    ]
    assert reaches == []


def test_the_checks_catch_what_they_are_for():
    source = (
        "from cacheness.storage._registry import blob_backends\n"
        "from cacheness.storage import BackendRegistry\n"
        "import cacheness.storage._hashing\n"
        "from cacheness.storage.errors import ConfigError\n"
        "lock = self._store.metadata.named_lock('x')\n"
    )
    tree = ast.parse(source)
    found = [
        (module, name)
        for _, module, name in storage_imports(tree)
        if module not in PUBLIC or (name is not None and name not in PUBLIC[module])
    ]
    assert found == [
        ("cacheness.storage._registry", "blob_backends"),
        ("cacheness.storage", "BackendRegistry"),
        ("cacheness.storage._hashing", None),
    ]
    assert [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in BACKEND_ATTRIBUTES
        if is_store(node.value)
    ] == ["metadata"]
