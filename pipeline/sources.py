"""Turning a manifest's sources into the concrete list of input files of a run.

Globs are expanded (sorted, so the file order — and hence task assignment and ids — is the same on
every run), Common Crawl ``warc.paths(.gz)`` listings are read and prefixed with ``listing_base``,
and fsspec URLs (``s3://``, ``https://``) pass through unchanged. Each input is described by path,
size, version (mtime or ETag) and a checksum (sha256 for local files, the ETag for remote ones) for
``run.json``. An input that cannot be reached is still listed (size 0); its reader records the error.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import fsspec

from winnow.pipeline.manifest import Manifest, WarcSource, is_remote


@dataclass(frozen=True)
class InputFile:
    """One input file of a source."""

    path: str
    source: str
    crawl: str | None
    size: int  # 0 when the input cannot be reached (the reader then records it as an error)
    version: str | None = None  # "mtime:…" (local) or "etag:…" (remote): detects a rewrite in place
    checksum: str | None = None  # when already known (a refresh checksums new inputs to compare them)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _expand(pattern: str) -> list[str]:
    if is_remote(pattern):
        fs, _, paths = fsspec.get_fs_token_paths(pattern)
        protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
        return sorted(p if "://" in p else f"{protocol}://{p}" for p in paths) if glob.has_magic(pattern) else [pattern]
    return sorted(glob.glob(pattern, recursive=True))


def _listing(source: WarcSource) -> list[str]:
    assert source.listing is not None
    with fsspec.open(source.listing, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    base = source.listing_base.rstrip("/") + "/"
    return [line if "://" in line else base + line for line in raw.decode().split() if line.strip()]


def _describe(path: str) -> tuple[int, str | None]:
    """(size, version) of an input from one metadata call; (0, None) if it cannot be reached."""
    try:
        fs, _, (resolved,) = fsspec.get_fs_token_paths(path)
        info = fs.info(resolved)
    except (OSError, ValueError):
        return 0, None
    for key, label in (("mtime", "mtime"), ("ETag", "etag"), ("etag", "etag"), ("LastModified", "modified")):
        if info.get(key) is not None:
            return int(info.get("size") or 0), f"{label}:{str(info[key]).strip(chr(34))}"
    return int(info.get("size") or 0), None


def resolve_inputs(manifest: Manifest) -> list[InputFile]:
    """All input files of all sources, in a stable order, deduplicated per source."""
    files: list[InputFile] = []
    for source in manifest.sources:
        paths: list[str] = []
        for pattern in source.paths:
            paths.extend(_expand(pattern))
        if isinstance(source, WarcSource) and source.listing:
            paths.extend(_listing(source))
        paths = list(dict.fromkeys(paths))
        if source.limit:
            paths = paths[: source.limit]
        files.extend(InputFile(p, source.name, source.crawl, *_describe(p)) for p in paths)
    return files


def checksum(item: InputFile) -> str | None:
    """``sha256:<hex>`` of a local file; ``etag:<value>`` of a remote one (reading it all is the
    readers' job); None when the input cannot be read or has no ETag."""
    if is_remote(item.path):
        return item.version if item.version and item.version.startswith("etag:") else None
    digest = hashlib.sha256()
    try:
        with open(item.path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return f"sha256:{digest.hexdigest()}"
