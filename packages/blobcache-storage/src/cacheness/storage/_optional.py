"""Optional dependencies: imported at first use, with an install hint when missing.

Heavy packages (numpy, blosc2, pandas, pyarrow, polars, boto3, psycopg) are never
imported by ``import cacheness`` or ``import cacheness.storage``. Code that needs one
calls :func:`import_optional` inside the function that uses it; type dispatch asks
:func:`is_loaded` first, so checking whether a dict is a DataFrame never imports pandas.

Example:
    >>> from cacheness.storage import import_optional, is_loaded
    >>> json = import_optional("json", extra="core")
    >>> json.dumps([1])
    '[1]'
    >>> is_loaded("json")
    True
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

from cacheness.storage.errors import MissingDependencyError


def install_hint(extra: str, distribution: str = "blobcache-storage") -> str:
    """Return the pip command that installs ``distribution`` with ``extra``.

    Example:
        >>> install_hint("s3")
        'pip install "blobcache-storage[s3]"'
    """
    return f'pip install "{distribution}[{extra}]"'


def import_optional(
    module: str,
    *,
    extra: str,
    distribution: str = "blobcache-storage",
    purpose: str | None = None,
) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming the extra.

    Args:
        module: dotted module name, e.g. ``"boto3"`` or ``"pyarrow.ipc"``.
        extra: the extra of ``distribution`` that installs it, e.g. ``"s3"``.
        distribution: the distribution whose extra it is.
        purpose: what needs it, for the message (e.g. ``"the s3 blob backend"``).

    Raises:
        MissingDependencyError: the module (or one it imports) is not installed.

    Example:
        >>> import_optional("no_such_module_xyz", extra="s3")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cacheness.storage.errors.MissingDependencyError: no_such_module_xyz is not installed...
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" (needed by {purpose})" if purpose else ""
        raise MissingDependencyError(
            f"{module} is not installed{what}; install it with: {install_hint(extra, distribution)}"
        ) from exc


def import_path(path: str) -> Any:
    """Return the object a ``"package.module:Name"`` path names, importing its module.

    The one resolver of every ``"module:Class"`` string: lazily registered backends,
    built-in handlers, handlers named in a configuration. Dots after the colon walk
    attributes (``"pkg.mod:Outer.Inner"``).

    Raises:
        ValueError: ``path`` is not ``"module:Name"``.
        ImportError: the module (or one it imports) cannot be imported.
        AttributeError: the module has no such name.

    Example:
        >>> import_path("collections:OrderedDict").__name__
        'OrderedDict'
        >>> import_path("json")
        Traceback (most recent call last):
        ...
        ValueError: 'json' is not a 'module:Name' import path
    """
    module_name, _, attribute = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not module_name or not attribute:
        raise ValueError(f"{path!r} is not a 'module:Name' import path")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def is_loaded(module: str) -> bool:
    """Return True when ``module`` has already been imported by someone.

    Type dispatch uses this before ``isinstance`` checks against optional types: an
    object cannot be a ``pandas.DataFrame`` if pandas was never imported.
    """
    return module in sys.modules
