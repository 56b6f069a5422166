"""Benchmark: winnow's extraction, and its extract + heuristics stages, against datatrove's FineWeb reference.

What it measures, on ONE gzip WARC built in a temporary folder from the shared data (the scrapinghub
article-extraction-benchmark pages, the CleanEval dev pages and the HTML responses of the shared
WARCs; AEB pages are repeated under new URLs if fewer than ``--min-pages`` pages are found):

- throughput: HTML pages per CPU-second of each run's whole process tree (user+sys of a child
  process and every descendant it or this script waited for, e.g. the extraction sandboxes; this
  script is the descendants' subreaper), plus wall time. Four runs, each in its own child process
  (this script with ``--side``), one after the other, on the same WARC:
  * ``datatrove_extract``: ``WarcReader -> URLFilter -> Trafilatura(favour_precision=True) ->
    LanguageFilter -> ParquetWriter`` (reading, extraction, language ID);
  * ``datatrove_stage``: the same, then ``GopherRepetitionFilter -> GopherQualityFilter ->
    C4QualityFilter(filter_no_terminal_punct=False) -> FineWebQualityFilter -> ParquetWriter``, each
    filter with an exclusion writer as in datatrove's FineWeb example (Parquet rather than JSONL);
    both on ``LocalPipelineExecutor(tasks=1, workers=1)``. Two offline adaptations only: the URL
    filter uses tldextract's bundled suffix list and the language filter loads the same fastText
    model file as winnow (the lid.176.ftz winnow ships) instead of downloading lid.176.bin;
  * ``winnow_extract``: winnow's default extract stage alone (reading, URL filter, extraction,
    language ID), local executor, 1 task;
  * ``winnow_stage``: winnow's default extract and heuristics stages.
  ``extract_only_ratio`` compares the two extract runs, ``stage_ratio`` the two stage runs. The machine's
  speed drifts by tens of percent over minutes (a shared VM), so the four runs are repeated
  (``--rounds``, default 3), the order within each pair alternating from round to round, and each ratio
  is the median of the rounds' ratios.
- extraction quality: mean bag-of-words F1 (:mod:`winnow.extract.evaluation`) on each ground-truth
  set (AEB: 181 pages, CleanEval dev: 58), every page of the set whatever the input sample; winnow's
  texts come from its extract stage (default settings) run on those pages alone with language
  selection and the URL filter off (its pre-extraction language check would otherwise skip the
  non-English pages, which datatrove's language filter drops after extracting them), datatrove's
  from calling its ``Trafilatura(favour_precision=True).extract`` on the same HTML, decoded as its
  ``WarcReader`` decodes (UTF-8, else cchardet's guess).

Ends with one ``RESULT`` line. Exit 2 when the shared data folder is missing.
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.process_tree import become_subreaper, cpu_children, reap_orphans  # noqa: E402
from winnow.extract.evaluation import (  # noqa: E402
    GoldPage,
    extract_stage_texts,
    html_record,
    load_aeb,
    load_cleaneval,
    mean_f1,
    repeat_url,
)
from winnow.pipeline.manifest import ExtractConfig  # noqa: E402
from winnow.pipeline.warc_writer import write_warc  # noqa: E402

DEFAULT_SHARED = ROOT.parent / "shared" / "data"
SIDES = ("datatrove_extract", "winnow_extract", "datatrove_stage", "winnow_stage")


@dataclass(frozen=True)
class InputPage:
    url: str
    html: bytes
    content_type: str
    origin: str  # aeb | cleaneval | warc


# ------------------------------------------------------------------------------------ input


def gold_sets(shared: Path) -> dict[str, list[GoldPage]]:
    """The ground-truth sets by name."""
    gt = shared / "html_gt"
    return {"aeb": load_aeb(gt / "scrapinghub_aeb"), "cleaneval": load_cleaneval(gt / "cleaneval-dev")}


def collect_pages(shared: Path, gold: dict[str, list[GoldPage]]) -> list[InputPage]:
    """Every distinct HTML page of the shared data: the ground-truth pages, then the WARCs' 2xx HTML responses."""
    from winnow.extract.web_archives import ArchiveRecord, iter_archive
    from winnow.pipeline.readers import is_html

    pages = [InputPage(p.url, p.html, p.content_type, name) for name, set_ in gold.items() for p in set_]
    for name in sorted(glob.glob(str(shared / "warc" / "**" / "*.warc.gz"), recursive=True)):
        with open(name, "rb") as fh:
            for rec in iter_archive(fh, name):
                if not isinstance(rec, ArchiveRecord) or rec.record_type != "response" or not rec.payload:
                    continue
                if is_html(rec.content_type) and (rec.http_status is None or 200 <= rec.http_status < 300):
                    ctype = rec.content_type + (f"; charset={rec.charset}" if rec.charset else "")
                    pages.append(InputPage(rec.url or f"urn:{name}:{rec.offset}", rec.payload, ctype, "warc"))
    return pages


def choose_pages(pages: list[InputPage], quick_pages: int | None, min_pages: int) -> list[InputPage]:
    """Evenly spaced ``quick_pages`` pages, or all pages topped up with AEB repeats to ``min_pages``."""
    if quick_pages is not None:
        step = len(pages) / quick_pages
        return [pages[int(i * step)] for i in range(min(quick_pages, len(pages)))]
    chosen = list(pages)
    aeb = [p for p in pages if p.origin == "aeb"]
    copy = 1
    while len(chosen) < min_pages and aeb:
        need = min_pages - len(chosen)
        chosen += [InputPage(repeat_url(p.url, copy), p.html, p.content_type, "aeb") for p in aeb[:need]]
        copy += 1
    return chosen


def write_input(pages: list[InputPage], path: Path) -> Path:
    return write_warc(path, (html_record(p.url, p.html, i, p.content_type) for i, p in enumerate(pages)))


# ------------------------------------------------------------------------------- the runs


def run_datatrove(warc: Path, workdir: Path, timeout: float, filters: bool) -> None:
    """datatrove's FineWeb pipeline (datatrove's own classes, offline model/suffix list); without
    ``filters`` it stops after the language filter."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
        URLFilter,
    )
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.lid import FT176LID
    from tldextract import TLDExtract

    from winnow.filters.fasttext_models import default_lid_model

    class OfflineURLFilter(URLFilter):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)

    class LocalFT176LID(FT176LID):
        @property
        def model(self) -> Any:
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _FastText(str(default_lid_model()))
            return self._model

    class LocalLanguageFilter(LanguageFilter):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.model = LocalFT176LID(self.languages)

    def removed(step: str) -> ParquetWriter:
        return ParquetWriter(str(workdir / "removed" / step))

    pipeline = [
        WarcReader(str(warc.parent), glob_pattern=warc.name),
        OfflineURLFilter(exclusion_writer=removed("1_url")),
        Trafilatura(favour_precision=True, timeout=timeout),
        LocalLanguageFilter(languages=["en"], language_threshold=0.65, exclusion_writer=removed("2_lang")),
    ]
    if filters:
        pipeline += [
            GopherRepetitionFilter(exclusion_writer=removed("3_gopher_rep")),
            GopherQualityFilter(exclusion_writer=removed("4_gopher_qual")),
            C4QualityFilter(filter_no_terminal_punct=False, exclusion_writer=removed("5_c4")),
            FineWebQualityFilter(exclusion_writer=removed("6_fineweb")),
        ]
    pipeline.append(ParquetWriter(str(workdir / "output")))
    LocalPipelineExecutor(pipeline=pipeline, tasks=1, workers=1, logging_dir=str(workdir / "logs")).run()


def run_winnow(warc: Path, workdir: Path, filters: bool, extract: dict[str, Any]) -> None:
    """winnow's extract stage (default settings updated by ``extract``), and with ``filters`` its default
    heuristics stage, on the WARC."""
    from winnow.pipeline.manifest import Manifest
    from winnow.pipeline.runner import Runner

    stages: dict[str, Any] = {"dedup": None, "extract": extract}
    if not filters:
        stages["heuristics"] = None
    manifest = Manifest.model_validate(
        {
            "name": "bench",
            "output": str(workdir),
            "executor": {"kind": "local", "tasks": 1, "workers": 1},
            "sources": [{"name": "bench", "kind": "warc", "paths": [str(warc)]}],
            "stages": stages,
        }
    )
    Runner(manifest, progress=False).run()


@dataclass
class Timing:
    cpu_s: float
    wall_s: float


def measure(side: str, warc: Path, workdir: Path, timeout: float, extract: str) -> Timing:
    """Run one side in a child process; CPU = user+sys of that process tree."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--warc", str(warc)]
    cmd += ["--workdir", str(workdir), "--timeout", str(timeout), "--extract-settings", extract]
    before = cpu_children()
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    reap_orphans()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"the {side} run failed (exit {proc.returncode}); its output is above")
    return Timing(cpu_children() - before, wall)


# ------------------------------------------------------------------------------ quality, steps


def datatrove_decode(html: bytes) -> str:
    """The page as datatrove's WarcReader decodes it: UTF-8, else cchardet's guess (lossy)."""
    try:
        return html.decode("utf-8")
    except UnicodeDecodeError:
        import cchardet

        guess = cchardet.detect(html)["encoding"] or "utf-8"
        try:
            return html.decode(guess, errors="replace")
        except LookupError:
            return html.decode("utf-8", errors="replace")


def datatrove_texts(pages: list[GoldPage], timeout: float) -> dict[str, str]:
    """datatrove's extractor on the pages' HTML, decoded as its WarcReader does."""
    from datatrove.pipeline.extractors import Trafilatura

    extractor = Trafilatura(favour_precision=True, timeout=timeout)
    return {page.url: extractor.extract(datatrove_decode(page.html)) or "" for page in pages}


def step_seconds(steps: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(step name, total seconds) from datatrove-format per-step stats."""
    out = []
    for step in steps:
        total = (step.get("time_stats") or {}).get("total")
        if total is not None:
            out.append((step.get("name", "?"), float(total)))
    return out


def kept_urls(workdir: Path, side: str) -> set[str]:
    """URLs of the documents a run kept (its final output)."""
    import pyarrow.parquet as pq

    if side.startswith("datatrove"):
        rows = [
            pq.read_table(p, columns=["metadata"]).column("metadata").to_pylist()
            for p in (workdir / "output").rglob("*.parquet")
        ]
        return {m["url"] for batch in rows for m in batch}
    stage = "heuristics" if side.endswith("stage") else "extract"
    folder = workdir / "bench" / "stages" / stage / "data"
    return {u for p in folder.glob("*.parquet") for u in pq.read_table(p, columns=["url"]).column("url").to_pylist()}


def load_steps(workdir: Path, side: str) -> list[tuple[str, float]]:
    if side.startswith("datatrove"):
        stats = json.loads((workdir / "logs" / "stats.json").read_text())
        return step_seconds(stats)
    steps: list[tuple[str, float]] = []
    for stage in ("extract", "heuristics") if side.endswith("stage") else ("extract",):
        stats = json.loads((workdir / "bench" / "stages" / stage / "stats.json").read_text())
        steps += [(f"{stage}: {name}", secs) for name, secs in step_seconds(stats["steps"])]
    return steps


def winnow_extract_counts(workdir: Path) -> dict[str, float]:
    """The extract stage's counters (extracted, rejected_<reason>, ...) of a winnow run."""
    stats = json.loads((workdir / "bench" / "stages" / "extract" / "stats.json").read_text())
    counts: dict[str, float] = {}
    for step in stats["steps"]:
        for key, value in (step.get("stats") or {}).items():
            if key.startswith(("extracted", "rejected_", "errored_")):
                counts[key] = counts.get(key, 0) + (value.get("total", 0) if isinstance(value, dict) else value)
    return counts


# ------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: --quick-pages pages, F1 on every --quick-gold-step-th page of each set (1-2 CPU-minutes)",
    )
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED, help="the shared data folder")
    parser.add_argument("--min-pages", type=int, default=1000, help="full run: at least this many pages")
    parser.add_argument("--quick-pages", type=int, default=100, help="pages in a --quick run")
    parser.add_argument("--quick-gold-step", type=int, default=2, help="a --quick run scores every n-th gold page")
    parser.add_argument(
        "--timeout",
        type=float,
        default=ExtractConfig().timeout_s,
        help="datatrove's per-page Trafilatura timeout in s (default: winnow's extract.timeout_s)",
    )
    parser.add_argument(
        "--extract-settings",
        default="{}",
        help="winnow's stages.extract settings as JSON, to measure a lever (e.g. '{\"prepass\": false}'); "
        "default: none, winnow's defaults",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds of the four runs (default 3, --quick 1); the ratios are the medians of the rounds' ratios",
    )
    parser.add_argument("--keep", type=Path, help="build the input and outputs here and keep them")
    parser.add_argument("--side", choices=SIDES, help="internal: run one side (child process)")
    parser.add_argument("--warc", type=Path, help="internal: the input WARC of --side")
    parser.add_argument("--workdir", type=Path, help="internal: the output folder of --side")
    return parser.parse_args(argv)


def report(
    n: int,
    timings: dict[str, list[Timing]],
    f1: dict[str, dict[str, float]],
    steps: dict[str, list[tuple[str, float]]],
    kept: dict[str, set[str]],
    counts: dict[str, float],
    settings: dict[str, Any],
) -> str:
    rounds = len(timings["winnow_extract"])
    median = {
        side: Timing(statistics.median(t.cpu_s for t in ts), statistics.median(t.wall_s for t in ts))
        for side, ts in timings.items()
    }
    rate = {side: n / t.cpu_s for side, t in median.items()}
    ratios = {
        kind: [d.cpu_s / w.cpu_s for d, w in zip(timings[f"datatrove_{kind}"], timings[f"winnow_{kind}"], strict=True)]
        for kind in ("extract", "stage")
    }
    c = ExtractConfig(**settings)
    print(f"\n{n} HTML pages, one WARC; each run in its own child process (CPU = user+sys of its tree)")
    print(f"{rounds} round(s) of the four runs, each pair's order alternating; medians over the rounds")
    print("datatrove trafilatura: favor_precision=True, fallback on (fast=False), deduplicate=True")
    print(f"winnow trafilatura:    focus={c.focus}, fallback={c.fallback}, prepass={c.prepass}, deduplicate=False\n")
    print(f"{'run':<18} {'CPU s':>8} {'wall s':>8} {'pages/CPU-s':>12} {'kept':>6}")
    for side, t in median.items():
        print(f"{side:<18} {t.cpu_s:>8.2f} {t.wall_s:>8.2f} {rate[side]:>12.2f} {len(kept[side]):>6}")
    for kind, values in ratios.items():
        print(f"winnow/datatrove pages per CPU-second, {kind}, by round: " + ", ".join(f"{v:.2f}" for v in values))
    print(f"\n{'F1 (bag of words)':<18} " + " ".join(f"{name:>10}" for name in f1["winnow"]))
    for side, scores in f1.items():
        print(f"{side:<18} " + " ".join(f"{v:>10.4f}" for v in scores.values()))
    print("\nwinnow extract counters: " + ", ".join(f"{k}={v:g}" for k, v in sorted(counts.items())))
    for side, rows in steps.items():
        print(f"\n{side} per-step time (s, datatrove stats):")
        for name, secs in rows:
            print(f"  {name:<48} {secs:>8.2f}")
    both = kept["winnow_stage"] & kept["datatrove_stage"]
    union = kept["winnow_stage"] | kept["datatrove_stage"]
    print(
        f"\nkept by the stage: datatrove {len(kept['datatrove_stage'])}, winnow {len(kept['winnow_stage'])}, "
        f"both {len(both)} (the same page in {len(both) / max(len(union), 1):.1%} of cases)"
    )
    extract_ratio, stage_ratio = statistics.median(ratios["extract"]), statistics.median(ratios["stage"])
    print(
        f"\nwinnow/datatrove pages per CPU-second (median of the rounds): extraction {extract_ratio:.2f}x, "
        f"stage {stage_ratio:.2f}x"
    )
    fields = [f"extract_only_ratio={extract_ratio:.2f}", f"stage_ratio={stage_ratio:.2f}"]
    for name in f1["winnow"]:
        fields += [f"winnow_f1_{name}={f1['winnow'][name]:.4f}", f"datatrove_f1_{name}={f1['datatrove'][name]:.4f}"]
    fields += [f"winnow_extract_pages_per_cpu_s={rate['winnow_extract']:.2f}"]
    fields += [f"datatrove_extract_pages_per_cpu_s={rate['datatrove_extract']:.2f}"]
    fields += [f"winnow_stage_pages_per_cpu_s={rate['winnow_stage']:.2f}"]
    fields += [f"datatrove_stage_pages_per_cpu_s={rate['datatrove_stage']:.2f}"]
    return "RESULT " + " ".join(fields)


def run_side(args: argparse.Namespace) -> None:
    filters = args.side.endswith("stage")
    if args.side.startswith("datatrove"):
        run_datatrove(args.warc, args.workdir, args.timeout, filters)
    else:
        run_winnow(args.warc, args.workdir, filters, json.loads(args.extract_settings))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side:
        run_side(args)
        return 0
    shared = args.shared_data
    if not (shared / "html_gt" / "scrapinghub_aeb").is_dir():
        print(f"shared data not found at {shared} (give --shared-data); nothing to benchmark", file=sys.stderr)
        return 2
    if not become_subreaper():
        print("warning: not a child subreaper: CPU of orphaned descendants may be missed", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        base = args.keep or Path(tmp)
        gold = gold_sets(shared)
        settings = json.loads(args.extract_settings)
        pages = choose_pages(collect_pages(shared, gold), args.quick_pages if args.quick else None, args.min_pages)
        if args.quick:
            gold = {name: set_[:: args.quick_gold_step] for name, set_ in gold.items()}
        warc = write_input(pages, base / "input" / "pages.warc.gz")
        print(f"input: {len(pages)} HTML pages ({warc.stat().st_size / 1e6:.1f} MB) -> {warc}", flush=True)
        timings: dict[str, list[Timing]] = {side: [] for side in SIDES}
        rounds = args.rounds or (1 if args.quick else 3)
        for round_ in range(rounds):  # the machine's speed drifts: alternate who runs first in each pair
            order = SIDES if round_ % 2 == 0 else tuple(SIDES[i ^ 1] for i in range(len(SIDES)))
            for side in order:
                print(f"round {round_ + 1}/{rounds}: running {side} ...", flush=True)
                shutil.rmtree(base / side, ignore_errors=True)
                timings[side].append(measure(side, warc, base / side, args.timeout, args.extract_settings))
        steps = {side: load_steps(base / side, side) for side in SIDES}
        sizes = ", ".join(f"{name} {len(set_)}" for name, set_ in gold.items())
        print(f"extraction quality on the ground-truth sets ({sizes} pages) ...", flush=True)
        f1 = {
            "winnow": {
                name: mean_f1(extract_stage_texts(p, base / f"f1-{name}", settings), p) for name, p in gold.items()
            },
            "datatrove": {name: mean_f1(datatrove_texts(p, args.timeout), p) for name, p in gold.items()},
        }
        kept = {side: kept_urls(base / side, side) for side in timings}
        counts = winnow_extract_counts(base / "winnow_extract")
        result = report(len(pages), timings, f1, steps, kept, counts, settings)
    print()
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
