"""The rephrase stage's datatrove step: originals pass through; each (document, template) job adds a row.

For every document the step yields the original unchanged, then runs the templates its routes give
(``routing``) as jobs, ``4 x concurrency`` at a time on one event loop. A job cuts the text to the
template's input budget (``chunks``), asks the server for every chunk (``client``; a chunk the
server finds too long is halved and asked again, up to :data:`MAX_SPLITS` times), post-processes
every answer (``postprocess``) and joins the chunks' texts into one synthetic row:

- ``id`` from (parent id, template id, template hash, model); ``synthetic_of`` the parent's id;
  ``style`` the template's style; source, url, crawl, language and attributes the parent's;
- ``meta``: ``template``, ``template_version``, ``template_hash``, ``model``, ``seed``, ``chunks``,
  ``usage`` (prompt and completion tokens).

Every job is one more input of the stage (``in:<source>`` counts originals and jobs), and ends as a
row, a reject (``too_long``, ``truncated``, or a post-processing reason: ``empty``,
``no_qa_pairs``, ``no_list_items``, ``length_ratio``, ``language``, ``low_overlap``) or an error
(``bad_request``, ``rate_limited``, ``timeout``, ``server_error``, ``context_overflow``).

Request cache: every answer is stored as ``cache/<key[:2]>/<key>.json``, key = SHA-256 of (chunk,
template hash, model, sampling, seed, grammar), before it is used. A rerun asks the server nothing it
already answered, so when the server goes away mid-run (:class:`~winnow.pipeline.rephrase.client.EndpointDown`
stops the task) the rerun picks up where it stopped and every job is done exactly once. Token usage
is counted per source and template (``tokens_in:<source>:<template>``, ``tokens_out:...``), cached
answers included (they are what the rows cost), and ``cached_requests`` says how many were reused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from winnow.pipeline.json_records import read_json, write_json
from winnow.pipeline.manifest import RephraseConfig
from winnow.pipeline.outcomes import OutcomeWriter, StageLayout
from winnow.pipeline.readers import stable_id
from winnow.pipeline.rephrase.chunks import chunk_text
from winnow.pipeline.rephrase.client import Completion, ContextOverflow, EndpointDown, LlmClient, RequestFailed
from winnow.pipeline.rephrase.postprocess import Checks, Rejected, postprocess
from winnow.pipeline.rephrase.routing import templates_for
from winnow.pipeline.rephrase.templates import Template, load_templates

MAX_SPLITS = 3  # a chunk the server finds too long is halved at most this many times
JOBS_PER_SLOT = 4  # jobs gathered per event-loop run, per concurrent request


@dataclass
class JobOutcome:
    """What one (document, template) job gave: a row, or a reject or error with its reason."""

    row: Document | None = None
    reason: str | None = None
    detail: str | None = None
    is_error: bool = False


class Rephraser(PipelineStep):
    """Passes documents through and adds their rephrasings (see the module docstring)."""

    name = "✍️ rephrase"
    type = "REPHRASE"

    def __init__(self, config: RephraseConfig, layout: StageLayout) -> None:
        super().__init__()
        self.config = config
        self.layout = layout

    @property
    def cache_dir(self) -> Path:
        return self.layout.stage_dir / "cache"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        templates = load_templates(self.config.templates)
        identify = _language_identifier(templates)
        loop = asyncio.new_event_loop()
        client = LlmClient(self.config)  # its semaphore and connections bind to the loop on first use
        batch: list[tuple[Document, Template]] = []
        size = JOBS_PER_SLOT * self.config.concurrency
        try:
            with (
                OutcomeWriter(self.layout, "rephrase") as rejects,
                OutcomeWriter(self.layout, "rephrase", kind="errors") as errors,
            ):
                for doc in data:
                    yield doc
                    attributes = doc.metadata.get("attributes") or {}
                    source = doc.metadata.get("source") or ""
                    for template_id in templates_for(self.config.routes, doc.id, source, attributes):
                        batch.append((doc, templates[template_id]))
                    if len(batch) >= size:
                        yield from self._finish(loop, client, batch, identify, rejects, errors, rank)
                        batch = []
                yield from self._finish(loop, client, batch, identify, rejects, errors, rank)
        finally:
            loop.run_until_complete(client.close())
            loop.close()

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        client: LlmClient,
        batch: list[tuple[Document, Template]],
        identify: Any,
        rejects: OutcomeWriter,
        errors: OutcomeWriter,
        rank: int,
    ) -> DocumentsPipeline:
        """Run a batch of jobs; yield their rows, record their rejects and errors. EndpointDown propagates."""
        if not batch:
            return
        jobs = [self._job(client, doc, template, identify) for doc, template in batch]
        outcomes = loop.run_until_complete(_gather(jobs))
        down = next((o for o in outcomes if isinstance(o, EndpointDown)), None)
        if down is not None:
            raise down
        for (doc, template), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            source = doc.metadata.get("source") or ""
            self.stat_update(f"in:{source}")
            if outcome.row is not None:
                self.stat_update(f"rephrased:{template.id}")
                yield outcome.row
                continue
            record = self._record(doc, template)
            kind = "errored" if outcome.is_error else "rejected"
            self.stat_update(f"{kind}_{outcome.reason}")
            (errors if outcome.is_error else rejects).write(record, rank, reason=outcome.reason, detail=outcome.detail)

    async def _job(self, client: LlmClient, doc: Document, template: Template, identify: Any) -> JobOutcome:
        """One (document, template) job."""
        budget = max(1, int(template.max_input_tokens * self.config.chars_per_token))
        chunks = chunk_text(doc.text, budget)
        if len(chunks) > self.config.max_chunks:
            return JobOutcome(reason="too_long", detail=f"{len(chunks)} chunks > max_chunks {self.config.max_chunks}")
        texts: list[str] = []
        usage = [0, 0]
        source = doc.metadata.get("source") or ""
        try:
            for chunk in chunks:
                for part, completion in await self._ask(client, chunk, template, 0):
                    usage[0] += completion.prompt_tokens
                    usage[1] += completion.completion_tokens
                    if completion.finish_reason != "stop":
                        return JobOutcome(reason="truncated", detail=f"finish_reason {completion.finish_reason!r}")
                    checks = Checks(source=part, identify=identify)
                    texts.append(postprocess(completion.text, template.postprocess, template.expected_prefix, checks))
        except Rejected as exc:
            return JobOutcome(reason=exc.reason, detail=str(exc))
        except RequestFailed as exc:
            return JobOutcome(reason=exc.reason, detail=str(exc), is_error=True)
        finally:
            self.stat_update(f"tokens_in:{source}:{template.id}", value=usage[0])
            self.stat_update(f"tokens_out:{source}:{template.id}", value=usage[1])
        return JobOutcome(row=self._row(doc, template, "\n\n".join(texts), len(chunks), usage))

    async def _ask(
        self, client: LlmClient, chunk: str, template: Template, splits: int
    ) -> list[tuple[str, Completion]]:
        """(chunk part, answer) pairs for a chunk: one, or more when the server made us cut it smaller."""
        key = self._cache_key(chunk, template)
        path = self.cache_dir / key[:2] / f"{key}.json"
        if (cached := read_json(path)) is not None:
            self.stat_update("cached_requests")
            return [(chunk, Completion(**cached))]
        try:
            completion = await client.complete(
                template.messages(chunk), template.max_output_tokens, template.sampling, template.grammar
            )
        except ContextOverflow as exc:
            if splits >= MAX_SPLITS or len(chunk) < 2:
                raise RequestFailed("context_overflow", f"still too long after {splits} halvings: {exc}") from None
            self.stat_update("context_splits")
            answers = []
            for part in chunk_text(chunk, len(chunk) // 2 + 1):
                answers += await self._ask(client, part, template, splits + 1)
            return answers
        self.stat_update("requests")
        write_json(path, completion.__dict__)
        return [(chunk, completion)]

    def _cache_key(self, chunk: str, template: Template) -> str:
        grammar = template.grammar if self.config.grammar else None
        parts = [chunk, template.hash, self.config.model, template.sampling, self.config.seed, grammar]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _row(self, doc: Document, template: Template, text: str, chunks: int, usage: list[int]) -> Document:
        metadata = {key: doc.metadata.get(key) for key in ("source", "url", "crawl", "language", "language_score")}
        metadata.update(
            synthetic_of=doc.id,
            style=template.style,
            attributes=dict(doc.metadata.get("attributes") or {}),
            meta={
                "template": template.id,
                "template_version": template.version,
                "template_hash": template.hash,
                "model": self.config.model,
                "seed": self.config.seed,
                "chunks": chunks,
                "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]},
            },
        )
        row_id = stable_id(doc.id, template.id, template.hash, self.config.model)
        return Document(text=text, id=row_id, metadata=metadata)

    @staticmethod
    def _record(doc: Document, template: Template) -> Document:
        """The reject/error record of a job: the parent's fields, the template as style."""
        metadata = {key: doc.metadata.get(key) for key in ("source", "url", "crawl", "language", "language_score")}
        metadata.update(synthetic_of=doc.id, style=template.style, meta={"template": template.id})
        return Document(text="", id=stable_id(doc.id, template.id, template.hash, "failed"), metadata=metadata)


async def _gather(jobs: list[Any]) -> list[Any]:
    """Run the jobs concurrently in the current loop; exceptions are returned, not raised."""
    return await asyncio.gather(*jobs, return_exceptions=True)


def _language_identifier(templates: dict[str, Template]) -> Any:
    """fastText language ID when some template checks the language, else None."""
    if not any(t.postprocess.language for t in templates.values()):
        return None
    from winnow.filters.fasttext_models import default_lid_model, identify, load_fasttext

    model = load_fasttext(str(default_lid_model()))
    return lambda text: identify(model, text)
