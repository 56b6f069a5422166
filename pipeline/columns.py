"""The dataset columns as plain names and type names: the one list ``schema.py`` builds its pyarrow
schemas from, and what readers that should not load pyarrow (``winnow inspect`` and ``sql``, declaring
the empty views of quiet stages) declare DuckDB columns from.

A type name is pyarrow's own (``str(pa.float32()) == "float"``), as ``stage.json`` records attributes.
"""

from __future__ import annotations

from collections.abc import Mapping

# name, type name, nullable
CORE: tuple[tuple[str, str, bool], ...] = (
    ("id", "string", False),
    ("text", "string", False),
    ("source", "string", False),
    ("url", "string", True),
    ("crawl", "string", True),
    ("language", "string", True),
    ("language_score", "float", True),
    ("synthetic_of", "string", True),
    ("style", "string", True),
    ("meta", "string", True),
)
OUTCOME: tuple[tuple[str, str, bool], ...] = (
    ("stage", "string", False),
    ("reason", "string", False),
    ("detail", "string", True),
)
DUCKDB_TYPES = {
    "string": "VARCHAR", "float": "FLOAT", "double": "DOUBLE", "bool": "BOOLEAN", "int32": "INTEGER", "int64": "BIGINT"
}  # fmt: skip


def duckdb_columns(attributes: Mapping[str, str], outcome: bool) -> list[tuple[str, str]]:
    """(name, DuckDB type) of a document dataset with ``attributes`` (name -> type name), or of its
    rejects/errors with ``outcome``; an attribute of a type not listed here raises ``KeyError``."""
    columns = [(name, DUCKDB_TYPES[kind]) for name, kind, _ in CORE]
    columns += [(name, DUCKDB_TYPES[kind]) for name, kind in attributes.items()]
    if outcome:
        columns += [(name, DUCKDB_TYPES[kind]) for name, kind, _ in OUTCOME]
    return columns
