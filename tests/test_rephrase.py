"""The rephrase stage's parts: templates, chunking, routing, post-processing, and the stage against a stub server.

The stub (tests/test_ocr.py's :class:`StubServer`) is for what a real server will not do on demand:
answer 500, 429, time out, refuse a prompt as too long, or stop mid-answer. Success paths against a
real llama.cpp server are in tests/test_rephrase_server.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from winnow.pipeline.funnel import connect
from winnow.pipeline.manifest import Manifest, RephraseRoute
from winnow.pipeline.rephrase.chunks import chunk_text
from winnow.pipeline.rephrase.postprocess import Checks, Rejected, postprocess, qa_pairs, source_overlap
from winnow.pipeline.rephrase.routing import templates_for
from winnow.pipeline.rephrase.templates import PostProcess, TemplateError, load_template, load_templates
from winnow.pipeline.runner import Runner, StageFailed

TEMPLATES = Path(__file__).parent / "rephrase_templates"
SOURCE = "The old stone bridge crosses the river near the market. In winter the harbour freezes over."


# ---------------------------------------------------------------- templates, chunks, routing


def test_shipped_templates_load_with_ids_and_hashes() -> None:
    templates = load_templates([])
    expected = {"wikipedia", "qa", "easy", "hard", "diverse_qa", "distill", "extract_knowledge", "knowledge_list"}
    assert set(templates) == expected
    assert len({t.hash for t in templates.values()}) == len(templates)
    assert all("{document}" in t.user for t in templates.values())
    messages = templates["qa"].messages("TEXT")
    assert messages[0]["role"] == "system" and messages[1]["content"].rstrip().endswith("TEXT")


def test_an_edited_template_gets_a_new_hash_and_a_bad_one_a_clear_error(tmp_path: Path) -> None:
    original = (TEMPLATES / "tiny_prose.yaml").read_text()
    edited = tmp_path / "edited.yaml"
    edited.write_text(original.replace("temperature: 0.8", "temperature: 0.9"))
    assert load_template(edited).hash != load_template(TEMPLATES / "tiny_prose.yaml").hash
    broken = tmp_path / "broken.yaml"
    broken.write_text(original.replace("{document}", "the text"))
    with pytest.raises(TemplateError, match=r"broken.yaml: user: .*\{document\}"):
        load_template(broken)
    with pytest.raises(TemplateError, match="no such template"):
        load_templates([str(tmp_path / "missing")])


def test_chunks_fit_the_budget_and_cut_at_paragraphs_first() -> None:
    paragraphs = [" ".join(f"w{p}_{i}" for i in range(30)) for p in range(6)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, 400)
    assert all(len(c) <= 400 for c in chunks)
    assert "\n\n".join(chunks).split() == text.split()  # nothing lost, nothing added
    assert chunks[0].startswith("w0_0") and all(c.split()[0].endswith("_0") for c in chunks)  # paragraph starts
    assert chunk_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_routes_choose_by_source_column_and_a_stable_fraction() -> None:
    routes = [
        RephraseRoute(templates=["wikipedia"], column="quality_bucket", max=1),
        RephraseRoute(templates=["diverse_qa", "distill"], column="quality_bucket", min=3),
        RephraseRoute(templates=["qa"], sources=["forum"], fraction=0.5, seed=7),
    ]
    assert templates_for(routes, "a", "web", {"quality_bucket": 0}) == ["wikipedia"]
    assert templates_for(routes, "a", "web", {"quality_bucket": 4}) == ["diverse_qa", "distill"]
    assert templates_for(routes, "a", "web", {"quality_bucket": 2}) == []
    assert templates_for(routes, "a", "web", {}) == []  # no value: no column route matches
    chosen = [templates_for(routes, f"d{i}", "forum", {}) == ["qa"] for i in range(2000)]
    assert 0.45 < sum(chosen) / 2000 < 0.55
    assert chosen == [templates_for(routes, f"d{i}", "forum", {}) == ["qa"] for i in range(2000)]


# ---------------------------------------------------------------- post-processing


def test_prose_answers_are_cleaned_and_checked() -> None:
    settings = PostProcess(kind="prose", min_length_ratio=0.2, max_length_ratio=2.0, min_source_overlap=0.6)
    answer = "Here is the rewrite: **The old stone bridge** crosses the river near the market."
    assert postprocess(answer, settings, "Here is the rewrite", Checks(SOURCE)) == (
        "The old stone bridge crosses the river near the market."
    )
    with pytest.raises(Rejected) as short:
        postprocess("Bridge.", settings, None, Checks(SOURCE))
    assert short.value.reason == "length_ratio"
    invented = "Dragons guarded golden treasure beneath distant volcanic mountains every single night."
    with pytest.raises(Rejected) as made_up:
        postprocess(invented, settings, None, Checks(SOURCE))
    assert made_up.value.reason == "low_overlap"
    with pytest.raises(Rejected) as language:
        strict = settings.model_copy(update={"language": "en"})
        postprocess(SOURCE, strict, None, Checks(SOURCE, identify=lambda text: ("de", 0.9)))
    assert language.value.reason == "language"
    with pytest.raises(Rejected, match="empty"):
        postprocess("```\n```", settings, None, Checks(SOURCE))


def test_qa_and_list_answers_are_parsed_into_one_layout() -> None:
    answer = "1. **Question:** What crosses the river?\nAnswer: The old stone bridge.\nQ: When frozen?\nA: In winter."
    pairs = [("What crosses the river?", "The old stone bridge."), ("When frozen?", "In winter.")]
    assert qa_pairs(answer) == pairs
    settings = PostProcess(kind="qa", min_length_ratio=0.1, max_length_ratio=3, min_source_overlap=0.5)
    text = postprocess(answer, settings, None, Checks(SOURCE))
    assert text == "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in pairs)
    with pytest.raises(Rejected, match="Question"):
        postprocess("Just prose, no pairs.", settings, None, Checks(SOURCE))
    listing = PostProcess(kind="list", min_length_ratio=0.1, max_length_ratio=3, min_source_overlap=0.5)
    assert postprocess("* the bridge crosses the river\n* the harbour freezes", listing, None, Checks(SOURCE)) == (
        "- the bridge crosses the river\n- the harbour freezes"
    )
    assert source_overlap("the river the sea", "the river", 1) == 0.75
    assert source_overlap("", "anything", 2) == 0.0


# ---------------------------------------------------------------- the stage against a stub


PROSE = "Rewrite: the old stone bridge crosses the river near the market in winter."


def _run(tmp_path: Path, url: str, docs: int = 3, **rephrase: Any) -> Path:
    """The rephrase stage alone over ``docs`` copies of SOURCE, template ``stub_prose`` (no overlap or length
    checks to speak of: the stub's one canned answer cannot fit every part of a cut document)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    template = (TEMPLATES / "tiny_prose.yaml").read_text().replace("tiny_prose", "stub_prose")
    template = template.replace("min_source_overlap: 0.9", "min_source_overlap: 0.0")
    (tmp_path / "stub_prose.yaml").write_text(template.replace("max_length_ratio: 5.0", "max_length_ratio: 100"))
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": f"d{i}", "text": SOURCE}) + "\n" for i in range(docs)))
    config = {
        "endpoint": url,
        "model": "stub",
        "concurrency": 2,
        "max_retries": 1,
        "timeout_s": 1,
        "templates": [str(tmp_path / "stub_prose.yaml")],
        "routes": [{"templates": ["stub_prose"]}],
        **rephrase,
    }
    manifest = Manifest.model_validate(
        {
            "name": "stubbed",
            "output": str(tmp_path / "out"),
            "executor": {"kind": "local", "tasks": 1, "workers": 1},
            "sources": [{"name": "notes", "kind": "jsonl", "paths": [str(source)]}],
            "stages": {"extract": None, "heuristics": None, "dedup": None, "rephrase": config},
        }
    )
    return Runner(manifest, progress=False).run().run_dir


def _outcomes(run_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    with connect(run_dir) as con:
        return {
            "rows": con.execute("SELECT synthetic_of, style FROM rephrase WHERE synthetic_of IS NOT NULL").fetchall(),
            "rejects": con.execute("SELECT synthetic_of, reason FROM rephrase_rejects").fetchall(),
            "errors": con.execute("SELECT synthetic_of, reason, detail FROM rephrase_errors").fetchall(),
            "originals": con.execute("SELECT id FROM rephrase WHERE synthetic_of IS NULL").fetchall(),
        }


def test_server_errors_rate_limits_and_timeouts_are_retried_then_recorded(stub_llm: Any, tmp_path: Path) -> None:
    # each job: one request + one retry; d0 gets 500 twice, d1 429 twice, d2 a timeout twice
    server = stub_llm([(500, "", "stop")] * 2 + [(429, "", "stop")] * 2 + [(0, "", "stop")] * 2)
    outcomes = _outcomes(_run(tmp_path, server.url, concurrency=1))
    assert len(outcomes["originals"]) == 3 and outcomes["rows"] == [] and outcomes["rejects"] == []
    reasons = sorted(reason for _, reason, _ in outcomes["errors"])
    assert reasons == ["rate_limited", "server_error", "timeout"]
    assert all("retries" in detail or "retr" in detail for _, _, detail in outcomes["errors"])
    assert len(server.requests) == 6


def test_a_prompt_too_long_is_cut_smaller_and_a_truncated_answer_rejected(stub_llm: Any, tmp_path: Path) -> None:
    server = stub_llm([(400, "", "stop")] + [(200, PROSE, "stop")] * 4)
    outcomes = _outcomes(_run(tmp_path / "overflow", server.url, docs=1))
    assert len(outcomes["rows"]) == 1 and outcomes["errors"] == []
    prompts = [r["messages"][-1]["content"] for r in server.requests]
    assert len(prompts) >= 3 and all(len(p) < len(prompts[0]) for p in prompts[1:])  # asked again in parts
    with connect(tmp_path / "overflow" / "out" / "stubbed") as con:
        (meta,) = con.execute("SELECT meta FROM rephrase WHERE synthetic_of IS NOT NULL").fetchone()
    assert json.loads(meta)["usage"]["completion_tokens"] > 0

    server = stub_llm([(200, PROSE, "length")])
    outcomes = _outcomes(_run(tmp_path / "truncated", server.url, docs=1))
    assert outcomes["rows"] == [] and [reason for _, reason in outcomes["rejects"]] == ["truncated"]


def test_a_route_on_a_column_no_stage_made_is_an_error(tmp_path: Path) -> None:
    from winnow.pipeline.manifest import ManifestError

    with pytest.raises(ManifestError, match=r"routes\[0\].column: no column 'quality_bucket' reaches rephrase"):
        _run(tmp_path, "http://127.0.0.1:9/v1", routes=[{"templates": ["stub_prose"], "column": "quality_bucket"}])


def test_an_unreachable_server_stops_the_stage_for_a_rerun(tmp_path: Path) -> None:
    with pytest.raises(StageFailed, match="rerun"):
        _run(tmp_path, "http://127.0.0.1:9/v1")


def test_routes_name_known_templates_and_sources(tmp_path: Path) -> None:
    from winnow.pipeline.manifest import ManifestError
    from winnow.pipeline.stages import preflight

    def manifest(route: dict[str, Any]) -> Manifest:
        rephrase = {"endpoint": "http://127.0.0.1:8080/v1", "model": "m", "routes": [route]}
        return Manifest.model_validate(
            {
                "name": "r",
                "output": str(tmp_path),
                "sources": [{"name": "notes", "kind": "jsonl", "paths": [__file__]}],
                "stages": {"extract": None, "rephrase": rephrase},
            }
        )

    with pytest.raises(ValueError, match=r"routes\[0\].sources: no source named 'web'"):
        manifest({"templates": ["qa"], "sources": ["web"]})
    with pytest.raises(ManifestError, match=r"routes\[0\].templates: unknown \['poem'\]"):
        preflight(manifest({"templates": ["qa", "poem"]}), "m.yaml")
