"""Dedup's candidate search split into hash ranges (``stages.dedup.partitions``) decides exactly as one range does.

A generated corpus holds planted exact copies (recased), URL repeats (older and newer fetches of one
page) and near duplicates (one word changed), spread over two sources with crawls and dates; the stage
runs with 1, 3 and 7 partitions on 1, 3 and 2 tasks, and clusters, keepers, reasons and ``dup_count``
must be identical.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.test_dedup import (
    cluster_rows,
    jsonl_source,
    kept,
    pseudo_vocabulary,
    random_text,
    rejects,
    run_dedup,
    write_jsonl,
)


def planted_corpus(rng: random.Random) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Rows per source, and how many documents of each kind were planted as removable duplicates."""
    vocabulary = pseudo_vocabulary(7)
    rows: dict[str, list[dict[str, Any]]] = {"early": [], "late": []}
    planted = {"exact": 0, "near": 0, "url": 0}
    for base in range(60):
        text = random_text(rng, rng.randint(150, 300), vocabulary)
        words = text.split()
        copies = [text]
        if base % 3 == 0:
            copies.append(text.upper())
            planted["exact"] += 1
        if base % 3 == 1:
            edited = list(words)
            edited[rng.randrange(len(words))] = rng.choice(vocabulary)
            copies.append(" ".join(edited))
            planted["near"] += 1
        for number, copy in enumerate(copies):
            row = {"id": f"b{base}-{number}", "text": copy, "url": f"https://example.org/b{base}/{number}"}
            rows[rng.choice(list(rows))].append(row)
        if base % 4 == 0:  # the same URL fetched again later, with a new text
            page = f"https://example.org/page/{base}"
            rows["early"].append({"id": f"p{base}-old", "text": random_text(rng, 120, vocabulary), "url": page})
            rows["late"].append({"id": f"p{base}-new", "text": random_text(rng, 120, vocabulary), "url": page})
            planted["url"] += 1
    for number in range(80):
        rows[rng.choice(list(rows))].append({"id": f"u{number}", "text": random_text(rng, 120, vocabulary)})
    for source_rows in rows.values():
        rng.shuffle(source_rows)
    return rows, planted


def run_partitioned(rows: dict[str, list[dict[str, Any]]], output: Path, partitions: int, tasks: int) -> Path:
    crawls = {"early": "CC-MAIN-2019-04", "late": "CC-MAIN-2024-10"}
    sources = []
    for name, source_rows in rows.items():
        paths = [write_jsonl(output / f"{name}-{i}.jsonl", source_rows[i::tasks]) for i in range(tasks)]
        sources.append(jsonl_source(name, paths, crawls[name]))
    return run_dedup(output, sources, dedup={"partitions": partitions}, tasks=tasks, workers=min(tasks, 2))


def test_partition_and_task_counts_give_identical_clusters_and_decisions(tmp_path: Path) -> None:
    rows, planted = planted_corpus(random.Random(3))
    runs = [run_partitioned(rows, tmp_path / f"p{p}", p, t) for p, t in ((1, 1), (3, 3), (7, 2))]
    reference = cluster_rows(runs[0])
    reasons = [reason for reason, _ in rejects(runs[0]).values()]
    assert reasons.count("exact_duplicate") == planted["exact"]
    assert reasons.count("near_duplicate") == planted["near"]
    assert reasons.count("url_duplicate") == planted["url"]
    for run in runs[1:]:
        assert cluster_rows(run) == reference
        assert rejects(run) == rejects(runs[0])
        assert kept(run) == kept(runs[0])
