"""Griffe extension for the docs: read skbnn's reST-flavoured docstrings as Markdown.

The docstrings follow scikit-learn's numpydoc dialect, written for reST readers, and mkdocstrings
renders them as Markdown. Two things would come out wrong: roles such as :class:`torch.Generator`
or :meth:`fit` (shown here as code), and a single * after a symbol (θ*, the MAP weights), which
Markdown reads as the start of emphasis (escaped here). Code spans and doctest lines are left as
they are.
"""

from __future__ import annotations

import re

import griffe

_CODE = re.compile(r"(``.*?``|`[^`]*`)", re.DOTALL)
_ROLE = re.compile(r":(?:class|meth|func|attr|mod|obj|data):`~?([^`]+)`")
_STAR = re.compile(r"(?<![\\*])\*(?!\*)")


def to_markdown(text: str) -> str:
    text = _ROLE.sub(r"`\1`", text)
    parts = _CODE.split(text)
    # Odd positions are the code spans the split kept.
    return "".join(part if i % 2 else _escape_stars(part) for i, part in enumerate(parts))


def _escape_stars(text: str) -> str:
    """Escape single stars, except on doctest lines (>>> and ...), which render as code."""
    lines = text.split("\n")
    return "\n".join(
        line if line.lstrip().startswith((">>>", "...")) else _STAR.sub(r"\\*", line)
        for line in lines
    )


class ReSTToMarkdown(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if not obj.is_alias and obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
