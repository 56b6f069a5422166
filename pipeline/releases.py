"""Releases: numbered, immutable snapshots of a corpus under ``<root>/releases/``, and the ``latest`` pointer.

A release folder holds the shards users train on (``data/*.parquet``), the dedup indexes that later
refreshes deduplicate against (``dedup/<version>/index`` with that run's ``clusters``), and
``_manifest.json`` (shards with rows, bytes and SHA-256, the inputs it covers, its parent release).
Files are hard links to the run's outputs (copies across file systems): winnow never rewrites a file
in place, so a later run that wipes its stage folders leaves the release's files intact.

Publishing is crash-safe: the new release is assembled in ``releases/.tmp-<version>``, its manifest
written last, the folder renamed to ``releases/<version>``, and then ``latest`` (a relative symlink) is
replaced by ``os.replace`` of a new link. A crash at any point leaves the previous release complete and
``latest`` pointing at it (or at the new one, complete). Leftover ``.tmp-*`` folders are removed by the
next publish, which holds ``releases/.lock`` while it works.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from winnow.mixers.tokens import file_sha256
from winnow.pipeline.commits import committed_files, visible_parquet
from winnow.pipeline.json_records import read_json, write_json

VERSION = re.compile(r"^v(\d{4,})$")


class ReleaseError(Exception):
    """A release cannot be read or published; the message names the folder."""


@dataclass(frozen=True)
class Release:
    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def shards(self) -> list[Path]:
        return [self.path / s["path"] for s in self.manifest["shards"]]

    @property
    def dedup_indexes(self) -> list[Path]:
        return [self.path / p for p in self.manifest.get("dedup_indexes", [])]


@dataclass(frozen=True)
class NewShard:
    """A file to release: where it is now, and its known SHA-256 (None: computed while publishing)."""

    source: Path
    sha256: str | None = None


def releases_dir(root: Path) -> Path:
    return Path(root) / "releases"


def read_release(folder: Path) -> Release:
    manifest = read_json(folder / "_manifest.json")
    if manifest is None:
        raise ReleaseError(f"{folder}: no _manifest.json; not a complete release")
    return Release(folder.name, folder, manifest)


def latest(root: Path) -> Release | None:
    """The release ``releases/latest`` points at; None before the first publish."""
    link = releases_dir(root) / "latest"
    if link.is_symlink():
        return read_release(releases_dir(root) / os.readlink(link))
    if link.is_dir():  # a copy of the folder that dereferenced the link: the release it named
        return read_release(releases_dir(root) / read_release(link).manifest["version"])
    return None


def versions(root: Path) -> list[str]:
    """Complete releases, oldest first."""
    folder = releases_dir(root)
    found = [p.name for p in folder.iterdir() if VERSION.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda v: int(VERSION.match(v).group(1)))  # type: ignore[union-attr]


def next_version(root: Path) -> str:
    done = versions(root)
    return f"v{int(VERSION.match(done[-1]).group(1)) + 1 if done else 1:04d}"  # type: ignore[union-attr]


@contextlib.contextmanager
def publish_lock(root: Path) -> Iterator[None]:
    """Hold ``releases/.lock`` (one publisher per root at a time; blocks until it is free)."""
    folder = releases_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-link ``source`` at ``target`` (copy when they are on different file systems)."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def publish(
    root: Path,
    content_key: str,
    shards: list[NewShard],
    dedup: tuple[Path, Path | None] | None,
    record: dict[str, Any],
    parent: Release | None = None,
) -> tuple[Release, bool]:
    """Publish a release and point ``latest`` at it; returns (release, whether it is new).

    ``content_key`` identifies the content: when ``latest`` already has it, nothing is published (a rerun
    is a no-op). ``shards`` are this publish's new files, named ``<version>-<name>`` in the release;
    a ``parent``'s shards and dedup indexes are carried over too (a refresh adds to its parent). ``dedup``
    is this content's dedup index folder and its clusters folder (or None). ``record`` is merged into the
    release's ``_manifest.json`` (inputs, run, stage fingerprints...).
    """
    folder = releases_dir(root)
    with publish_lock(root):
        previous = latest(root)
        if previous is not None and previous.manifest.get("content_key") == content_key:
            return previous, False
        for stale in [*folder.glob(".tmp-*"), *folder.glob(".latest-*")]:  # from a publish that was killed
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
        done = versions(root)
        if done and (previous is None or done[-1] != previous.version):
            newest = read_release(folder / done[-1])  # renamed into place, then killed before `latest` moved
            if newest.manifest.get("content_key") == content_key:
                _point_latest(folder, newest.version)
                return newest, True
        version = next_version(root)
        tmp = folder / f".tmp-{version}"
        entries: list[dict[str, Any]] = []
        indexes: list[str] = []
        if parent is not None:
            for entry in parent.manifest["shards"]:
                link_or_copy(parent.path / entry["path"], tmp / entry["path"])
                entries.append(entry)
            for index in parent.manifest.get("dedup_indexes", []):
                origin = Path(index).parent  # dedup/<version>: its index and clusters
                shutil.copytree(parent.path / origin, tmp / origin, copy_function=link_or_copy, dirs_exist_ok=True)
                indexes.append(index)
        for shard in shards:
            name = f"data/{version}-{shard.source.name}"
            link_or_copy(shard.source, tmp / name)
            rows = pq.ParquetFile(tmp / name).metadata.num_rows
            sha = shard.sha256 or file_sha256(tmp / name)
            entries.append({"path": name, "rows": rows, "bytes": (tmp / name).stat().st_size, "sha256": sha})
        if dedup is not None:
            index, clusters = dedup
            shutil.copytree(index, tmp / "dedup" / version / "index", copy_function=link_or_copy)
            if clusters is not None and clusters.is_dir():
                shutil.copytree(clusters, tmp / "dedup" / version / "clusters", copy_function=link_or_copy)
            indexes.append(f"dedup/{version}/index")
        manifest = {
            "version": version,
            "created_at": datetime.now(UTC).isoformat(),
            "parent": parent.version if parent else None,
            "previous": previous.version if previous else None,
            "content_key": content_key,
            "rows": sum(e["rows"] for e in entries),
            "shards": entries,
            "dedup_indexes": indexes,
            **record,
        }
        write_json(tmp / "_manifest.json", manifest)
        os.rename(tmp, folder / version)
        _point_latest(folder, version)
        return read_release(folder / version), True


def _point_latest(folder: Path, version: str) -> None:
    """Replace the ``latest`` symlink atomically (a new link renamed over the old one)."""
    pointer = folder / f".latest-{version}"
    pointer.unlink(missing_ok=True)
    os.symlink(version, pointer)
    link = folder / "latest"
    if link.is_dir() and not link.is_symlink():  # a copied folder turned the link into a directory
        shutil.rmtree(link)
    os.replace(pointer, link)


def verify(release: Release) -> list[str]:
    """Problems of a release: missing shards, or shards whose size or SHA-256 differs from its manifest."""
    problems = []
    for entry in release.manifest["shards"]:
        path = release.path / entry["path"]
        if not path.exists():
            problems.append(f"{entry['path']}: missing")
        elif path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: content differs from _manifest.json")
    return problems


def run_contents(stages: list[str], run_dir: Path) -> tuple[list[NewShard], tuple[Path, Path | None] | None]:
    """What a finished run releases: the mix's ``final/`` shards when it has a mix stage, else the last
    stage's data shards; and its dedup index (with the clusters that say what it removed) if it deduplicated.
    ``stages``: the run's enabled stages in flow order."""
    if "mix" in stages:
        final = read_json(run_dir / "final" / "_manifest.json") or {}
        known = {Path(s["path"]).name: s.get("sha256") for s in final.get("shards", [])}
        paths = sorted((run_dir / "final").glob("*.parquet"))
        shards = [NewShard(p, known.get(p.name)) for p in paths]
    else:
        committed = committed_files(run_dir)
        data = visible_parquet(run_dir / "stages" / stages[-1] / "data", run_dir, committed)
        shards = [NewShard(p, committed.get(f"stages/{stages[-1]}/data/{p.name}", {}).get("sha256")) for p in data]
    dedup_dir = run_dir / "stages" / "dedup"
    dedup = (dedup_dir / "index", dedup_dir / "clusters") if "dedup" in stages else None
    return shards, dedup
