"""Hugging Face sequence-classification and regression models as quality classifiers (the FineWeb-Edu
classifier's format): a model folder by path, loaded offline with ``transformers``.

The folder holds ``config.json`` (an ``...ForSequenceClassification`` architecture), the weights and the
tokenizer. Texts are scored in batches of ``batch_size``, each truncated to the model's maximum length (the
smaller of the tokenizer's ``model_max_length`` and the config's ``max_position_embeddings``), padded per
batch; on CUDA the model runs in bfloat16, on CPU in float32. The score is the single logit of a regression
head (``num_labels`` 1: FineWeb-Edu's 0-5 grade, unclipped), or the softmax probability of the positive label:
the label whose name in ``id2label`` is ``label`` (``hq``, ``__label__hq``), else label 1 of a two-label model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class HFClassifier:
    """A sequence-classification model folder loaded for scoring: ``score(texts)`` -> float32 scores."""

    def __init__(self, folder: Path, label: str = "hq", batch_size: int = 32, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
        self.model = model.to(self.device).eval()
        config = self.model.config
        limits = [getattr(config, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        self.max_length = min(int(n) for n in limits if n and n < 1_000_000) if any(limits) else 512
        self.batch_size = batch_size
        self.regression = config.num_labels == 1
        self.index = None if self.regression else self._label_index(config.id2label, label)

    @staticmethod
    def _label_index(id2label: dict[int, str], label: str) -> int:
        """Index of the positive label (ValueError naming the labels when there is none to choose)."""
        wanted = {label, label.removeprefix("__label__")}
        for index, name in id2label.items():
            if name in wanted:
                return int(index)
        if len(id2label) == 2:
            return 1
        raise ValueError(f"no label {label!r} among {', '.join(map(str, id2label.values()))}")

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """The regression logit, or P(positive label), of each text in order."""
        import torch

        scores = np.zeros(len(texts), np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = [t[: self.max_length * 16] for t in texts[start : start + self.batch_size]]
                inputs = self.tokenizer(
                    batch, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
                ).to(self.device)
                logits = self.model(**inputs).logits.float()
                values = logits[:, 0] if self.regression else torch.softmax(logits, dim=-1)[:, self.index]
                scores[start : start + len(batch)] = values.cpu().numpy()
        return scores
