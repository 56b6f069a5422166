"""The one document table shape every stage reads and writes, and its mapping to datatrove Documents.

Core columns are fixed here; stages may add attribute columns (``score_<name>`` float32, boolean
flags) which later stages carry along untouched. Rejected and errored rows use the same columns plus
``stage``, ``reason`` and ``detail`` so that DuckDB can union them with the outputs.

Inside a datatrove pipeline a row travels as a :class:`datatrove.data.Document`: ``id`` and ``text``
are its own fields, every other column lives in ``doc.metadata`` under the column name, with
``meta`` as a dict (serialised to JSON on write) and attributes under ``attributes``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from datatrove.data import Document

from winnow.pipeline.columns import CORE, OUTCOME

CORE_FIELDS: tuple[pa.Field, ...] = tuple(pa.field(n, pa.type_for_alias(t), nullable=ok) for n, t, ok in CORE)
CORE_COLUMNS: tuple[str, ...] = tuple(f.name for f in CORE_FIELDS)
OUTCOME_FIELDS: tuple[pa.Field, ...] = tuple(pa.field(n, pa.type_for_alias(t), nullable=ok) for n, t, ok in OUTCOME)

ATTRIBUTE_NAME = re.compile(r"^(score_[a-z0-9_]+|[a-z][a-z0-9_]*)$")
ATTRIBUTE_TYPES = {"float32": pa.float32(), "bool": pa.bool_(), "int64": pa.int64(), "string": pa.string()}


def document_schema(attributes: Mapping[str, pa.DataType] | None = None) -> pa.Schema:
    """Schema of a stage's output: the core columns, then ``attributes`` in the order given."""
    fields = list(CORE_FIELDS)
    for name, dtype in (attributes or {}).items():
        if name in CORE_COLUMNS or not ATTRIBUTE_NAME.match(name):
            raise ValueError(f"invalid attribute column name {name!r}")
        fields.append(pa.field(name, dtype))
    return pa.schema(fields)


def outcome_schema(attributes: Mapping[str, pa.DataType] | None = None) -> pa.Schema:
    """Schema of a stage's ``rejects`` and ``errors`` datasets: document columns + stage, reason, detail."""
    return pa.schema(list(document_schema(attributes)) + list(OUTCOME_FIELDS))


def attributes_of(schema: pa.Schema) -> dict[str, pa.DataType]:
    """The attribute columns of a document schema (everything that is not a core or outcome column)."""
    skip = set(CORE_COLUMNS) | {f.name for f in OUTCOME_FIELDS}
    return {f.name: f.type for f in schema if f.name not in skip}


def doc_to_row(doc: Document, attribute_names: tuple[str, ...] = ()) -> dict[str, Any]:
    """Flatten a Document into a row of :func:`document_schema` (missing columns become null)."""
    md = doc.metadata
    meta = md.get("meta")
    attrs = md.get("attributes") or {}
    row: dict[str, Any] = {
        "id": doc.id,
        "text": doc.text if isinstance(doc.text, str) else "",
        "source": md.get("source") or "",
        "url": md.get("url"),
        "crawl": md.get("crawl"),
        "language": md.get("language"),
        "language_score": md.get("language_score"),
        "synthetic_of": md.get("synthetic_of"),
        "style": md.get("style"),
        "meta": json.dumps(meta, ensure_ascii=False, default=str) if meta else None,
    }
    for name in attribute_names:
        row[name] = attrs.get(name)
    return row


def row_to_doc(row: Mapping[str, Any], attribute_names: tuple[str, ...] = ()) -> Document:
    """Inverse of :func:`doc_to_row`."""
    meta = row.get("meta")
    metadata: dict[str, Any] = {
        "source": row["source"],
        "url": row.get("url"),
        "crawl": row.get("crawl"),
        "language": row.get("language"),
        "language_score": row.get("language_score"),
        "synthetic_of": row.get("synthetic_of"),
        "style": row.get("style"),
        "meta": json.loads(meta) if meta else {},
        "attributes": {name: row.get(name) for name in attribute_names},
    }
    return Document(text=row["text"], id=row["id"], metadata=metadata)
