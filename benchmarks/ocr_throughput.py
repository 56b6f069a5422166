"""Benchmark: winnow's OCR engines against pdftotext (text layer) and ``ocrmypdf --sidecar`` (OCR), per CPU-second.

What it measures, on the shared PDFs (``--shared-data``/pdf; exit 2 when absent):

1. Text-layer pages: every page of the 9 born-digital papers in papermage's test fixtures. winnow:
   ``winnow.ocr.document.process_pdf`` with ``engine: text-layer`` in this process — triage (text
   statistics, image coverage), the reading-order text layer (pypdfium2 + XY-cut) and cleanup, i.e. all
   the per-page work of the stage. Peer: ``pdftotext`` (poppler, its default reading-order mode) on each
   file, as a child process. ``*_pages_per_cpu_s``: pages / CPU-seconds (user+sys; this process's for
   winnow, the reaped children's for the peer), each side's fastest of ``--repeat`` alternating runs
   (single runs of pdftotext varied by 40% here). ``text_ratio`` = winnow / pdftotext (target >= 1:
   pdfium's cost to open a page is a floor). Beside it, what the text layer reads against pdftotext's
   text of the same papers (``winnow.ocr.evaluation``): ``text_bow_f1_min``/``_mean`` (bag of words),
   ``text_5gram_f1_min``/``_mean`` (order-sensitive) and the mid-line hyphen splits each leaves
   (``splits``, ``pdftotext_splits``).
2. OCR pages: every page of ``derived_rasterized_scans`` (real papers rendered image-only, clean at
   200 dpi and degraded at 150 dpi, ground truth = pdftotext of the originals). winnow: the same
   call with the default engine chain (tesseract through tesserocr, one thread, rendering at the
   scan's own resolution). Peer: ``ocrmypdf --sidecar OUT.txt -j 1 --output-type pdf`` (tesseract
   CLI + Ghostscript; it also writes a searchable PDF, which is what it is for). ``ocr_ratio`` =
   winnow / ocrmypdf pages per CPU-second (target >= 1.5 at equal or better CER).
3. Accuracy: ``cer_clean`` / ``cer_degraded``: winnow's mean reading-order-tolerant CER
   (``winnow.ocr.evaluation.flexible_cer``) on the clean / degraded scans; the strict CER and ocrmypdf's are
   printed beside them. Note the ground truth's own quirks (pdftotext splits small caps, "S CI B ERT";
   tables cell by cell; figure text), which put a floor under any engine's CER here.

``--quick``: two papers and the two clean one-page scans (< 1 minute). Ends with one ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from winnow.ocr.document import process_pdf
from winnow.ocr.evaluation import cer, flexible_cer, midline_splits, ngram_f1, word_f1


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def winnow_side(files: list[Path], settings: dict) -> tuple[int, float, dict[Path, str]]:
    """(pages, CPU-seconds, text per file) of process_pdf over ``files``."""
    texts = {}
    pages = 0
    started = own_cpu()
    for path in files:
        result = process_pdf(path.read_bytes(), settings)
        pages += len(result["pages"])
        texts[path] = result["text"]
    return pages, own_cpu() - started, texts


def pdftotext_side(files: list[Path]) -> float:
    started = children_cpu()
    for path in files:
        subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True)
    return children_cpu() - started


def ocrmypdf_side(files: list[Path], work: Path) -> tuple[float, dict[Path, str]]:
    ocrmypdf = shutil.which("ocrmypdf") or str(Path(sys.executable).with_name("ocrmypdf"))
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    texts = {}
    started = children_cpu()
    for path in files:
        sidecar = work / f"{path.stem}.txt"
        command = [ocrmypdf, "-q", "-j", "1", "--sidecar", str(sidecar), "--output-type", "pdf"]
        subprocess.run([*command, str(path), str(work / f"{path.stem}.pdf")], check=True, env=env)
        texts[path] = sidecar.read_text(encoding="utf-8").replace("\f", "\n")
    return children_cpu() - started, texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="two papers and two one-page scans")
    parser.add_argument("--repeat", type=int, default=5, help="text-layer runs per side; the fastest counts")
    args = parser.parse_args()
    root = args.shared_data / "pdf"
    if not root.is_dir():
        print(f"shared PDFs not found at {root}", file=sys.stderr)
        return 2
    missing = [tool for tool in ("pdftotext",) if not shutil.which(tool)]
    if missing:
        print(f"missing peer tools: {missing} (apt-get install poppler-utils)", file=sys.stderr)
        return 2

    papers = sorted((root / "papermage" / "tests" / "fixtures").glob("*.pdf"))
    scans_dir = root / "derived_rasterized_scans"
    index = json.loads((scans_dir / "index.json").read_text())
    if args.quick:
        papers = papers[:2]
        index = [e for e in index if e["variant"] == "clean" and e["n_pages_in_pdf"] == 1]
    scans = [scans_dir / e["pdf"] for e in index]
    truth = {scans_dir / e["pdf"]: (scans_dir / e["ground_truth_txt"]).read_text(encoding="utf-8") for e in index}
    variant = {scans_dir / e["pdf"]: e["variant"] for e in index}

    # the text-layer sides take about a second each: alternate them, keep each side's fastest run
    text_cpus, pdftotext_cpus = [], []
    for _ in range(args.repeat):
        text_pages, cpu_s, layer_texts = winnow_side(papers, {"engine": "text-layer"})
        text_cpus.append(cpu_s)
        pdftotext_cpus.append(pdftotext_side(papers))
    text_cpu, pdftotext_cpu = min(text_cpus), min(pdftotext_cpus)
    print(
        f"text layer: {text_pages} pages; winnow {text_cpu:.2f} CPU-s, pdftotext {pdftotext_cpu:.2f} CPU-s "
        f"(fastest of {args.repeat}; slowest {max(text_cpus):.2f} / {max(pdftotext_cpus):.2f})"
    )

    peer = {p: subprocess.run(["pdftotext", str(p), "-"], capture_output=True, text=True).stdout for p in papers}
    bows = [word_f1(peer[p], layer_texts[p]) for p in papers]
    grams = [ngram_f1(peer[p], layer_texts[p]) for p in papers]
    splits = sum(midline_splits(layer_texts[p]) for p in papers)
    peer_splits = sum(midline_splits(peer[p]) for p in papers)
    for path, bow, gram in zip(papers, bows, grams, strict=True):
        print(f"  {path.name:60s} against pdftotext: bag-of-words F1 {bow:.4f}, 5-gram F1 {gram:.4f}")

    wall = time.perf_counter()
    ocr_pages, ocr_cpu, ocr_texts = winnow_side(scans, {})
    print(f"OCR: {ocr_pages} pages; winnow {ocr_cpu:.1f} CPU-s ({time.perf_counter() - wall:.1f} s wall)")
    with tempfile.TemporaryDirectory(prefix="winnow-ocrbench-") as work:
        wall = time.perf_counter()
        ocrmypdf_cpu, peer_texts = ocrmypdf_side(scans, Path(work))
        print(f"     ocrmypdf {ocrmypdf_cpu:.1f} CPU-s ({time.perf_counter() - wall:.1f} s wall)")

    rates: dict[str, dict[str, list[float]]] = {}
    for path in scans:
        row = rates.setdefault(variant[path], {"flex": [], "strict": [], "peer_flex": [], "peer_strict": []})
        row["flex"].append(flexible_cer(truth[path], ocr_texts[path]))
        row["strict"].append(cer(truth[path], ocr_texts[path]))
        row["peer_flex"].append(flexible_cer(truth[path], peer_texts[path]))
        row["peer_strict"].append(cer(truth[path], peer_texts[path]))
        print(
            f"  {path.name:60s} CER winnow {row['flex'][-1]:.4f} (strict {row['strict'][-1]:.4f})  "
            f"ocrmypdf {row['peer_flex'][-1]:.4f} (strict {row['peer_strict'][-1]:.4f})"
        )
    means = {v: {k: statistics.fmean(x) for k, x in r.items()} for v, r in rates.items()}
    for v, m in means.items():
        print(f"{v}: winnow CER {m['flex']:.4f} (strict {m['strict']:.4f}); ocrmypdf {m['peer_flex']:.4f}")

    text_rate, peer_text_rate = text_pages / text_cpu, text_pages / pdftotext_cpu
    ocr_rate, peer_ocr_rate = ocr_pages / ocr_cpu, ocr_pages / ocrmypdf_cpu
    clean = means.get("clean", {}).get("flex", float("nan"))
    degraded = means.get("degraded", {}).get("flex", float("nan"))
    print(
        f"RESULT text_pages_per_cpu_s={text_rate:.1f} pdftotext_pages_per_cpu_s={peer_text_rate:.1f} "
        f"text_ratio={text_rate / peer_text_rate:.2f} text_bow_f1_min={min(bows):.4f} "
        f"text_bow_f1_mean={statistics.fmean(bows):.4f} text_5gram_f1_min={min(grams):.4f} "
        f"text_5gram_f1_mean={statistics.fmean(grams):.4f} splits={splits} pdftotext_splits={peer_splits} "
        f"ocr_pages_per_cpu_s={ocr_rate:.3f} "
        f"ocrmypdf_pages_per_cpu_s={peer_ocr_rate:.3f} ocr_ratio={ocr_rate / peer_ocr_rate:.2f} "
        f"cer_clean={clean:.4f} cer_degraded={degraded:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
