"""The GPU OCR engine: a vision-language model behind an OpenAI-compatible endpoint, olmOCR-style.

A page is rendered to PNG with its longest side ``image_longest_side`` pixels and sent with a prompt
asking for the page's text after a short front matter::

    ---
    primary_language: en
    is_rotation_valid: True
    rotation_correction: 0
    is_table: False
    is_diagram: False
    ---
    The text of the page ...

The ``openai`` client retries connection errors, 429 and 5xx with exponential backoff. On top of
that each page gets one attempt per temperature in ``temperatures`` (rising): an answer that is
truncated (``finish_reason`` other than ``stop``), lacks the front matter, or says the page is not
upright moves on to the next attempt — a sideways page is turned by ``rotation_correction`` first.
When every attempt fails the engine raises :class:`VlmFailed` and the page falls back to the next
engine. With ``grammar: true`` the request carries a GBNF grammar of the answer's shape (llama.cpp
server's ``grammar`` field), so even a weak model answers in it.

Rendering (:func:`page_png`) touches pdfium, which is not thread-safe, and must stay on the caller's
thread; :meth:`VlmEngine.recognise_png` only encodes images and talks HTTP, so the OCR stage runs up
to ``concurrency`` of a PDF's pages through it at once (a GPU server batches them).
"""

from __future__ import annotations

import base64
import io
import os
import re
from dataclasses import dataclass, field
from typing import Any

import pypdfium2 as pdfium
from PIL import Image

from winnow.pipeline.manifest import VlmConfig

PROMPT = (
    "The image is one page of a document. Write out all of its text in the order a person would read it, "
    "as plain text; use Markdown for tables and LaTeX for equations. Leave out running headers, footers and "
    "page numbers, and never add text that is not on the page. Start your answer with this front matter, "
    "then the text:\n"
    "---\n"
    "primary_language: <two-letter language code, or null when there is no text>\n"
    "is_rotation_valid: <True if the page is upright, else False>\n"
    "rotation_correction: <0, 90, 180 or 270: degrees clockwise that would turn the page upright>\n"
    "is_table: <True if the page is mostly a table>\n"
    "is_diagram: <True if the page is mostly a diagram or picture>\n"
    "---"
)

ANSWER_GRAMMAR = r"""root ::= "---\n" head "---\n" text
head ::= "primary_language: " lang "\n" "is_rotation_valid: " bool "\n" "rotation_correction: " rot "\n" flags
flags ::= "is_table: " bool "\n" "is_diagram: " bool "\n"
lang ::= [a-z] [a-z] | "null"
bool ::= "True" | "False"
rot ::= "0" | "90" | "180" | "270"
text ::= [a-zA-Z0-9 .,;:'()\n-]{0,2000}
"""

FRONT_MATTER = re.compile(r"\A\s*---\s*\n(?P<head>.*?)\n---[ \t]*(?:\n(?P<body>.*))?\Z", re.DOTALL)
ROTATIONS = (0, 90, 180, 270)


class VlmFailed(Exception):
    """Every attempt at a page failed; the message lists why each did."""


@dataclass
class PageAnswer:
    """A parsed answer: the front matter's fields and the page text."""

    text: str
    language: str | None
    rotation_valid: bool
    rotation_correction: int
    is_table: bool
    is_diagram: bool


@dataclass
class VlmResult:
    text: str
    language: str | None
    attempts: int
    temperature: float
    rotated: int  # degrees clockwise the page was turned before the answer that was kept
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: list[str] = field(default_factory=list)


def parse_answer(content: str | None) -> PageAnswer:
    """The front matter and text of an answer; ValueError naming what is wrong with it."""
    match = FRONT_MATTER.match(content or "")
    if not match:
        raise ValueError("answer does not start with a --- front matter block")
    fields: dict[str, str] = {}
    for line in match["head"].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    missing = [k for k in ("primary_language", "is_rotation_valid", "rotation_correction") if k not in fields]
    if missing:
        raise ValueError(f"front matter lacks {', '.join(missing)}")
    try:
        rotation = int(fields["rotation_correction"])
    except ValueError:
        raise ValueError(f"rotation_correction is {fields['rotation_correction']!r}, not a number") from None
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation_correction is {rotation}, not one of {ROTATIONS}")
    language = fields["primary_language"]
    return PageAnswer(
        text=(match["body"] or "").strip(),
        language=None if language.lower() in ("null", "none", "") else language,
        rotation_valid=_flag(fields["is_rotation_valid"]),
        rotation_correction=rotation,
        is_table=_flag(fields.get("is_table", "False")),
        is_diagram=_flag(fields.get("is_diagram", "False")),
    )


def _flag(value: str) -> bool:
    if value.lower() in ("true", "yes"):
        return True
    if value.lower() in ("false", "no"):
        return False
    raise ValueError(f"{value!r} is not True or False")


def page_png(page: pdfium.PdfPage, longest_side: int) -> bytes:
    """The page rendered to PNG with its longest side ``longest_side`` pixels."""
    scale = longest_side / max(page.get_size())
    buffer = io.BytesIO()
    page.render(scale=scale).to_pil().save(buffer, format="PNG")
    return buffer.getvalue()


def turned_png(png: bytes, clockwise: int) -> bytes:
    """The PNG image turned ``clockwise`` degrees."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).rotate(-clockwise, expand=True).save(buffer, format="PNG")
    return buffer.getvalue()


class VlmEngine:
    """Sends pages to the endpoint; one HTTP client per engine."""

    name = "vlm"

    def __init__(self, config: VlmConfig, client: Any | None = None) -> None:
        import openai

        self.config = config
        self._errors = (openai.APIError, openai.APIConnectionError)
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        self._client = client or openai.OpenAI(
            base_url=config.endpoint, api_key=key or "unused", timeout=config.timeout_s, max_retries=2
        )

    def close(self) -> None:
        self._client.close()

    def recognise(self, page: pdfium.PdfPage) -> VlmResult:
        """The page's text from the model; VlmFailed when no attempt gives a usable answer."""
        return self.recognise_png(page_png(page, self.config.image_longest_side))

    def recognise_png(self, image: bytes) -> VlmResult:
        """The text of a page rendered by :func:`page_png`; safe to call from several threads at once."""
        config = self.config
        rotated = 0
        errors: list[str] = []
        usage = [0, 0]
        for attempt, temperature in enumerate(config.temperatures, start=1):
            try:
                response = self._client.chat.completions.create(
                    model=config.model,
                    messages=_messages(image),
                    temperature=temperature,
                    max_tokens=config.max_tokens,
                    extra_body={"grammar": ANSWER_GRAMMAR} if config.grammar else None,
                )
            except self._errors as exc:
                errors.append(f"attempt {attempt}: {type(exc).__name__}: {exc}")
                continue
            if response.usage is not None:
                usage[0] += response.usage.prompt_tokens or 0
                usage[1] += response.usage.completion_tokens or 0
            choice = response.choices[0]
            if choice.finish_reason != "stop":
                errors.append(f"attempt {attempt}: truncated (finish_reason {choice.finish_reason})")
                continue
            try:
                answer = parse_answer(choice.message.content)
            except ValueError as exc:
                errors.append(f"attempt {attempt}: {exc}")
                continue
            if not answer.rotation_valid and answer.rotation_correction and not rotated:
                rotated = answer.rotation_correction
                image = turned_png(image, rotated)
                errors.append(f"attempt {attempt}: page not upright, turned {rotated} degrees")
                continue
            return VlmResult(answer.text, answer.language, attempt, temperature, rotated, *usage, errors)
        raise VlmFailed("; ".join(errors) or "no attempts configured")


def _messages(png: bytes) -> list[dict[str, Any]]:
    url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return [
        {
            "role": "user",
            "content": [{"type": "text", "text": PROMPT}, {"type": "image_url", "image_url": {"url": url}}],
        }
    ]
