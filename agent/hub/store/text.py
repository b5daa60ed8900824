"""Text compared as people compare names: case-insensitively, as Python's
``str.lower`` has it, on both databases; and text a database can be asked about."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from agent.hub.store.engine import LOWER


class LowerText(FunctionElement[str]):
    """``lower(text)`` as Python's ``str.lower``: the hub's own function on SQLite
    (whose ``lower()`` folds ASCII only), ``lower()`` elsewhere."""

    type = sa.String()
    inherit_cache = True


@compiles(LowerText)
def _lower(element: LowerText, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(LowerText, "sqlite")
def _lower_sqlite(element: LowerText, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{LOWER}({compiler.process(element.clauses, **kw)})"


def storable(text: str) -> bool:
    """Whether a database can be asked about ``text`` at all: PostgreSQL refuses NUL
    and text that is not UTF-8, and no name or thumbprint holds either."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text
