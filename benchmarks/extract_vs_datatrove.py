"""Benchmark: winnow's extract + heuristics stages against datatrove's FineWeb reference pipeline.

What it measures, on ONE gzip WARC built in a temporary folder from the shared data (the scrapinghub
article-extraction-benchmark pages, the CleanEval dev pages and the HTML responses of the shared
WARCs; AEB pages are repeated under new URLs if fewer than ``--min-pages`` pages are found):

- throughput: HTML pages per CPU-second of each side's whole process tree (user+sys of a child
  process and everything it waited for, e.g. the extraction sandboxes, read from
  ``getrusage(RUSAGE_CHILDREN)`` before and after), plus wall time. Each side runs in its own child
  process (this script with ``--side``), one after the other:
  * datatrove: ``WarcReader -> URLFilter -> Trafilatura(favour_precision=True) -> LanguageFilter
    -> GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter(filter_no_terminal_punct=False)
    -> FineWebQualityFilter -> ParquetWriter``, each filter with an exclusion writer as in datatrove's
    FineWeb example (Parquet rather than JSONL), on ``LocalPipelineExecutor(tasks=1, workers=1)``.
    Two offline adaptations only: the URL filter uses tldextract's bundled suffix list and the
    language filter loads the same fastText model file as winnow (the lid.176.ftz winnow ships)
    instead of downloading lid.176.bin.
  * winnow: a manifest with the default extract and heuristics stages, local executor, 1 task.
- extraction quality: mean bag-of-words F1 (:mod:`winnow.extract.evaluation`) on the AEB pages of
  the input; winnow's texts come from its extract stage run on those pages alone with language
  selection off (its pre-extraction language check would otherwise skip the 17 non-English AEB
  pages, which datatrove's language filter drops after extracting them), datatrove's from calling
  its ``Trafilatura(favour_precision=True).extract`` on the same HTML.

Ends with one ``RESULT`` line. Exit 2 when the shared data folder is missing.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from winnow.extract.evaluation import (  # noqa: E402
    AebPage,
    extract_stage_texts,
    html_record,
    load_aeb,
    mean_f1,
    repeat_url,
)
from winnow.pipeline.manifest import ExtractConfig  # noqa: E402
from winnow.pipeline.warc_writer import write_warc  # noqa: E402

DEFAULT_SHARED = ROOT.parent / "shared" / "data"
# CleanEval wraps each page in <text id="URL" ...> ... </text>
CLEANEVAL_URL = re.compile(rb'^\s*<text id="([^"]*)"')
CLEANEVAL_WRAPPER = re.compile(rb"^\s*<text [^>]*>\s*|\s*</text>\s*$")


@dataclass(frozen=True)
class InputPage:
    url: str
    html: bytes
    content_type: str
    origin: str  # aeb | cleaneval | warc


# ------------------------------------------------------------------------------------ input


def collect_pages(shared: Path) -> tuple[list[InputPage], list[AebPage]]:
    """Every distinct HTML page of the shared data, and the AEB pages (with gold text)."""
    from winnow.extract.web_archives import ArchiveRecord, iter_archive
    from winnow.pipeline.readers import is_html

    aeb = load_aeb(shared / "html_gt" / "scrapinghub_aeb")
    pages = [InputPage(p.url, p.html, "text/html; charset=utf-8", "aeb") for p in aeb]
    for path in sorted((shared / "html_gt" / "cleaneval-dev" / "input").glob("*.html")):
        raw = path.read_bytes()
        match = CLEANEVAL_URL.match(raw)
        url = match.group(1).decode("latin-1") if match else f"http://cleaneval.invalid/{path.stem}"
        pages.append(InputPage(url, CLEANEVAL_WRAPPER.sub(b"", raw), "text/html", "cleaneval"))
    for name in sorted(glob.glob(str(shared / "warc" / "**" / "*.warc.gz"), recursive=True)):
        with open(name, "rb") as fh:
            for rec in iter_archive(fh, name):
                if not isinstance(rec, ArchiveRecord) or rec.record_type != "response" or not rec.payload:
                    continue
                if is_html(rec.content_type) and (rec.http_status is None or 200 <= rec.http_status < 300):
                    ctype = rec.content_type + (f"; charset={rec.charset}" if rec.charset else "")
                    pages.append(InputPage(rec.url or f"urn:{name}:{rec.offset}", rec.payload, ctype, "warc"))
    return pages, aeb


def choose_pages(
    pages: list[InputPage], aeb: list[AebPage], quick_pages: int | None, min_pages: int
) -> list[InputPage]:
    """Evenly spaced ``quick_pages`` pages, or all pages topped up with AEB repeats to ``min_pages``."""
    if quick_pages is not None:
        step = len(pages) / quick_pages
        return [pages[int(i * step)] for i in range(min(quick_pages, len(pages)))]
    chosen = list(pages)
    copy = 1
    while len(chosen) < min_pages:
        need = min_pages - len(chosen)
        chosen += [InputPage(repeat_url(p.url, copy), p.html, "text/html; charset=utf-8", "aeb") for p in aeb[:need]]
        copy += 1
    return chosen


def write_input(pages: list[InputPage], path: Path) -> Path:
    return write_warc(path, (html_record(p.url, p.html, i, p.content_type) for i, p in enumerate(pages)))


# ------------------------------------------------------------------------------- the two sides


def run_datatrove(warc: Path, workdir: Path, timeout: float) -> None:
    """datatrove's FineWeb pipeline (datatrove's own classes, offline model/suffix list)."""
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

    from winnow.filters.language import default_lid_model

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

    LocalPipelineExecutor(
        pipeline=[
            WarcReader(str(warc.parent), glob_pattern=warc.name),
            OfflineURLFilter(exclusion_writer=removed("1_url")),
            Trafilatura(favour_precision=True, timeout=timeout),
            LocalLanguageFilter(languages=["en"], language_threshold=0.65, exclusion_writer=removed("2_lang")),
            GopherRepetitionFilter(exclusion_writer=removed("3_gopher_rep")),
            GopherQualityFilter(exclusion_writer=removed("4_gopher_qual")),
            C4QualityFilter(filter_no_terminal_punct=False, exclusion_writer=removed("5_c4")),
            FineWebQualityFilter(exclusion_writer=removed("6_fineweb")),
            ParquetWriter(str(workdir / "output")),
        ],
        tasks=1,
        workers=1,
        logging_dir=str(workdir / "logs"),
    ).run()


def run_winnow(warc: Path, workdir: Path) -> None:
    """winnow's default extract + heuristics stages on the same WARC."""
    from winnow.pipeline.manifest import Manifest
    from winnow.pipeline.runner import Runner

    manifest = Manifest.model_validate(
        {
            "name": "bench",
            "output": str(workdir),
            "executor": {"kind": "local", "tasks": 1, "workers": 1},
            "sources": [{"name": "bench", "kind": "warc", "paths": [str(warc)]}],
        }
    )
    Runner(manifest, progress=False).run()


@dataclass
class Timing:
    cpu_s: float
    wall_s: float


def measure(side: str, warc: Path, workdir: Path, timeout: float) -> Timing:
    """Run one side in a child process; CPU = user+sys of that process tree."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--warc", str(warc)]
    cmd += ["--workdir", str(workdir), "--timeout", str(timeout)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"the {side} run failed (exit {proc.returncode}); its output is above")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(cpu, wall)


# ------------------------------------------------------------------------------ quality, steps


def datatrove_texts(pages: list[AebPage], timeout: float) -> dict[str, str]:
    """datatrove's extractor on the pages' HTML, decoded as its WarcReader does (the AEB is all UTF-8)."""
    from datatrove.pipeline.extractors import Trafilatura

    extractor = Trafilatura(favour_precision=True, timeout=timeout)
    return {page.url: extractor.extract(page.html.decode("utf-8", errors="replace")) or "" for page in pages}


def step_seconds(steps: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(step name, total seconds) from datatrove-format per-step stats."""
    out = []
    for step in steps:
        total = (step.get("time_stats") or {}).get("total")
        if total is not None:
            out.append((step.get("name", "?"), float(total)))
    return out


def kept_urls(workdir: Path, side: str) -> set[str]:
    """URLs of the documents a side kept (its final output)."""
    import pyarrow.parquet as pq

    if side == "datatrove":
        rows = [
            pq.read_table(p, columns=["metadata"]).column("metadata").to_pylist()
            for p in (workdir / "output").rglob("*.parquet")
        ]
        return {m["url"] for batch in rows for m in batch}
    folder = workdir / "bench" / "stages" / "heuristics" / "data"
    return {u for p in folder.glob("*.parquet") for u in pq.read_table(p, columns=["url"]).column("url").to_pylist()}


def load_steps(workdir: Path, side: str) -> list[tuple[str, float]]:
    if side == "datatrove":
        stats = json.loads((workdir / "logs" / "stats.json").read_text())
        return step_seconds(stats)
    steps: list[tuple[str, float]] = []
    for stage in ("extract", "heuristics"):
        stats = json.loads((workdir / "bench" / "stages" / stage / "stats.json").read_text())
        steps += [(f"{stage}: {name}", secs) for name, secs in step_seconds(stats["steps"])]
    return steps


# ------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: about 150 pages, under a minute")
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED, help="the shared data folder")
    parser.add_argument("--min-pages", type=int, default=1000, help="full run: at least this many pages")
    parser.add_argument("--quick-pages", type=int, default=150, help="pages in a --quick run")
    parser.add_argument(
        "--timeout",
        type=float,
        default=ExtractConfig().timeout_s,
        help="datatrove's per-page Trafilatura timeout in s (default: winnow's extract.timeout_s)",
    )
    parser.add_argument("--keep", type=Path, help="build the input and outputs here and keep them")
    parser.add_argument("--side", choices=["datatrove", "winnow"], help="internal: run one side (child process)")
    parser.add_argument("--warc", type=Path, help="internal: the input WARC of --side")
    parser.add_argument("--workdir", type=Path, help="internal: the output folder of --side")
    return parser.parse_args(argv)


def report(
    n: int,
    timings: dict[str, Timing],
    f1: dict[str, float],
    steps: dict[str, list[tuple[str, float]]],
    kept: dict[str, set[str]],
) -> None:
    rate = {side: n / t.cpu_s for side, t in timings.items()}
    c = ExtractConfig()
    print(f"\n{n} HTML pages, one WARC; each side in its own child process (CPU = user+sys of its tree)")
    print("datatrove trafilatura: favor_precision=True, fallback on (fast=False), deduplicate=True")
    print(f"winnow trafilatura:    focus={c.focus}, fallback={c.fallback}, deduplicate=False\n")
    print(f"{'side':<10} {'CPU s':>8} {'wall s':>8} {'pages/CPU-s':>12} {'AEB F1':>7}")
    for side, t in timings.items():
        print(f"{side:<10} {t.cpu_s:>8.2f} {t.wall_s:>8.2f} {rate[side]:>12.2f} {f1[side]:>7.3f}")
    for side, rows in steps.items():
        print(f"\n{side} per-step time (s, datatrove stats):")
        for name, secs in rows:
            print(f"  {name:<48} {secs:>8.2f}")
    both = kept["winnow"] & kept["datatrove"]
    print(
        f"\nkept: datatrove {len(kept['datatrove'])}, winnow {len(kept['winnow'])}, both {len(both)} "
        f"(the two keep the same page in {len(both) / max(len(kept['winnow'] | kept['datatrove']), 1):.1%} of cases)"
    )
    ratio = rate["winnow"] / rate["datatrove"]
    print(f"\nwinnow/datatrove pages per CPU-second: {ratio:.2f}x\n")
    print(
        f"RESULT winnow_docs_per_cpu_s={rate['winnow']:.2f} datatrove_docs_per_cpu_s={rate['datatrove']:.2f} "
        f"ratio={ratio:.2f} winnow_f1={f1['winnow']:.3f} datatrove_f1={f1['datatrove']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side:
        if args.side == "datatrove":
            run_datatrove(args.warc, args.workdir, args.timeout)
        else:
            run_winnow(args.warc, args.workdir)
        return 0
    shared = args.shared_data
    if not (shared / "html_gt" / "scrapinghub_aeb").is_dir():
        print(f"shared data not found at {shared} (give --shared-data); nothing to benchmark", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        base = args.keep or Path(tmp)
        all_pages, aeb = collect_pages(shared)
        pages = choose_pages(all_pages, aeb, args.quick_pages if args.quick else None, args.min_pages)
        warc = write_input(pages, base / "input" / "pages.warc.gz")
        print(f"input: {len(pages)} HTML pages ({warc.stat().st_size / 1e6:.1f} MB) -> {warc}", flush=True)
        timings, steps = {}, {}
        for side in ("datatrove", "winnow"):
            print(f"running {side} ...", flush=True)
            timings[side] = measure(side, warc, base / side, args.timeout)
            steps[side] = load_steps(base / side, side)
        urls = {p.url for p in pages}
        gold = [p for p in aeb if p.url in urls]  # the AEB pages in the input (first copies)
        f1 = {
            "winnow": mean_f1(extract_stage_texts(gold, base / "winnow-f1"), gold),
            "datatrove": mean_f1(datatrove_texts(gold, args.timeout), gold),
        }
        kept = {side: kept_urls(base / side, side) for side in timings}
        report(len(pages), timings, f1, steps, kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())
