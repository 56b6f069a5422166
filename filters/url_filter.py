"""datatrove's URL filter, made offline, quick to start and explicit about what matched.

Its decisions are datatrove's ``URLFilter``'s: the same lists (datatrove's bundled ones plus the manifest's
extras), the same checks in the same order (registered domain, full host name, whole URL, banned words,
soft-banned words, banned subwords), the same reasons. Three things differ:

- tldextract reads the public-suffix list it bundles (the plain filter fetches publicsuffix.org on its
  first URL);
- the bundled block lists (4.5M domains, 20k URLs) are parsed by datatrove's own parser once per machine
  and stored as a :class:`CompactSet` file, which every later task maps into memory in milliseconds
  (datatrove parses the 124 MB domain list in every task, 5-20 s, and holds ~400 MB of Python strings
  per task; the mapped file is one copy in the page cache for all of a node's tasks). The files live
  under huggingface_hub's assets folder (``HF_ASSETS_CACHE``, beside datatrove's own unpacked copy),
  named by the SHA-256 of datatrove's list archive and the file format, and are written to a temporary
  name and renamed into place, so concurrent tasks never read half a file (at worst two build it);
- a reject names what matched in its ``detail``: ``domain=<registered domain>``, ``subdomain=<host>``,
  ``url=<url>``, ``banned_word=<w>[,<w>...]``, ``soft_banned_word=<w>,<w>...``, ``banned_subword=<w>[,...]``.

Documents without a URL are kept: there is nothing to judge. A Wayback Machine address is judged by the
URL it wraps (:mod:`winnow.filters.archive_urls`), whatever reader made the document.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import tarfile
import tempfile
from collections.abc import Collection, Iterable
from functools import cache
from pathlib import Path

import numpy as np
import xxhash
from datatrove.data import Document
from datatrove.io import safely_create_file
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters import URLFilter
from datatrove.pipeline.filters.url_filter import get_list, normalize, normalizer
from datatrove.utils._import_utils import ASSETS_PATH
from huggingface_hub import cached_assets_path
from loguru import logger

from winnow.filters.archive_urls import original_url
from winnow.pipeline.manifest import UrlFilterConfig
from winnow.pipeline.outcomes import ErrorsAsRecords, OutcomeWriter, StageLayout

ARCHIVE = "url_filterblacklistsv0_3_0.tar.gz"  # datatrove's bundled domain and URL block lists
CACHE_FORMAT = "set1"  # part of the cache file names: bump when CompactSet's layout or its parsing changes
DETAIL_KEY = "url_filter_detail"  # set on a rejected document for its rejects writer, which pops it


class CompactSet:
    """An exact, read-only set of strings in one memory-mapped file.

    Layout (little-endian): magic, entry count, byte count; the entries' xxh64 hashes, sorted; the
    entries' start offsets (count + 1); the entries' UTF-8 bytes in hash order. Membership is a binary
    search over the hashes confirmed by comparing the bytes, so it answers exactly as a Python set of the
    same strings does. Picklable (it reopens its file).
    """

    MAGIC = b"WNSET001"
    HEADER = struct.Struct("<8sQQ")

    def __init__(self, path: str | Path) -> None:
        """Map ``path``; ValueError when it is not a complete CompactSet file."""
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < self.HEADER.size:
                raise ValueError(f"{self.path}: too short for a CompactSet")
            self._data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        magic, count, blob_bytes = self.HEADER.unpack_from(self._data)
        if magic != self.MAGIC or size != self.HEADER.size + 8 * (2 * count + 1) + blob_bytes:
            raise ValueError(f"{self.path}: not a complete CompactSet file")
        self._count = count
        self._hashes = np.frombuffer(self._data, dtype="<u8", count=count, offset=self.HEADER.size)
        self._offsets = np.frombuffer(self._data, dtype="<u8", count=count + 1, offset=self.HEADER.size + 8 * count)
        self._blob_start = self.HEADER.size + 8 * (2 * count + 1)

    @classmethod
    def write(cls, entries: Collection[str], path: str | Path) -> None:
        """Write ``entries`` (distinct strings) to ``path`` via a temporary file renamed into place."""
        encoded = [entry.encode("utf-8", "surrogatepass") for entry in entries]
        hashes = np.fromiter(map(xxhash.xxh64_intdigest, encoded), dtype="<u8", count=len(encoded))
        order = np.argsort(hashes, kind="stable")
        ordered = [encoded[i] for i in order.tolist()]
        offsets = np.zeros(len(ordered) + 1, dtype="<u8")
        np.cumsum(np.fromiter(map(len, ordered), dtype="<u8", count=len(ordered)), out=offsets[1:])
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(cls.HEADER.pack(cls.MAGIC, len(ordered), int(offsets[-1])))
                fh.write(hashes[order].tobytes())
                fh.write(offsets.tobytes())
                fh.writelines(ordered)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep other users' tasks out of a shared cache
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str):
            return False
        key = item.encode("utf-8", "surrogatepass")
        digest = np.uint64(xxhash.xxh64_intdigest(key))
        i = int(self._hashes.searchsorted(digest))
        while i < self._count and self._hashes[i] == digest:
            start, end = int(self._offsets[i]), int(self._offsets[i + 1])
            if self._data[self._blob_start + start : self._blob_start + end] == key:
                return True
            i += 1
        return False

    def __len__(self) -> int:
        return self._count

    def __reduce__(self) -> tuple[type[CompactSet], tuple[Path]]:
        return CompactSet, (self.path,)


def _unpacked_lists() -> str:
    """The folder where datatrove's block-list archive is unpacked (as datatrove's URLFilter does)."""
    folder = cached_assets_path(library_name="datatrove", namespace="filters", subfolder="url_filter")

    def unpack() -> None:
        with tarfile.open(os.path.join(ASSETS_PATH, ARCHIVE), "r:gz") as tar:
            tar.extractall(folder, filter="data")

    safely_create_file(os.path.join(folder, ARCHIVE), unpack)
    return str(folder)


@cache
def _archive_sha256() -> str:
    with open(os.path.join(ASSETS_PATH, ARCHIVE), "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def compact_list_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the CompactSet of bundled list ``name`` (``domains`` or ``urls``) lives (default: the assets cache)."""
    folder = (
        Path(cache_dir) if cache_dir is not None else cached_assets_path(library_name="winnow", namespace="url_filter")
    )
    return folder / f"{name}-{_archive_sha256()[:16]}-{CACHE_FORMAT}.set"


@cache
def integrated_list(name: str, cache_dir: str | Path | None = None) -> CompactSet | frozenset[str]:
    """datatrove's bundled block list ``name`` as a CompactSet, built on first use, then mapped (once per process).

    The entries are exactly those datatrove's URLFilter loads (its own ``get_list`` over the unpacked
    file). A damaged cache file is rebuilt; where none can be written (a read-only folder, a full disk)
    the list is used from memory, as datatrove would, with a warning."""
    path = compact_list_path(name, cache_dir)
    if path.exists():
        try:
            return CompactSet(path)
        except ValueError:
            logger.warning(f"url filter: {path} is damaged; rebuilding it")
    entries = get_list(_unpacked_lists(), name, set(), do_normalize=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        CompactSet.write(entries, path)
    except OSError as exc:
        logger.warning(f"url filter: cannot write the block-list cache {path} ({exc}); using the list in memory")
        return frozenset(entries)
    return CompactSet(path)


class _BothSets:
    """Membership in a shared list or in a filter's own extras, without copying the big one."""

    def __init__(self, shared: CompactSet | frozenset[str], own: set[str]) -> None:
        self.shared = shared
        self.own = own

    def __contains__(self, item: object) -> bool:
        return item in self.own or item in self.shared


def _words(words: Iterable[str]) -> str:
    return ",".join(sorted(words))


class _NamingURLFilter(URLFilter):
    """datatrove's URLFilter, offline, with compact lists, whose rejects say what matched."""

    def __init__(self, cache_dir: str | Path | None = None, **kwargs: object) -> None:
        """``cache_dir``: where the compact block lists live (default: huggingface_hub's assets folder)."""
        super().__init__(**kwargs)
        from tldextract import TLDExtract

        self.cache_dir = cache_dir
        self.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)

    def download_data(self) -> None:
        """Map the bundled domain and URL lists (built once per machine); read the word lists as datatrove does."""
        if self._downloaded or not self.use_integrated_lists:
            return
        self.block_listed_domains = _BothSets(integrated_list("domains", self.cache_dir), self.block_listed_domains)
        self.block_listed_url = _BothSets(integrated_list("urls", self.cache_dir), self.block_listed_url)
        self.banned_words = get_list(ASSETS_PATH, "banned_words.txt", self.banned_words)
        self.banned_subwords = get_list(ASSETS_PATH, "banned_subwords.txt", self.banned_subwords)
        self.soft_banned_words = get_list(ASSETS_PATH, "soft_banned_words.txt", self.soft_banned_words)
        for word in self.banned_subwords:
            self.banned_subwords_automaton.add_word(word, len(self.banned_subwords_automaton))
        self.banned_subwords_automaton.make_automaton()
        self._downloaded = True

    def judge(self, url: str) -> tuple[str, str] | None:
        """``(reason, detail)`` when ``url`` is to be dropped (datatrove's checks and reasons), else None."""
        self.download_data()
        info = self.tldextractor(url)
        if info.registered_domain in self.block_listed_domains:
            return "domain", f"domain={info.registered_domain}"
        if info.fqdn in self.block_listed_domains:
            return "subdomain", f"subdomain={info.fqdn}"
        if url in self.block_listed_url:
            return "url", f"url={url}"
        url_words = set(normalizer.split(url))
        if banned := url_words.intersection(self.banned_words):
            return "hard_blacklisted", f"banned_word={_words(banned)}"
        soft = url_words.intersection(self.soft_banned_words)
        if len(soft) >= self.soft_word_threshold:
            return "soft_blacklisted", f"soft_banned_word={_words(soft)}"
        normalized = normalize(url)
        if self.banned_subwords and next(self.banned_subwords_automaton.iter(normalized), False):
            matched = (word for word in self.banned_subwords if word and word in normalized)
            return "blacklisted_subword", f"banned_subword={_words(matched)}"
        return None

    def filter(self, document: Document) -> bool | tuple[bool, str]:
        url = document.metadata.get("url")
        if not url:
            return True
        verdict = self.judge(original_url(url))
        if verdict is None:
            return True
        document.metadata[DETAIL_KEY] = verdict[1]
        return False, verdict[0]


class OfflineURLFilter(ErrorsAsRecords, _NamingURLFilter):
    """The URL filter step: an exception on one document makes it an error record (see the module docstring)."""

    name = "😈 url filter"


class URLRejects(OutcomeWriter):
    """The URL filter's rejects writer: the match the filter noted on the document becomes the ``detail``."""

    def write(self, doc: Document, rank: int = 0, reason: str | None = None, detail: str | None = None) -> None:
        noted = doc.metadata.pop(DETAIL_KEY, None)
        super().write(doc, rank, reason, detail if detail is not None else noted)


def url_filter(config: UrlFilterConfig, layout: StageLayout) -> list[PipelineStep]:
    """The URL filter step (empty when disabled)."""
    if not config.enabled:
        return []
    return [OfflineURLFilter(exclusion_writer=URLRejects(layout, "url_filter"), **config.kwargs())]
