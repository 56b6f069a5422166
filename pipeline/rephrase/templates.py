"""Rephrasing templates: prompt and post-processing settings as versioned YAML data.

A template file holds one template: ``id``, ``version``, ``style`` (the ``style`` column of its rows),
``system`` and ``user`` text (``user`` has a ``{document}`` placeholder), the token limits, sampling
settings, an optional ``expected_prefix`` (stripped from answers), the post-processor settings and an
optional GBNF ``grammar``. Its ``hash`` is the SHA-256 of the file's canonical JSON, so an edited
template gets new cache keys and new row ids. Winnow ships eight (``pipeline/rephrase/templates``):
WRAP-like ``wikipedia``, ``qa``, ``easy``, ``hard`` and Nemotron-CC-like ``diverse_qa``, ``distill``,
``extract_knowledge``, ``knowledge_list``; a manifest adds its own files or folders.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SHIPPED = Path(__file__).parent / "templates"


class TemplateError(Exception):
    """A template file is missing, unreadable or invalid; the message names the file and the field."""


class PostProcess(BaseModel):
    """What an answer must look like to become a row."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["prose", "qa", "list"] = "prose"
    min_length_ratio: float = Field(0.1, ge=0, description="answer chars / source chars, at least")
    max_length_ratio: float = Field(3.0, gt=0, description="answer chars / source chars, at most")
    min_source_overlap: float = Field(0.0, ge=0, le=1, description="share of the answer's word n-grams in the source")
    ngram: int = Field(1, ge=1, le=5)
    language: str | None = Field(None, description="fastText label the answer must have, e.g. en")


class Template(BaseModel):
    """One rephrasing template."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    version: int = Field(ge=1)
    style: str
    description: str = ""
    system: str | None = None
    user: str
    max_input_tokens: int = Field(1024, ge=16)
    max_output_tokens: int = Field(1024, ge=16)
    sampling: dict[str, float] = Field(default_factory=dict)
    expected_prefix: str | None = None
    postprocess: PostProcess = Field(default_factory=PostProcess)
    grammar: str | None = None
    hash: str = ""

    @field_validator("user")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{document}" not in value:
            raise ValueError("needs a {document} placeholder")
        return value

    def messages(self, chunk: str) -> list[dict[str, str]]:
        """The chat messages for one chunk of a document."""
        user = {"role": "user", "content": self.user.replace("{document}", chunk)}
        return [{"role": "system", "content": self.system}, user] if self.system else [user]


def load_template(path: Path) -> Template:
    """The template in ``path``; TemplateError naming the file and field when it is not valid."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"{path}: cannot read ({exc})") from None
    if not isinstance(raw, dict):
        raise TemplateError(f"{path}: expected a mapping")
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    try:
        return Template.model_validate({**raw, "hash": digest})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise TemplateError(f"{path}: {problems}") from None


def load_templates(extra: list[str]) -> dict[str, Template]:
    """The shipped templates and those of ``extra`` files or folders (``*.yaml``), by id; later ones win."""
    paths = sorted(SHIPPED.glob("*.yaml"))
    for item in map(Path, extra):
        if item.is_dir():
            paths += sorted(item.glob("*.yaml"))
        elif item.is_file():
            paths.append(item)
        else:
            raise TemplateError(f"{item}: no such template file or folder")
    templates: dict[str, Template] = {}
    for path in paths:
        template = load_template(path)
        templates[template.id] = template
    return templates
