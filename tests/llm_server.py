"""A real OpenAI-compatible LLM server for tests: llama.cpp's (llama-cpp-python) serving a tiny random model.

:func:`write_tiny_model` writes a llama-architecture GGUF with random weights (a few hundred KB) with
the ``gguf`` package: a byte-fallback SentencePiece-style vocabulary (any text tokenizes), and a chat
template that renders the text parts of messages and ignores images (the model cannot see; the HTTP
path, grammars, parsing and retries are what the tests exercise). :class:`LlamaServer` starts
``python -m llama_cpp.server`` on a free loopback port as a child process and waits until it answers.
Its gibberish has the shape a caller needs when the request carries a GBNF ``grammar``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from tests.server_process import ServerProcess, free_port

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% else %}{{ message['role'] }}: {% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6  # SentencePiece token types as GGUF stores them


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python with its server extra is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "uvicorn", "gguf"))


def _vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Control tokens, the 256 byte tokens, then printable characters and a few word pieces."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256
    pieces = [chr(c) for c in range(33, 127)] + ["▁" + chr(c) for c in range(97, 123)]
    pieces += ["▁the", "▁of", "▁and", "▁page", "▁text", "---", "True", "False", "▁en"]
    tokens += pieces
    types += [NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    return tokens, scores, types


def write_tiny_model(path: Path, n_embd: int = 64, n_layer: int = 2, n_head: int = 4, seed: int = 0) -> Path:
    """A random-weight llama GGUF at ``path`` (f32, ~n_vocab x n_embd x 2 + layers): loads in well under a second."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocabulary()
    n_ff = 2 * n_embd
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("winnow-tiny-random")
    writer.add_context_length(8192)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    def weights(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    ones = np.ones(n_embd, dtype=np.float32)
    weights("token_embd.weight", len(tokens), n_embd)
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        for part in ("q", "k", "v", "output"):
            weights(f"blk.{i}.attn_{part}.weight", n_embd, n_embd)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        weights(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        weights(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        weights(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    writer.add_tensor("output_norm.weight", ones)
    weights("output.weight", len(tokens), n_embd)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


class LlamaServer(ServerProcess):
    """``python -m llama_cpp.server`` serving ``model`` on loopback; ``url`` is its ``/v1`` base URL."""

    def __init__(self, model: Path, log: Path, n_ctx: int = 8192, port: int | None = None) -> None:
        self.model, self.log, self.n_ctx = model, log, n_ctx
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> LlamaServer:
        """Start the server and wait until ``/v1/models`` answers; RuntimeError with its log if it does not."""
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", "1", "--verbose", "false"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"llama.cpp server exited ({self.process.returncode}): {self.log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama.cpp server did not answer within {timeout_s} s: {self.log.read_text()[-2000:]}")
