"""Dedup across releases (``against``) and WARC revisit records resolved as exact duplicates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WinnowCli
from winnow.pipeline.funnel import connect
from winnow.pipeline.manifest import Manifest
from winnow.pipeline.readers import stable_id
from winnow.pipeline.runner import Runner

SHARED_WARC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "warc"
WIKI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "text" / "wikipedia_wikitext2.jsonl"


def _articles(count: int) -> list[str]:
    """Distinct real texts of >= 200 words (Wikipedia articles), or generated prose when shared data is absent."""
    if WIKI.exists():
        texts = [json.loads(line)["text"] for line in WIKI.read_text().splitlines()]
        texts = [t for t in texts if len(t.split()) >= 200]
        if len(texts) >= count:
            return texts[:count]
    words = [f"w{n}" for n in range(5000)]
    return [" ".join(words[(i * 37 + j * j) % 5000] for j in range(300)) for i in range(count)]


def _edit(text: str, every: int = 40) -> str:
    """A near duplicate: one word in ``every`` replaced."""
    return " ".join("EDITED" if i % every == 7 else w for i, w in enumerate(text.split()))


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _manifest(name: str, output: Path, source: Path, against: list[str] | None = None) -> Manifest:
    dedup: dict[str, Any] = {"against": against or []}
    return Manifest.model_validate(
        {
            "name": name,
            "output": str(output),
            "executor": {"kind": "local", "tasks": 2, "workers": 2},
            "sources": [{"name": "web", "kind": "jsonl", "paths": [str(source)]}],
            "stages": {"extract": None, "heuristics": None, "dedup": dedup},
        }
    )


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.parquet"))
    }


def test_a_new_batch_is_deduplicated_against_an_earlier_release(tmp_path: Path) -> None:
    """Copies and near copies of released documents are removed with the released id as keeper;
    documents the earlier run itself removed are not used as keepers; the earlier run is left untouched."""
    texts = _articles(12)
    first = _write_jsonl(
        tmp_path / "first.jsonl",
        [{"id": f"a{i}", "text": texts[i]} for i in range(6)] + [{"id": "a0-copy", "text": texts[0]}],
    )
    Runner(_manifest("release1", tmp_path / "out", first), progress=False).run()
    release = tmp_path / "out" / "release1"
    before = _tree_digest(release)

    second = _write_jsonl(
        tmp_path / "second.jsonl",
        [
            {"id": "b-exact", "text": texts[1]},  # exact copy of a released document
            {"id": "b-near", "text": _edit(texts[2])},  # near copy of a released document
            {"id": "b-recase", "text": texts[3].upper()},  # same text up to case
        ]
        + [{"id": f"b-new{i}", "text": texts[i]} for i in range(6, 12)],  # new documents
    )
    Runner(_manifest("release2", tmp_path / "out", second, [str(release)]), progress=False).run()

    assert _tree_digest(release) == before, "the released run was modified"
    with connect(tmp_path / "out" / "release2") as con:
        rejected = dict(con.execute("SELECT id, reason || ' ' || detail FROM dedup_rejects").fetchall())
        kept = {row[0] for row in con.execute("SELECT id FROM dedup").fetchall()}
    released = {i: stable_id("web", f"a{i}") for i in range(6)}
    assert rejected == {
        stable_id("web", "b-exact"): f"exact_duplicate {released[1]}",
        stable_id("web", "b-near"): f"near_duplicate {released[2]}",
        stable_id("web", "b-recase"): f"exact_duplicate {released[3]}",
    }
    assert kept == {stable_id("web", f"b-new{i}") for i in range(6, 12)}


def test_against_a_run_with_other_hashing_is_refused_before_any_work(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    """An index built with another n-gram size cannot be compared: exit 2 naming the field, no run folder."""
    source = _write_jsonl(tmp_path / "docs.jsonl", [{"id": "x", "text": _articles(1)[0]}])
    Runner(_manifest("base", tmp_path / "out", source), progress=False).run()
    manifest = tmp_path / "m.json"
    data = _manifest("next", tmp_path / "out", source, [str(tmp_path / "out" / "base")]).model_dump(mode="json")
    data["stages"]["dedup"]["minhash"]["ngram"] = 3
    manifest.write_text(json.dumps(data))
    result = winnow_cli("run", manifest, "--no-progress")
    assert result.returncode == 2, result.stderr
    assert "stages.dedup.against" in result.stderr and "ngram" in result.stderr
    assert not (tmp_path / "out" / "next").exists()


@pytest.mark.skipif(not SHARED_WARC.is_dir(), reason="shared test data (../shared/data) not present")
def test_warc_revisit_records_are_exact_duplicates_of_the_page_they_repeat(tmp_path: Path) -> None:
    """The gov.uk re-crawl's HTML revisit records (identical-payload-digest) are removed by dedup as exact
    duplicates whose keeper is the original response's document (or its own keeper)."""
    manifest = Manifest.model_validate(
        {
            "name": "govuk",
            "output": str(tmp_path),
            "executor": {"kind": "local", "tasks": 2, "workers": 2},
            "sources": [{"name": "govuk", "kind": "warc", "paths": [str(SHARED_WARC / "ukwa_BL-*gov.uk*.warc.gz")]}],
            "stages": {"heuristics": None},
        }
    )
    Runner(manifest, progress=False).run()
    with connect(tmp_path / "govuk") as con:
        stubs = con.execute(
            """SELECT r.reason, r.detail, json_extract_string(r.meta, '$.revisit.payload_digest') AS digest
               FROM dedup_rejects r WHERE json_extract_string(r.meta, '$.revisit.payload_digest') IS NOT NULL"""
        ).fetchall()
        extracted_revisits = con.execute(
            "SELECT count(*) FROM extract_rejects WHERE json_extract(meta, '$.revisit') IS NOT NULL"
        ).fetchone()[0]
        # each stub's keeper: the surviving document of the cluster holding a page with that payload
        digests_of_keepers = dict(
            con.execute(
                """SELECT c.cluster_id, list(json_extract_string(d.meta, '$.payload_digest'))
                   FROM dedup_clusters c JOIN dedup d ON d.id = c.cluster_id GROUP BY 1"""
            ).fetchall()
        )
        cluster_digests = dict(
            con.execute(
                """SELECT c.cluster_id, list(json_extract_string(x.meta, '$.payload_digest'))
                   FROM dedup_clusters c
                   JOIN (SELECT id, meta FROM dedup UNION ALL SELECT id, meta FROM dedup_rejects) x ON x.id = c.id
                   GROUP BY 1"""
            ).fetchall()
        )
    exact = [(keeper, digest) for reason, keeper, digest in stubs if reason == "exact_duplicate"]
    # 29 HTML revisits in the re-crawl; those of 404 pages are rejected in extract like their originals
    assert len(exact) + extracted_revisits == 29
    assert len(exact) >= 20
    for keeper, digest in exact:
        assert keeper in digests_of_keepers, "a revisit's keeper must be a kept document"
        assert digest in cluster_digests[keeper], "the keeper's cluster must hold the repeated payload"
    assert all(reason == "exact_duplicate" for reason, _, _ in stubs)
