"""Turning a manifest's sources into the concrete list of input files of a run.

Globs are expanded (sorted, so the file order — and hence task assignment and ids — is the same on
every run), Common Crawl ``warc.paths(.gz)`` listings are read and prefixed with ``listing_base``,
and fsspec URLs (``s3://``, ``https://``) pass through unchanged. Each input is described by path,
size and a checksum (sha256 for local files; the remote's ETag or size otherwise) for ``run.json``.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import fsspec

from pipeline.manifest import Manifest, WarcSource, is_remote


@dataclass(frozen=True)
class InputFile:
    """One input file of a source."""

    path: str
    source: str
    crawl: str | None
    size: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _expand(pattern: str) -> list[str]:
    if is_remote(pattern):
        fs, _, paths = fsspec.get_fs_token_paths(pattern)
        protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
        return sorted(p if "://" in p else f"{protocol}://{p}" for p in paths) if glob.has_magic(pattern) else [pattern]
    return sorted(glob.glob(pattern, recursive=True))


def _listing(source: WarcSource) -> list[str]:
    with fsspec.open(source.listing, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    base = source.listing_base.rstrip("/") + "/"
    return [line if "://" in line else base + line for line in raw.decode().split() if line.strip()]


def _size(path: str) -> int:
    try:
        fs, _, (resolved,) = fsspec.get_fs_token_paths(path)
        return int(fs.size(resolved) or 0)
    except (OSError, ValueError):
        return 0


def resolve_inputs(manifest: Manifest) -> list[InputFile]:
    """All input files of all sources, in a stable order, deduplicated per source."""
    files: list[InputFile] = []
    for source in manifest.sources:
        paths: list[str] = []
        for pattern in source.paths:
            paths.extend(_expand(pattern))
        if source.listing:
            paths.extend(_listing(source))
        paths = list(dict.fromkeys(paths))
        if source.limit:
            paths = paths[: source.limit]
        files.extend(InputFile(p, source.name, source.crawl, _size(p)) for p in paths)
    return files


def checksum(path: str) -> str:
    """``sha256:<hex>`` for local files; ``etag:<value>`` or ``size:<n>`` for remote ones."""
    if not is_remote(path):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        return f"sha256:{digest.hexdigest()}"
    fs, _, (resolved,) = fsspec.get_fs_token_paths(path)
    info = fs.info(resolved)
    etag = info.get("ETag") or info.get("etag")
    return f"etag:{str(etag).strip(chr(34))}" if etag else f"size:{info.get('size')}"
