"""LLM annotation of documents for classifier training (FineWeb-Edu's recipe): sample, ask, parse, write.

- Rubrics are data: YAML files (``filters/rubrics/``: ``fineweb_edu`` (the additive 0-5 educational-value
  rubric), ``general_quality``; or any file of the same shape): ``id``, ``version``, ``system``, ``user`` with
  a ``{document}`` placeholder, ``score_min``/``score_max``, ``max_input_chars`` (a document is cut to this),
  ``max_output_tokens``, ``sampling``. A rubric's hash is the SHA-256 of its parsed content.
- Sampling: :func:`sample_documents` reads the sources once, keeping a seeded reservoir of at most ``n``
  documents per ``source`` column value, then takes from each source a share proportional to its document
  count (largest remainders), so a sample of a run's stage is stratified by source with bounded memory.
- Asking: the rephrase stage's :class:`winnow.pipeline.rephrase.client.LlmClient` (concurrency cap, retries
  with backoff, error mapping). The answer is constrained to ``{"rationale": "...", "score": N}`` with N
  in the rubric's range, by a GBNF grammar (llama.cpp's ``grammar`` field) or, for other servers, a JSON
  schema (``response_format``), as ``constrain`` says.
- Cache and resume: each answer is stored as ``<cache>/<key[:2]>/<key>.json`` (key: SHA-256 of text, rubric
  hash, model, sampling, seed, constraint) as soon as it arrives, so a rerun asks only for documents
  without an answer; a server that goes away stops the run (:class:`EndpointDown`) with the answers so far
  kept, and the labelled file is written only once every sampled document has its answer.
- Output: JSONL rows ``id, source, text, score, rationale, model, template, template_hash`` in sample
  order; an answer that does not parse to a score in range gets ``score`` null and ``error`` (counted).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from winnow.filters.classifier_data import ResolvedSource
from winnow.pipeline.json_records import read_json, write_json
from winnow.pipeline.readers import read_document_file

RUBRICS_DIR = Path(__file__).with_name("rubrics")
CONSTRAINTS = ("grammar", "json_schema", "none")
RATIONALE_CHARS = 160  # the grammar's bound on the rationale, so an answer always ends within max_output_tokens
_SCORE = re.compile(r'"score"\s*:\s*(-?\d+(?:\.\d+)?)')


class RubricError(ValueError):
    """A rubric file that cannot be used."""


@dataclass(frozen=True)
class Rubric:
    """A scoring prompt and its scale."""

    id: str
    version: int
    system: str
    user: str
    score_min: int
    score_max: int
    max_input_chars: int
    max_output_tokens: int
    sampling: dict[str, float]
    hash: str

    def messages(self, text: str) -> list[dict[str, str]]:
        """The chat messages for one document (cut to ``max_input_chars``)."""
        user = self.user.replace("{document}", text[: self.max_input_chars])
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def grammar(self) -> str:
        """GBNF for ``{"rationale": "...", "score": N}``: a rationale of at most ``RATIONALE_CHARS`` characters
        (no quote, backslash or control character), N an integer of the scale."""
        scores = " | ".join(f'"{n}"' for n in range(self.score_min, self.score_max + 1))
        return (
            'root ::= "{\\"rationale\\": \\"" text "\\", \\"score\\": " score "}"\n'
            f'text ::= [^"\\\\\\x00-\\x1F\\x7F]{{0,{RATIONALE_CHARS}}}\n'
            f"score ::= {scores}\n"
        )

    def json_schema(self) -> dict[str, Any]:
        """The same answer as a JSON schema (``response_format``)."""
        score = {"type": "integer", "minimum": self.score_min, "maximum": self.score_max}
        properties = {"rationale": {"type": "string"}, "score": score}
        return {"type": "object", "properties": properties, "required": ["rationale", "score"]}


def available_rubrics() -> list[str]:
    """Names of the shipped rubrics."""
    return sorted(p.stem for p in RUBRICS_DIR.glob("*.yaml"))


def load_rubric(name_or_path: str) -> Rubric:
    """A shipped rubric by name, or a rubric YAML file by path; RubricError naming what is wrong."""
    by_name = "/" not in name_or_path and not name_or_path.endswith(".yaml")
    path = RUBRICS_DIR / f"{name_or_path}.yaml" if by_name else Path(name_or_path)
    if not path.is_file():
        raise RubricError(f"rubric {name_or_path}: no such file (shipped: {', '.join(available_rubrics())})")
    try:
        data = yaml.safe_load(path.read_text())
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        rubric = Rubric(
            id=str(data["id"]), version=int(data["version"]), system=str(data["system"]), user=str(data["user"]),
            score_min=int(data["score_min"]), score_max=int(data["score_max"]),
            max_input_chars=int(data["max_input_chars"]), max_output_tokens=int(data["max_output_tokens"]),
            sampling=dict(data.get("sampling") or {}), hash=digest,
        )  # fmt: skip
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise RubricError(f"rubric {path}: {type(exc).__name__}: {exc}") from None
    if "{document}" not in rubric.user or rubric.score_min >= rubric.score_max:
        raise RubricError(f"rubric {path}: needs {{document}} in `user` and score_min < score_max")
    return rubric


@dataclass
class Sampled:
    """A sampled document."""

    id: str
    source: str
    text: str


@dataclass
class Sample:
    """The sample, and how many documents each source had."""

    documents: list[Sampled]
    per_source: Counter[str] = field(default_factory=Counter)


def _documents(sources: Sequence[ResolvedSource]) -> Iterator[Sampled]:
    for resolved in sources:
        for file in resolved.files:
            if isinstance(file, Path):
                yield Sampled(file.name, resolved.argument, file.read_text(encoding="utf-8", errors="replace"))
                continue
            for index, doc in enumerate(read_document_file(file)):
                if doc.metadata.get("read_error") or not doc.text.strip():
                    continue
                source = str(doc.metadata.get("source") or file.source or resolved.argument)
                yield Sampled(str(doc.id or f"{file.path}:{index}"), source, doc.text)


def sample_documents(sources: Sequence[ResolvedSource], n: int, seed: int) -> Sample:
    """``n`` documents (or all, if fewer), stratified by source, drawn with ``seed``."""
    rng = random.Random(seed)
    reservoirs: dict[str, list[Sampled]] = {}
    counts: Counter[str] = Counter()
    for doc in _documents(sources):
        counts[doc.source] += 1
        pool = reservoirs.setdefault(doc.source, [])
        if len(pool) < n:
            pool.append(doc)
        elif (slot := rng.randrange(counts[doc.source])) < n:
            pool[slot] = doc
    total = sum(counts.values())
    if total <= n:
        return Sample([d for pool in reservoirs.values() for d in pool], counts)
    quotas = {s: n * c / total for s, c in counts.items()}
    share = {s: int(q) for s, q in quotas.items()}
    for s in sorted(quotas, key=lambda s: (share[s] - quotas[s], s))[: n - sum(share.values())]:
        share[s] += 1
    chosen = [d for s in sorted(reservoirs) for d in rng.sample(reservoirs[s], share[s])]
    return Sample(chosen, counts)


@dataclass
class AnnotateConfig:
    """The endpoint and how to ask it (the attributes :class:`LlmClient` reads)."""

    endpoint: str
    model: str
    cache: Path
    constrain: str = "grammar"
    concurrency: int = 4
    timeout_s: float = 120
    max_retries: int = 2
    seed: int = 0
    api_key_env: str | None = None
    grammar: bool = True  # LlmClient sends a grammar only when this is set


def parse_answer(text: str, rubric: Rubric) -> tuple[float | None, str, str | None]:
    """(score, rationale, error) from the JSON answer, else from a ``"score": N`` in it; out of range is an error."""
    rationale, score = "", None
    try:
        answer = json.loads(text)
        if isinstance(answer, dict):
            rationale = str(answer.get("rationale") or "")
            score = answer.get("score")
    except ValueError:
        if match := _SCORE.search(text):
            score = float(match.group(1))
    if isinstance(score, bool) or not isinstance(score, int | float):
        return None, rationale, "no score in the answer"
    if not rubric.score_min <= score <= rubric.score_max:
        return None, rationale, f"score {score} outside {rubric.score_min}-{rubric.score_max}"
    return float(score), rationale, None


def cache_key(text: str, rubric: Rubric, config: AnnotateConfig) -> str:
    """What an answer depends on, hashed."""
    parts = [text[: rubric.max_input_chars], rubric.hash, config.model, rubric.sampling, config.seed, config.constrain]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass
class Progress:
    """What a run did: answers reused from the cache, requested, tokens, and answers that did not parse."""

    cached: int = 0
    requested: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed: Counter[str] = field(default_factory=Counter)


async def _annotate(
    docs: Sequence[Sampled], rubric: Rubric, config: AnnotateConfig, progress: Progress, on_done: Callable[[], None]
) -> list[dict[str, Any]]:
    from winnow.pipeline.rephrase.client import LlmClient, RequestFailed

    client = LlmClient(config)  # type: ignore[arg-type]  # reads the endpoint fields RephraseConfig also has
    grammar = rubric.grammar() if config.constrain == "grammar" else None
    sampling: dict[str, Any] = dict(rubric.sampling)
    if config.constrain == "json_schema":
        sampling["response_format"] = {
            "type": "json_schema", "json_schema": {"name": "rating", "schema": rubric.json_schema()},
        }  # fmt: skip

    async def one(doc: Sampled) -> dict[str, Any]:
        path = config.cache / (key := cache_key(doc.text, rubric, config))[:2] / f"{key}.json"
        answer = read_json(path)
        if answer is not None:
            progress.cached += 1
        else:
            try:
                completion = await client.complete(
                    rubric.messages(doc.text), rubric.max_output_tokens, sampling, grammar
                )
            except RequestFailed as exc:
                progress.failed[exc.reason] += 1
                on_done()
                return {"error": f"{exc.reason}: {exc}"}
            answer = dict(completion.__dict__)
            write_json(path, answer)
            progress.requested += 1
        progress.prompt_tokens += int(answer["prompt_tokens"])
        progress.completion_tokens += int(answer["completion_tokens"])
        on_done()
        return answer

    try:
        return list(await asyncio.gather(*(one(d) for d in docs)))
    finally:
        await client.close()


def annotate(
    docs: Sequence[Sampled], rubric: Rubric, config: AnnotateConfig, output: Path, on_done: Callable[[], None]
) -> Progress:
    """Label ``docs`` and write ``output`` (JSONL); raises the client's EndpointDown with the answers so far
    cached (nothing written), so a rerun resumes."""
    progress = Progress()
    answers = asyncio.run(_annotate(docs, rubric, config, progress, on_done))
    rows = []
    for doc, answer in zip(docs, answers, strict=True):
        if "error" in answer:  # the request failed for good (counted as it happened)
            score, rationale, error = None, "", str(answer["error"])
        else:
            score, rationale, error = parse_answer(answer["text"], rubric)
            progress.failed["unparsed"] += error is not None
        row: dict[str, Any] = {"id": doc.id, "source": doc.source, "text": doc.text, "score": score}
        row |= {"rationale": rationale, "model": config.model}
        row |= {"template": rubric.id, "template_version": rubric.version, "template_hash": rubric.hash}
        if error is not None:
            row["error"] = error
        rows.append(row)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(output)
    return progress
