"""Requests to an OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, SGLang, llama.cpp, hosted APIs).

:class:`LlmClient` wraps ``openai.AsyncOpenAI`` — which already retries connection errors, 429 and
5xx with exponential backoff (``max_retries``) and honours ``timeout`` — with a concurrency cap and
a mapping of what can go wrong to what the stage does about it. Requests go through the client's
plain ``post`` (its documented way to reach any endpoint, retries and errors included): building and
parsing its typed models cost more CPU per request than a small model's whole answer.

- :class:`ContextOverflow` (HTTP 400 that says the prompt is too long): the caller cuts the chunk smaller;
- :class:`RequestFailed` with reason ``bad_request``, ``rate_limited``, ``timeout``, ``server_error``
  (once the retries are spent) or ``bad_response`` (not a chat completion): an error record;
- :class:`EndpointDown` (the server cannot be reached at all): the task stops, and a rerun resumes
  from the request cache once the server is back.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Any

import openai

from winnow.pipeline.manifest import RephraseConfig

CONTEXT_OVERFLOW = re.compile(r"context|too long|exceed|maximum .*tokens|n_ctx", re.IGNORECASE)


class ContextOverflow(Exception):
    """The server says the prompt does not fit its context."""


class EndpointDown(Exception):
    """The server cannot be reached (after the client's retries)."""


class RequestFailed(Exception):
    """A request that failed for good; ``reason`` is the error record's reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class LlmClient:
    """One endpoint, at most ``concurrency`` requests in flight; use inside one event loop."""

    def __init__(self, config: RephraseConfig) -> None:
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        self.config = config
        self._client = openai.AsyncOpenAI(
            base_url=config.endpoint, api_key=key or "unused", timeout=config.timeout_s, max_retries=config.max_retries
        )
        self._slots = asyncio.Semaphore(config.concurrency)

    async def close(self) -> None:
        await self._client.close()

    async def complete(
        self, messages: list[dict[str, str]], max_tokens: int, sampling: dict[str, float], grammar: str | None
    ) -> Completion:
        """The model's answer to ``messages``; raises ContextOverflow, RequestFailed or EndpointDown."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "seed": self.config.seed,
            **sampling,
        }
        if grammar and self.config.grammar:
            body["grammar"] = grammar
        async with self._slots:
            try:  # the plain `post` keeps the client's retries and errors, without its per-call typing transforms
                response = await self._client.post("/chat/completions", body=body, cast_to=object)
            except openai.BadRequestError as exc:
                if CONTEXT_OVERFLOW.search(str(exc)):
                    raise ContextOverflow(str(exc)) from None
                raise RequestFailed("bad_request", f"HTTP 400: {exc}") from None
            except openai.RateLimitError as exc:
                detail = f"HTTP 429 after {self.config.max_retries} retries: {exc}"
                raise RequestFailed("rate_limited", detail) from None
            except openai.APITimeoutError:
                detail = f"no answer within {self.config.timeout_s:g} s, {self.config.max_retries} retries"
                raise RequestFailed("timeout", detail) from None
            except openai.APIConnectionError as exc:
                raise EndpointDown(f"{self.config.endpoint}: {exc} (after {self.config.max_retries} retries)") from None
            except openai.APIStatusError as exc:
                detail = f"HTTP {exc.status_code} after {self.config.max_retries} retries: {exc}"
                raise RequestFailed("server_error", detail) from None
        try:
            choice = response["choices"][0]
            usage = response.get("usage") or {}
            return Completion(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason") or "",
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise RequestFailed("bad_response", f"not a chat completion ({exc!r}): {str(response)[:200]}") from None
