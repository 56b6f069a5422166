"""WARC revisit records as documents: stubs that carry no payload, only the digest of the payload they repeat.

A crawler that finds a page unchanged writes a ``revisit`` record (profile ``identical-payload-digest``)
instead of the payload. The archive reader turns an HTML revisit into a *stub*: a document with no
text and ``meta.revisit = {"payload_digest", "refers_to_uri", "refers_to_date"}``. Stubs pass through
extraction and the heuristic filters untouched (:class:`PassRevisitStubs`) and are resolved by the
dedup stage, which records each as an exact duplicate of the response holding that payload (in this
run or in a released index). Without a dedup stage, extraction rejects them (reason ``revisit``).
"""

from __future__ import annotations

from datatrove.data import Document

IDENTICAL_PAYLOAD_PROFILE = "identical-payload-digest"


def is_revisit_stub(doc: Document) -> bool:
    """True for a document made from a revisit record."""
    meta = doc.metadata.get("meta")
    return isinstance(meta, dict) and isinstance(meta.get("revisit"), dict)


class PassRevisitStubs:
    """Mixin for datatrove filters placed first in the bases: revisit stubs are kept without being looked at."""

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if is_revisit_stub(doc):
            return True
        return super().filter(doc)  # type: ignore[misc]
