"""Benchmark: requests and output tokens per second of winnow's LLM client at concurrency 1, 4 and 16, and its overhead.

What it measures:

1. A server: llama.cpp's (``python -m llama_cpp.server``, llama-cpp-python) on loopback, serving the
   tests' tiny random-weight llama GGUF (``tests/llm_server.py``: 64-dim, 2 layers, ~0.5 MB),
   ``--n_threads 1``. Requests carry the test template ``tiny_prose``'s GBNF grammar, so every
   answer has the shape the post-processor expects (as in the tests).
2. For each concurrency (``--concurrency``, default 1 4 16): ``--requests`` requests (default 64;
   ``--quick`` 16) through ``winnow.pipeline.rephrase.client.LlmClient`` — the stage's client: the openai
   async client, the concurrency cap, the error mapping — each answer then through
   ``postprocess`` as the stage does. Documents are made of the template's vocabulary, each one
   different (no server-side prompt cache hits across requests). ``cN_req_per_s``: requests / wall
   seconds; ``cN_out_tok_per_s``: completion tokens / wall seconds.
3. Overhead: CPU-seconds of this process (the client: event loop, HTTP, JSON, post-processing)
   divided by the server process's CPU-seconds (``/proc/<pid>/stat``) over the concurrency-16 round,
   in percent: ``client_overhead_pct`` (target < 5). The tiny model makes the server's own time
   per request small, so this is a harsh setting for the client: real models cost the server
   orders of magnitude more per request.

Needs llama-cpp-python[server] and gguf (``make test`` installs them); exit 2 without. Ends with one
``RESULT`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.llm_server import LlamaServer, llama_cpp_available, write_tiny_model
from winnow.pipeline.manifest import RephraseConfig
from winnow.pipeline.rephrase.client import LlmClient
from winnow.pipeline.rephrase.postprocess import Checks, postprocess
from winnow.pipeline.rephrase.templates import Template, load_templates

NAME = "tiny_prose"
WORDS = ["river", "stone", "bridge", "market", "winter", "harbour", "garden", "lantern", "orchard", "meadow"]


def server_cpu(pid: int) -> float:
    """User + system CPU-seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def round_of(client: LlmClient, template: Template, documents: list[str]) -> tuple[int, int]:
    """(answers that passed post-processing, completion tokens) for one round of requests."""

    async def one(document: str) -> tuple[bool, int]:
        answer = await client.complete(
            template.messages(document), template.max_output_tokens, template.sampling, template.grammar
        )
        try:
            postprocess(answer.text, template.postprocess, template.expected_prefix, Checks(document))
        except Exception:
            return False, answer.completion_tokens
        return True, answer.completion_tokens

    results = await asyncio.gather(*(one(d) for d in documents))
    return sum(ok for ok, _ in results), sum(tokens for _, tokens in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="levels to measure")
    parser.add_argument("--quick", action="store_true", help="16 requests per level")
    args = parser.parse_args()
    if not llama_cpp_available():
        print("llama-cpp-python[server] and gguf are needed (make test installs them)", file=sys.stderr)
        return 2
    count = 16 if args.quick else args.requests
    rng = random.Random(0)
    template = load_templates([str(Path(__file__).resolve().parents[1] / "tests" / "rephrase_templates")])[NAME]
    with tempfile.TemporaryDirectory(prefix="winnow-rephrase-bench-") as work:
        server = LlamaServer(write_tiny_model(Path(work) / "tiny.gguf"), Path(work) / "server.log").start()
        try:
            results: dict[int, tuple[float, float, float]] = {}
            for level in args.concurrency:
                documents = [" ".join(rng.choice(WORDS) for _ in range(80)) for _ in range(count)]
                config = RephraseConfig(
                    endpoint=server.url, model="tiny", concurrency=level, grammar=True, routes=[{"templates": [NAME]}]
                )
                loop = asyncio.new_event_loop()
                client = LlmClient(config)  # made before the clock starts
                client_before, server_before = own_cpu(), server_cpu(server.process.pid)
                started = time.perf_counter()
                passed, tokens = loop.run_until_complete(round_of(client, template, documents))
                wall = time.perf_counter() - started
                client_cpu = own_cpu() - client_before
                serving = server_cpu(server.process.pid) - server_before
                loop.run_until_complete(client.close())
                loop.close()
                overhead = 100 * client_cpu / max(serving, 1e-9)
                results[level] = (count / wall, tokens / wall, overhead)
                print(
                    f"concurrency {level:>2}: {count} requests in {wall:.1f} s ({count / wall:.2f} req/s, "
                    f"{tokens / wall:.0f} output tok/s), {passed} passed post-processing; "
                    f"CPU client {client_cpu:.2f} s, server {serving:.2f} s ({overhead:.1f}%)"
                )
        finally:
            server.stop()
    rate = {level: values[0] for level, values in results.items()}
    top = max(results)
    print(
        "RESULT "
        + " ".join(f"c{level}_req_per_s={rate[level]:.2f}" for level in sorted(rate))
        + " "
        + " ".join(f"c{level}_out_tok_per_s={results[level][1]:.0f}" for level in sorted(results))
        + f" client_overhead_pct={results[top][2]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
