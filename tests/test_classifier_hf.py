"""Hugging Face sequence-classification / regression models by path, with tiny randomly initialised BERT models
that the test writes (a word-level tokenizer over the test's own words): batched = one at a time, truncation
to the model's maximum length, a regression head's logit, a two-label head's probability, `eval` on a folder.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from winnow.filters.classifier_score import ModelError, load_classifier, score_texts

WinnowCli = Callable[..., subprocess.CompletedProcess[str]]
WORDS = ["the", "river", "basin", "museum", "century", "free", "cash", "prize", "click", "now", "lol", "ok"]


def write_tiny_model(folder: Path, num_labels: int, id2label: dict[int, str] | None = None) -> Path:
    """A 2-layer BERT with ``num_labels`` outputs, random weights, max length 16, and its tokenizer."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        model_max_length=16,
    )  # fmt: skip
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=16, num_labels=num_labels, **({"id2label": id2label} if id2label else {}),
    )  # fmt: skip
    import torch

    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


TEXTS = ["the river basin museum", "free cash prize click now", "lol ok", " ".join(WORDS * 20), ""]


def test_regression_model_batched_and_truncated(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "edu", num_labels=1)
    model = load_classifier(folder)
    assert model.regression and model.max_length == 16 and model.device == "cpu"
    scores = score_texts(model, TEXTS)
    assert scores.dtype == np.float32 and scores.shape == (5,) and np.isfinite(scores).all()
    alone = np.concatenate([score_texts(model, [t]) for t in TEXTS])
    assert np.allclose(scores, alone, atol=1e-5)  # padding in a batch changes nothing
    longer = " ".join(WORDS * 20) + " museum museum"
    assert score_texts(model, [longer])[0] == pytest.approx(scores[3], abs=1e-6)  # past 16 pieces is cut
    import torch

    inputs = model.tokenizer(TEXTS[:1], return_tensors="pt")
    with torch.inference_mode():
        direct = model.model(**inputs).logits[0, 0].item()
    assert scores[0] == pytest.approx(direct, abs=1e-5)  # the regression head's logit, unclipped


def test_two_label_model_probability_and_eval(tmp_path: Path, winnow_cli: WinnowCli) -> None:
    folder = write_tiny_model(tmp_path / "cls", num_labels=2, id2label={0: "lq", 1: "hq"})
    model = load_classifier(folder, "__label__hq")
    assert model.index == 1
    scores = score_texts(model, TEXTS)
    assert ((scores >= 0) & (scores <= 1)).all()
    flipped = load_classifier(folder, "lq")
    assert np.allclose(score_texts(flipped, TEXTS), 1 - scores, atol=1e-5)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps({"text": t, "label": i % 2}) for i, t in enumerate(TEXTS[:4] * 3)) + "\n")
    report = tmp_path / "r.json"
    result = winnow_cli("classifier", "eval", folder, "--labels", labels, "--report", report, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text())["documents"] == 12
    three = write_tiny_model(tmp_path / "three", num_labels=3)
    with pytest.raises(ModelError, match="no label 'hq'"):
        load_classifier(three, "hq")
