"""Writing WARC files with FastWARC: HTTP response records for HTML pages, one gzip member per record.

Used to build the embedded demo input and test fixtures (real WARC files, read back by the same
reader as Common Crawl's). Record ids are derived from the URL and an index, so the same pages give
the same files, and therefore the same document ids, every time.
"""

from __future__ import annotations

import gzip
import io
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from fastwarc.warc import WarcRecord, WarcRecordType

DEFAULT_DATE = "2024-05-20T12:00:00Z"
RECORD_TYPES = {
    "response": WarcRecordType.response,
    "request": WarcRecordType.request,
    "warcinfo": WarcRecordType.warcinfo,
    "resource": WarcRecordType.resource,
    "metadata": WarcRecordType.metadata,
}


def http_response(body: bytes, content_type: str = "text/html; charset=utf-8", status: int = 200) -> bytes:
    """An HTTP/1.1 response (status line, headers, body) as archived in a WARC response record."""
    reason = {200: "OK", 301: "Moved Permanently", 404: "Not Found", 500: "Internal Server Error"}.get(status, "OK")
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


def warc_record(
    url: str, block: bytes, record_type: str = "response", date: str = DEFAULT_DATE, index: int = 0
) -> bytes:
    """One uncompressed WARC record; ``block`` is the HTTP message for response/request records."""
    record = WarcRecord()
    record_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{url}#{index}#{record_type}")
    record.init_headers(RECORD_TYPES[record_type], record_urn=f"uuid:{record_id}".encode())
    record.headers["WARC-Target-URI"] = url
    record.headers["WARC-Date"] = date
    if record_type in ("response", "request"):
        record.headers["Content-Type"] = f"application/http; msgtype={record_type}"
    record.set_bytes_content(block)
    buffer = io.BytesIO()
    record.write(buffer)
    return buffer.getvalue()


def write_warc(path: str | os.PathLike[str], records: Iterable[bytes], compress: bool = True) -> Path:
    """Write records (each its own gzip member when ``compress``) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        for record in records:
            fh.write(gzip.compress(record, mtime=0) if compress else record)
    os.replace(tmp, path)
    return path
