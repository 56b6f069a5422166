"""The VLM engine against a real OpenAI-compatible server: llama.cpp's, serving a tiny random-weight model.

The model is generated here (tests/llm_server.py) and cannot see; the request's GBNF grammar makes
its gibberish come back in olmOCR's answer shape, so the success path (request, grammar, parsing,
token accounting) runs for real, and then the failure path: the server is killed and pages fall back
to tesseract, or become an error once ``max_fallback_pages`` is exceeded. CI builds llama-cpp-python
from source (Makefile); elsewhere these tests skip when it is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest

from tests.llm_server import LlamaServer, llama_cpp_available, write_tiny_model
from tests.test_ocr import PANGRAMS, _has_tesseract, needs_tesseract
from winnow.ocr.document import process_pdf
from winnow.ocr.vlm import VlmEngine
from winnow.pipeline.funnel import connect
from winnow.pipeline.manifest import Manifest, VlmConfig
from winnow.pipeline.pdf_writer import scan_pdf
from winnow.pipeline.runner import Runner

pytestmark = pytest.mark.skipif(
    not llama_cpp_available(), reason="llama-cpp-python[server] and gguf are not installed (make installs them)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    folder = tmp_path_factory.mktemp("llm")
    running = LlamaServer(write_tiny_model(folder / "tiny.gguf"), folder / "server.log").start()
    yield running
    running.stop()


def _vlm_settings(url: str, **extra: Any) -> dict[str, Any]:
    vlm = {"endpoint": url, "model": "tiny", "grammar": True, "image_longest_side": 96, "timeout_s": 60}
    return {"engine": "vlm", "vlm": {**vlm, **extra}}


def test_grammar_shaped_answers_come_back_parsed(server: LlamaServer) -> None:
    engine = VlmEngine(VlmConfig.model_validate(_vlm_settings(server.url)["vlm"]))
    answer = engine.recognise(pdfium.PdfDocument(scan_pdf([PANGRAMS]))[0])
    engine.close()
    assert answer.attempts >= 1 and answer.rotated in (0, 90, 180, 270)
    assert answer.language is None or len(answer.language) == 2
    assert answer.prompt_tokens > 100 and answer.completion_tokens > 10  # the prompt, and the front matter at least
    assert set(answer.text) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:'()\n-")


def test_pages_are_read_by_the_server_then_fall_back_when_it_dies(server: LlamaServer, tmp_path: Path) -> None:
    pdf = scan_pdf([PANGRAMS, PANGRAMS[::-1]])
    result = process_pdf(pdf, _vlm_settings(server.url))
    assert [p["engine"] for p in result["pages"]] == ["vlm", "vlm"]
    assert all(p["completion_tokens"] > 0 and not p["failures"] for p in result["pages"])

    dead = LlamaServer(server.model, tmp_path / "dead.log").start()
    dead.kill()
    result = process_pdf(pdf, _vlm_settings(dead.url, temperatures=[0.2]))
    for page in result["pages"]:
        assert page["engine"] == ("tesseract" if _has_tesseract() else "text-layer")
        assert page["failures"][0]["engine"] == "vlm" and "Connection" in page["failures"][0]["error"]


@needs_tesseract
def test_the_stage_counts_vlm_pages_and_enforces_the_fallback_limit(server: LlamaServer, tmp_path: Path) -> None:
    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "scan.pdf").write_bytes(scan_pdf([PANGRAMS]))

    def run(name: str, url: str, temperatures: list[float], **ocr: Any) -> Path:
        manifest = Manifest.model_validate(
            {
                "name": name,
                "output": str(tmp_path / "out"),
                "executor": {"kind": "local", "tasks": 1, "workers": 1},
                "sources": [{"name": "papers", "kind": "pdf", "paths": [str(folder / "*.pdf")]}],
                "stages": {"ocr": {**_vlm_settings(url, temperatures=temperatures), **ocr}, "dedup": None},
            }
        )
        return Runner(manifest, progress=False).run().run_dir

    # a sideways verdict (random weights give one often) costs an attempt: allow a few
    with connect(run("live", server.url, [0.1, 0.4, 0.7, 1.0])) as con:
        (meta,) = con.execute("SELECT meta FROM ocr").fetchone()
    (page,) = json.loads(meta)["page_routes"]
    assert page["engine"] == "vlm", page["failures"]
    assert page["prompt_tokens"] > 0 and page["completion_tokens"] > 0

    dead = LlamaServer(server.model, tmp_path / "dead.log").start()
    dead.kill()
    with connect(run("dead", dead.url, [0.2], max_fallback_pages=0)) as con:
        assert con.execute("SELECT reason FROM ocr_errors").fetchall() == [("ocr_fallback_limit",)]
        assert con.execute("SELECT count(*) FROM ocr").fetchone() == (0,)
