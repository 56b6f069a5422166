"""Run folders on object stores (any fsspec URL: ``s3://bucket/prefix``, ``gs://``...): the store holds the run.

A manifest whose ``output`` is a URL runs in a local **working copy** (``work_dir``, by default under
``$WINNOW_WORK_DIR`` or ``~/.cache/winnow/work``), where stages read and write as on any run folder, and
the store at ``<output>/<name>`` holds the committed run, written through fsspec:

- a task uploads each unit's shards, then the unit's commit record (:mod:`winnow.pipeline.commits`),
  so what a killed task committed is in the store too;
- the runner syncs the working copy (:meth:`RunStore.sync`) at the run's start, after every phase and
  at the end: files written by DuckDB passes (not by a task's sinks) get a commit record of their own
  first (``logs/store/commits/sync/<n>.json``); then every file the store lacks (or holds at another
  size) is uploaded, data before commit records before the JSON records, ``run.json`` last;
- a release is a manifest of the run's committed objects, ``releases/latest.json`` moved by a
  conditional write (:meth:`RunStore.publish_release`);
- the refresh lock is a lease object with an expiry (:meth:`RunStore.take_lease`), since a store has
  no flock: created If-None-Match, a lapsed one taken over by If-Match on its ETag, renewed the same way.

No object is renamed: a file is part of the run on the store when a commit record there names it at
its size. :func:`pull_records` copies a store's records (everything but the Parquet data) into a
local folder with a ``store.json`` naming the store; the views of such a folder
(:func:`winnow.pipeline.funnel.connect`) read the committed Parquet objects in place, through DuckDB's
registered fsspec filesystem (no DuckDB extension is downloaded). Credentials come from the
environment or the standard configuration chain of the filesystem (AWS variables, ``~/.aws``); they
are never part of a URL, a record or a message winnow writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from winnow.pipeline.commits import SINK_SHARD, committed_files, file_record

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
MARKER = "store.json"  # in a folder of records pulled from a store: {"url": ...}
SYNC_RECORDS = "logs/store/commits/sync"


class StoreError(Exception):
    """The object store could not be read or written; the message names the store, never a credential."""


class LeaseHeld(StoreError):
    """Another holder's lease on the store has not expired (or was taken in the same instant)."""


# what boto and s3fs say when a conditional write's condition does not hold
REFUSED = ("PreconditionFailed", "pre-conditions you specified did not hold", "ConditionalRequestConflict")


def _refused(exc: Exception) -> bool:
    return isinstance(exc, FileExistsError) or any(text in str(exc) for text in REFUSED)


def is_url(location: str) -> bool:
    """Whether ``location`` is an fsspec URL other than a local ``file://`` one."""
    return bool(URL.match(location)) and not location.startswith(("file://", "local://"))


def default_work_dir(url: str) -> Path:
    """The local working copy of the run stored at ``url``."""
    root = Path(os.environ.get("WINNOW_WORK_DIR") or Path.home() / ".cache" / "winnow" / "work")
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return root / f"{name}-{hashlib.sha1(url.encode()).hexdigest()[:12]}"


class RunStore:
    """The store of one run: ``url`` is ``<output>/<name>``."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        import fsspec  # here, not at import: commands on local runs never need it

        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self._sent: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) this process uploaded

    def __reduce__(self) -> tuple[type[RunStore], tuple[str]]:
        return RunStore, (self.url,)

    def url_of(self, relative: str) -> str:
        return f"{self.url}/{relative}"

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def listing(self) -> dict[str, int]:
        """Relative path -> size of every object of the run."""
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise self._error("list", exc) from exc
        prefix = self.root.rstrip("/") + "/"
        return {
            name[len(prefix) :]: int(info.get("size") or 0) for name, info in found.items() if name.startswith(prefix)
        }

    def put(self, local: Path, relative: str) -> None:
        """Upload one file (one PUT or multipart upload: the object appears whole, or not at all)."""
        try:
            self.fs.put_file(str(local), self._path(relative))
        except Exception as exc:
            raise self._error(f"upload {relative} to", exc) from exc

    def remove(self, relative: str) -> None:
        """Delete an object or every object under a prefix (a phase that reruns from scratch)."""
        try:
            if self.fs.exists(self._path(relative)):
                self.fs.rm(self._path(relative), recursive=True)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._error(f"remove {relative} from", exc) from exc

    def _error(self, what: str, exc: Exception) -> StoreError:
        return StoreError(f"cannot {what} the object store {self.url}: {type(exc).__name__}: {exc}")

    def sync(self, run_dir: Path) -> int:
        """Make the store hold every file of the run folder that is part of the run; returns the uploads.
        Records DuckDB-written Parquet files (those no commit record names yet) in a sync record first."""
        run_dir = Path(run_dir)
        committed = committed_files(run_dir)
        loose = [p for p in _run_files(run_dir) if p.suffix == ".parquet" and not SINK_SHARD.search(p.name)]
        fresh = [p for p in loose if _changed(p, run_dir, committed)]
        if fresh:
            folder = run_dir / SYNC_RECORDS
            folder.mkdir(parents=True, exist_ok=True)
            number = len(list(folder.glob("*.json"))) + 1
            record = {"unit": f"sync-{number:05d}", "files": [file_record(p, run_dir) for p in fresh]}
            tmp = folder / f".{number:05d}.json.tmp"
            tmp.write_text(json.dumps(record))
            os.replace(tmp, folder / f"{number:05d}.json")
            committed = committed_files(run_dir)
        present = self.listing()
        uploads = 0
        for path in sorted(_run_files(run_dir, committed), key=lambda p: _upload_order(p, run_dir)):
            relative = path.relative_to(run_dir).as_posix()
            stat = path.stat()
            mutable = path.suffix in (".json", ".jsonl", ".log") and "/commits/" not in relative
            if present.get(relative) == stat.st_size and (
                not mutable or self._sent.get(relative) == (stat.st_size, stat.st_mtime_ns)
            ):
                continue  # in the store at its size; a record rewritten in place: unchanged since sent
            self.put(path, relative)
            self._sent[relative] = (stat.st_size, stat.st_mtime_ns)
            uploads += 1
        return uploads

    def publish_release(self, run_dir: Path, version: str, manifest: dict[str, Any], sources: list[Path]) -> bool:
        """Publish release ``version`` on the store as a manifest of the run's committed objects (its data
        shards and dedup index, never copied) and move ``releases/latest.json`` to it by a conditional write;
        returns False when ``latest`` already names it. The manifest is written only if absent (If-None-Match),
        ``latest`` only if unchanged since read (If-Match on its ETag, or If-None-Match for the first), so of
        two publishers one wins and the other gets a StoreError. ``sources``: the run's files the release's
        shards were made from. S3 only (the conditions are S3's)."""
        committed = committed_files(run_dir)
        shards = [_relative_to(Path(run_dir), source) for source in sources]
        index = sorted(p for p in committed if p.startswith(("stages/dedup/index/", "stages/dedup/clusters/")))
        stored = {k: v for k, v in manifest.items() if k not in ("shards", "dedup_indexes")}
        stored["shards"] = [committed[path] for path in shards]
        stored["dedup_index"] = [committed[path] for path in index]
        path = f"releases/{version}/_manifest.json"
        latest = self._read_latest()
        if latest is not None and latest[0].get("version") == version:
            return False
        try:
            if not self.fs.exists(self._path(path)):
                self.fs.pipe_file(self._path(path), json.dumps(stored, indent=1).encode(), mode="create")
            pointer = json.dumps({"version": version, "manifest": path}).encode()
            if latest is None:
                self.fs.pipe_file(self._path("releases/latest.json"), pointer, mode="create")
            else:
                self.fs.pipe_file(self._path("releases/latest.json"), pointer, IfMatch=latest[1])
        except Exception as exc:
            if _refused(exc):
                moved = f"{self.url}: another publisher moved releases/latest first; rerun to publish"
                raise StoreError(moved) from exc
            raise self._error(f"publish release {version} to", exc) from exc
        return True

    def take_lease(self, relative: str, holder: str, ttl_s: float) -> str:
        """Take the lease object ``relative`` for ``ttl_s`` seconds; returns its ETag (to renew or release it).
        Created If-None-Match; one that has expired (or was released) is taken over by If-Match on the ETag
        read before its content, so of two takers one wins; LeaseHeld names the live holder. S3 only."""
        path = self._path(relative)
        body = json.dumps({"holder": holder, "expires_at": time.time() + ttl_s}).encode()
        try:
            self.fs.invalidate_cache(path)
            etag = self.fs.info(path)["ETag"]
            current = json.loads(self.fs.cat_file(path))  # as new as the ETag or newer: If-Match then fails
        except FileNotFoundError:
            etag, current = None, None
        except Exception as exc:
            raise self._error(f"read {relative} from", exc) from exc
        if current is not None and current.get("expires_at", 0) > time.time():
            until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(current["expires_at"]))
            raise LeaseHeld(f"{self.url}/{relative} is held by {current.get('holder')} until {until}")
        return self._put_lease(relative, body, etag, f"taken by another holder as {self.url}/{relative} lapsed")

    def renew_lease(self, relative: str, etag: str, holder: str, ttl_s: float) -> str:
        """Extend a lease this process holds (If-Match on its ETag); returns the new ETag. LeaseHeld if it was
        taken over meanwhile."""
        body = json.dumps({"holder": holder, "expires_at": time.time() + ttl_s}).encode()
        return self._put_lease(relative, body, etag, f"{self.url}/{relative} was taken over after it lapsed")

    def release_lease(self, relative: str, etag: str) -> None:
        """End a lease this process holds: rewritten as expired (If-Match), so the next taker needs no wait.
        A lease already taken over is left to its new holder."""
        body = json.dumps({"holder": None, "expires_at": 0}).encode()
        try:
            self._put_lease(relative, body, etag, "taken over")
        except LeaseHeld:
            return

    def _put_lease(self, relative: str, body: bytes, etag: str | None, lost: str) -> str:
        path = self._path(relative)
        try:
            if etag is None:
                answer = self.fs.pipe_file(path, body, mode="create")
            else:
                answer = self.fs.pipe_file(path, body, IfMatch=etag)
        except Exception as exc:
            if _refused(exc):
                raise LeaseHeld(lost) from exc
            raise self._error(f"write {relative} to", exc) from exc
        return answer["ETag"]

    def _read_latest(self) -> tuple[dict[str, Any], str] | None:
        """(``releases/latest.json``, its ETag), or None before the first release. The ETag is read first: a
        content newer than it makes the If-Match fail, where an ETag newer than the content would let this
        publisher overwrite a move it never saw."""
        path = self._path("releases/latest.json")
        try:
            self.fs.invalidate_cache(path)
            etag = self.fs.info(path)["ETag"]
            return json.loads(self.fs.cat_file(path)), etag
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._error("read releases/latest.json from", exc) from exc


def _relative_to(run_dir: Path, path: Path) -> str:
    return path.resolve().relative_to(run_dir.resolve()).as_posix()


def _changed(path: Path, run_dir: Path, committed: dict[str, dict[str, Any]]) -> bool:
    entry = committed.get(path.relative_to(run_dir).as_posix())
    return entry is None or entry["bytes"] != path.stat().st_size


def _upload_order(path: Path, run_dir: Path) -> tuple[int, str]:
    """Data first, then commit records, then the other records, run.json last."""
    relative = path.relative_to(run_dir).as_posix()
    if relative == "run.json":
        rank = 3
    elif "/commits/" in relative:
        rank = 1
    elif path.suffix == ".json":
        rank = 2
    else:
        rank = 0
    return rank, relative


def _run_files(run_dir: Path, committed: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """The files of a run folder that are part of the run: not hidden, not scratch (``tmp/``), not releases
    (local hard links), and, with ``committed``, a sink shard only when a commit record names it."""
    found = []
    for path in run_dir.rglob("*"):
        relative = path.relative_to(run_dir)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if relative.parts[0] in ("releases", "batches") or "tmp" in relative.parts[:-1]:
            continue
        if committed is not None and SINK_SHARD.search(path.name) and relative.as_posix() not in committed:
            continue
        found.append(path)
    return found


def pull_records(url: str, folder: Path) -> Path:
    """Copy the records of the run stored at ``url`` (JSON, logs, commit records; no Parquet) into
    ``folder``, with a ``store.json`` naming the store; returns ``folder``. FileNotFoundError when no run
    is stored there."""
    store = RunStore(url)
    listing = store.listing()
    if "run.json" not in listing:
        raise FileNotFoundError(f"{url} holds no winnow run (no run.json)")
    for relative in sorted(listing):
        if relative.endswith(".parquet"):
            continue
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            store.fs.get_file(store._path(relative), str(target))
        except Exception as exc:
            raise store._error(f"read {relative} from", exc) from exc
    (folder / MARKER).write_text(json.dumps({"url": store.url}))
    return folder


def store_of(folder: Path) -> RunStore | None:
    """The store a folder of pulled records came from (None for a run folder of its own)."""
    marker = Path(folder) / MARKER
    return RunStore(json.loads(marker.read_text())["url"]) if marker.exists() else None


def committed_objects(folder: Path, store: RunStore) -> list[str]:
    """Relative paths of the Parquet objects of a pulled run that a commit record names at their size."""
    present = store.listing()
    committed = committed_files(folder)
    return sorted(p for p, e in committed.items() if p.endswith(".parquet") and present.get(p) == e["bytes"])
