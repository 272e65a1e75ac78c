"""What a string must be to be stored in an index (private).

Keys, metadata strings and object keys end up in SQL text columns and JSON documents:
they must encode as UTF-8 (no lone surrogates) and hold no NUL character. Filters apply
the same rule to their string operands, since no stored string can break it.

Example:
    >>> text_problem("exp_001"), text_problem("a\\x00b")
    (None, 'contains a NUL character')
    >>> text_problem("lone\\ud800")
    'is not valid Unicode text (it holds a lone surrogate)'
"""

from __future__ import annotations


def text_problem(value: str) -> str | None:
    """Return why ``value`` cannot be stored, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode text (it holds a lone surrogate)"
    return None
