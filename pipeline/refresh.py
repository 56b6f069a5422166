"""Scheduled refresh: process only the inputs no release covers yet, and publish the next release.

The ledger is the ``inputs`` list of the latest release's ``_manifest.json`` (path, size, version,
checksum of every input it covers), so the ledger and the release change together, atomically. A
refresh

1. takes ``<root>/refresh.lock`` (``flock``; a second refresh of the same root exits at once) and, for a
   run stored on an object store, the lease object ``<store>/refresh.lease`` (:func:`store_lease`: a
   second refresher anywhere exits at once while it is live; one left by a killed refresher lapses after
   ``WINNOW_REFRESH_LEASE_S`` seconds, default :data:`LEASE_S`, and is then taken over);
2. discovers the manifest's inputs (globs, object-store prefixes, a Common Crawl listing) and keeps
   those the ledger does not cover: a known path with the same size and version is covered without
   reading it; otherwise its checksum decides (same content at a new path or rewritten in place);
3. records the batch in ``<root>/refresh.json`` before running it, so a refresh that was killed
   resumes the same batch;
4. runs the manifest on the batch alone in ``<root>/batches/<id>/``, deduplicating against the dedup
   indexes the latest release carries (its documents are kept, the batch's duplicates of them are
   rejected);
5. publishes a release holding the latest release's shards and indexes plus the batch's, with the
   ledger extended by the batch's inputs, and clears the batch record.

``<root>`` is the manifest's run folder (``<output>/<name>``); a `winnow run` of the same manifest
publishes full releases there, which a later refresh builds on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loguru import logger

from winnow.pipeline.json_records import read_json, write_json
from winnow.pipeline.manifest import Manifest, ManifestError
from winnow.pipeline.preflight import preflight
from winnow.pipeline.releases import Release, latest, next_version, publish, read_release, releases_dir, run_contents
from winnow.pipeline.runner import Runner, RunResult, fingerprint
from winnow.pipeline.sources import InputFile, checksum, resolve_inputs
from winnow.pipeline.store import LeaseHeld, RunStore

LEASE = "refresh.lease"
LEASE_S = 300.0  # renewed every third of it while the refresh runs


class RefreshBusy(Exception):
    """Another refresh of the same root holds the lock; the message says which process."""


@dataclass
class RefreshResult:
    root: Path
    inputs: int  # inputs the manifest names now
    new: list[InputFile]  # those the refresh processed (the batch)
    release: Release | None  # latest after the refresh
    released_now: bool
    run: RunResult | None = None
    resumed: bool = False  # the batch of an interrupted refresh was resumed


@contextlib.contextmanager
def refresh_lock(root: Path) -> Iterator[None]:
    """Hold ``<root>/refresh.lock`` for the refresh; raises RefreshBusy at once if another process holds it."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "refresh.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown process"
            raise RefreshBusy(f"another refresh of {root} is running ({holder}); this one stops") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lease_seconds() -> float:
    return float(os.environ.get("WINNOW_REFRESH_LEASE_S") or LEASE_S)


@contextlib.contextmanager
def store_lease(store: RunStore) -> Iterator[None]:
    """Hold the refresh lease on ``store`` (see :meth:`RunStore.take_lease`) for the refresh, renewed by a
    thread every third of its time; raises RefreshBusy at once while another holder's lease is live."""
    ttl = lease_seconds()
    holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
    try:
        etag = store.take_lease(LEASE, holder, ttl)
    except LeaseHeld as exc:
        raise RefreshBusy(f"another refresh is running: {exc}; this one stops") from None
    done = threading.Event()
    held = [etag]

    def renew() -> None:
        while not done.wait(ttl / 3):
            try:
                held[0] = store.renew_lease(LEASE, held[0], holder, ttl)
            except Exception as exc:  # lost or unreachable: the conditional publish still stops a second winner
                logger.warning(f"the refresh lease could not be renewed: {exc}")
                return

    renewer = threading.Thread(target=renew, name="refresh-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()
        store.release_lease(LEASE, held[0])


def uncovered(inputs: list[InputFile], ledger: list[dict[str, Any]]) -> list[InputFile]:
    """The inputs the ledger does not cover (see the module docstring for the rule), with the checksums
    computed to decide (the batch's run reuses them instead of reading each file again)."""
    by_path = {r["path"]: r for r in ledger}
    sums = {r["checksum"] for r in ledger if r.get("checksum")}
    new = []
    for item in inputs:
        known = by_path.get(item.path)
        if known and known.get("size") == item.size and known.get("version") == item.version:
            continue
        digest = checksum(item)
        if digest is None or digest not in sums:
            new.append(replace(item, checksum=digest))
    return new


def check_refreshable(manifest: Manifest) -> None:
    """Raise ManifestError for a manifest a refresh cannot run (one with a mix stage)."""
    if manifest.stages.mix is not None:
        raise ManifestError(
            "stages.mix: a refresh appends new documents to the latest release, and the mix reweights a whole "
            "corpus; refresh without the mix stage (--set stages.mix=null) and run the mix over the release"
        )


@dataclass
class Batch:
    """The inputs one refresh processes, and the release they are added to (None: the first release)."""

    id: str
    inputs: list[InputFile]
    base: str | None
    resumed: bool  # the pending batch of an interrupted refresh


def next_batch(manifest: Manifest) -> tuple[list[InputFile], Batch | None]:
    """(the inputs the manifest names, the batch the next refresh processes: the pending one, else the
    inputs the latest release does not cover; None when there is nothing new). Reads only."""
    root = manifest.run_dir
    named = resolve_inputs(manifest)
    pending = (read_json(root / "refresh.json") or {}).get("pending")
    if pending:
        return named, Batch(pending["batch"], [InputFile(**r) for r in pending["inputs"]], pending["base"], True)
    current = latest(root)
    new = uncovered(named, current.manifest.get("inputs", []) if current else [])
    if not new:
        return named, None
    return named, Batch(next_version(root), new, current.version if current else None, False)


def refresh(
    manifest: Manifest, progress: bool = True, verbose: bool = False, command: str | None = None
) -> RefreshResult:
    """Process the inputs no release covers and publish the next release (see the module docstring).

    Raises RefreshBusy when another refresh holds the lock, ManifestError for a manifest a refresh cannot
    run, and the runner's StageFailed when the batch does not complete (a rerun resumes it).
    """
    check_refreshable(manifest)
    root = manifest.run_dir
    on_store = store_lease(RunStore(manifest.store_url)) if manifest.store_url else contextlib.nullcontext()
    with refresh_lock(root), on_store:
        named, batch = next_batch(manifest)
        if batch is None:
            return RefreshResult(root, len(named), [], latest(root), False)
        state_path = root / "refresh.json"
        if not batch.resumed:
            pending = {"batch": batch.id, "base": batch.base, "inputs": [i.as_dict() for i in batch.inputs]}
            write_json(state_path, {"pending": pending})
        base = read_release(releases_dir(root) / batch.base) if batch.base else None
        batch_manifest = manifest.model_copy(deep=True)
        batch_manifest.name = batch.id
        batch_manifest.output = str(root / "batches")
        if batch_manifest.stages.dedup is not None and base is not None:
            against = [*batch_manifest.stages.dedup.against, *(str(p) for p in base.dedup_indexes)]
            batch_manifest.stages.dedup.against = against
        preflight(batch_manifest, f"refresh batch {batch.id}")
        runner = Runner(
            batch_manifest, progress=progress, verbose=verbose, command=command, publish=False, inputs=batch.inputs
        )
        run = runner.run()
        record = read_json(run.run_dir / "run.json") or {}
        shards, dedup = run_contents(list(record.get("stages", {})), run.run_dir)
        fingerprints = {name: stage["fingerprint"] for name, stage in record.get("stages", {}).items()}
        content_key = fingerprint({"batch": str(run.run_dir.absolute()), "stages": fingerprints})
        summary = {
            "kind": "refresh",
            "batch": str(run.run_dir.absolute()),
            "stages": fingerprints,
            "inputs": [*(base.manifest.get("inputs", []) if base else []), *record.get("inputs", [])],
            "batch_inputs": len(batch.inputs),
        }
        release, released_now = publish(root, content_key, shards, dedup, summary, parent=base)
        write_json(state_path, {"pending": None, "last": {"batch": batch.id, "release": release.version}})
        return RefreshResult(root, len(named), batch.inputs, release, released_now, run, resumed=batch.resumed)


def describe(result: RefreshResult) -> str:
    """One line for the console and logs."""
    if not result.new:
        where = f"release {result.release.version}" if result.release else "no release yet"
        return f"nothing new: all {result.inputs} input(s) are covered by {where}; nothing to do"
    action = "published" if result.released_now else "was already published as"
    assert result.release is not None
    return (
        f"{len(result.new)} new input(s){' (resumed batch)' if result.resumed else ''} -> {action} release "
        f"{result.release.version}: {result.release.manifest['rows']:,} rows in "
        f"{len(result.release.manifest['shards'])} shard(s), {result.release.path}"
    )


def as_json(result: RefreshResult) -> str:
    """The result as one JSON object (``winnow refresh --json``)."""
    release = result.release
    return json.dumps(
        {
            "root": str(result.root),
            "inputs": result.inputs,
            "new_inputs": [i.path for i in result.new],
            "release": release.version if release else None,
            "released_now": result.released_now,
            "rows": release.manifest["rows"] if release else 0,
        }
    )
