"""Training a DCLM-style fastText quality classifier: positives vs negatives -> ``<model>.bin`` + ``<model>.card.json``.

Steps: balance the classes (the larger one is down-sampled to the smaller, with the seed), cap each at
``max_per_class``, hold out a share of each class (stratified, default 10%), write the training split in
fastText's format (``__label__hq`` / ``__label__lq`` + ``winnow.filters.classifier_text.normalize``d text, lines
shuffled) to a temporary folder, train, score the held-out split, and write the model and its card.

fastText runs in a fresh child process (``python -m winnow.filters.classifier_train``). fastText 0.9.2
initialises only the first ``thread``/10 of its input matrix and leaves the rest as malloc returned
it: zeros when the memory is new to the process, leftovers (NaN included) when it is reused heap, so
training in a process that has done other work fails at random with "Encountered NaN" (always, for
small models). The child runs with glibc's ``MALLOC_PERTURB_=255``, which zero-fills every allocation,
so the rest of the matrix starts at zero, as in a fresh process. It also checks that the weights and
a few predictions are finite; a child that fails or crashes is retried once in a new process, then
:class:`TrainingError` carries its last error line. The child's progress output drives ``on_progress``.

Size: fastText's input matrix is (vocabulary + ``bucket``) x ``dim`` float32, so the defaults here
(``bucket`` 500,000, ``dim`` 32, word bigrams) give models of about 64 MB plus 128 bytes per
vocabulary word, where fastText's own defaults (2,000,000 x 100) give 800 MB.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from winnow.filters.classifier_score import (
    NEGATIVE_LABEL,
    POSITIVE_LABEL,
    check_classifier,
    check_structure,
    score_texts,
)
from winnow.filters.classifier_text import MAX_CHARS, normalize
from winnow.pipeline.json_records import write_json
from winnow.pipeline.version import winnow_version

# numpy, the metrics, fastText and the readers are imported where they are used: `winnow --help` imports this
# module for DEFAULT_PARAMS and LOSSES
if TYPE_CHECKING:
    from winnow.filters.classifier_data import ClassTexts

CARD_FORMAT = "winnow-classifier-card/1"
HELD_OUT_NOTE = (
    "measured on held-out documents of the training seeds themselves, not on other text: "
    "`winnow classifier eval MODEL --labels FILE` on human judgments says how well it ranks web documents"
)
FASTTEXT_PACKAGE = "fasttext-numpy2-wheel"
LOSSES = ("softmax", "hs", "ns", "ova")
# hyperparameters with their own command-line option, and their defaults (thread: the CPUs this process may use)
DEFAULT_PARAMS: dict[str, Any] = {
    "wordNgrams": 2,
    "dim": 32,
    "bucket": 500_000,
    "epoch": 5,
    "lr": 0.1,
    "minCount": 2,
    "loss": "softmax",
}
# the rest of fastText's train_supervised arguments (settable with --param), with fastText's defaults
OTHER_PARAMS: dict[str, Any] = {
    "ws": 5,
    "minCountLabel": 0,
    "minn": 0,
    "maxn": 0,
    "neg": 5,
    "lrUpdateRate": 100,
    "t": 1e-4,
    "pretrainedVectors": "",
    "autotuneValidationFile": "",
    "autotuneMetric": "f1",
    "autotunePredictions": 1,
    "autotuneDuration": 300,
    "autotuneModelSize": "",
}
_PROGRESS = re.compile(r"Progress:\s*([\d.]+)%")
_LABEL_TOKEN = re.compile(r"(?<!\S)__label__\S*")  # fastText would read such a word as a label


class TrainingError(RuntimeError):
    """fastText training failed (twice, each time in a fresh process)."""


def default_threads() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` for fastText arguments without their own option, typed like fastText's
    defaults; ValueError naming the bad pair."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"--param {pair!r}: expected key=value")
        if key in DEFAULT_PARAMS or key in ("thread", "seed"):
            raise ValueError(f"--param {key}: use its own option (winnow classifier train --help)")
        if key not in OTHER_PARAMS:
            raise ValueError(f"--param {key}: not a fastText train_supervised argument ({', '.join(OTHER_PARAMS)})")
        kind = type(OTHER_PARAMS[key])
        try:
            params[key] = kind(value)
        except ValueError:
            raise ValueError(f"--param {key}={value}: expected {kind.__name__}") from None
    return params


@dataclass
class TrainConfig:
    """Everything ``train_classifier`` needs besides the texts; ``params`` go to ``fasttext.train_supervised``."""

    output: Path
    params: dict[str, Any]
    holdout: float = 0.1
    seed: int = 0
    balance: bool = True
    max_per_class: int | None = None
    holdout_dir: Path | None = None
    threshold: float = 0.5

    @property
    def card_path(self) -> Path:
        return self.output.with_suffix(".card.json")


@dataclass
class Split:
    """The documents of one class chosen for training and held out (indices into its texts)."""

    train: list[int]
    held_out: list[int]


def split_classes(
    positive: ClassTexts, negative: ClassTexts, config: TrainConfig
) -> tuple[Split, Split, dict[str, int]]:
    """Balanced (or not), capped, stratified train / held-out splits, and the size of each class used.
    ValueError when a class has too few documents."""
    rng = random.Random(config.seed)
    sizes = {"positive": len(positive.texts), "negative": len(negative.texts)}
    target = min(sizes.values()) if config.balance else None
    splits = []
    for name, texts in (("positive", positive), ("negative", negative)):
        keep = len(texts.texts) if target is None else target
        if config.max_per_class is not None:
            keep = min(keep, config.max_per_class)
        if keep < (2 if config.holdout > 0 else 1):
            raise ValueError(f"the {name} class has {keep} document(s) to use: too few to train and hold out")
        chosen = rng.sample(range(len(texts.texts)), keep)
        held = min(max(round(config.holdout * keep), 1), keep - 1) if config.holdout > 0 else 0
        splits.append(Split(train=chosen[held:], held_out=chosen[:held]))
        sizes[name] = keep
    return splits[0], splits[1], sizes


def train_classifier(
    positive: ClassTexts,
    negative: ClassTexts,
    config: TrainConfig,
    on_progress: Callable[[str, float | None], None] | None = None,
) -> dict[str, Any]:
    """Train, evaluate on the held-out split, write ``config.output`` and its card; returns the card.

    ``on_progress(phase, fraction)`` reports the phase and, while fastText trains, its fraction done."""
    import numpy as np

    from winnow.filters.classifier_metrics import evaluate
    from winnow.filters.fasttext_models import load_fasttext

    report = on_progress or (lambda phase, fraction: None)
    pos_split, neg_split, used = split_classes(positive, negative, config)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    model_tmp = config.output.with_name(f".{config.output.name}.tmp")
    try:
        with tempfile.TemporaryDirectory(prefix="winnow-classifier-") as tmp:
            work = Path(tmp)
            report("writing the training file", None)
            train_file = work / "train.txt"
            _write_training_file(train_file, positive, pos_split.train, negative, neg_split.train, config.seed)
            seconds, attempts = _train_in_child(train_file, config.params, model_tmp, work, report)
        check_structure(model_tmp)
        model = load_fasttext.__wrapped__(str(model_tmp))  # the new file, not a cached model of an older one
        check_classifier(model, model_tmp, POSITIVE_LABEL)
        held_out = None
        if pos_split.held_out:
            report("scoring the held-out documents", None)
            texts = [positive.texts[i] for i in pos_split.held_out] + [negative.texts[i] for i in neg_split.held_out]
            labels = np.array([True] * len(pos_split.held_out) + [False] * len(neg_split.held_out))
            lengths = np.array([len(text) for text in texts])
            held_out = evaluate(labels, score_texts(model, texts), config.threshold, lengths=lengths)
            held_out["note"] = HELD_OUT_NOTE
            if config.holdout_dir is not None:
                _write_holdout(config.holdout_dir, positive, pos_split.held_out, negative, neg_split.held_out)
        os.replace(model_tmp, config.output)
    finally:
        model_tmp.unlink(missing_ok=True)
    card = {
        "format": CARD_FORMAT,
        "model": config.output.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": {"positive": POSITIVE_LABEL, "negative": NEGATIVE_LABEL},
        "normalization": f"winnow.filters.classifier_text.normalize (lower case, punctuation split, {MAX_CHARS} chars)",
        "sources": {
            "positive": _source_counts(positive, pos_split),
            "negative": _source_counts(negative, neg_split),
        },
        "documents": {
            name: {
                "read": texts.documents,
                "sampled": len(texts.texts),
                "after_balancing": used[name],
                "train": len(split.train),
                "held_out": len(split.held_out),
            }
            for name, texts, split in (("positive", positive, pos_split), ("negative", negative, neg_split))
        },
        "sampling": {
            "balance": config.balance,
            "max_per_class": config.max_per_class,
            "holdout": config.holdout,
            "seed": config.seed,
            "holdout_dir": str(config.holdout_dir) if config.holdout_dir and held_out else None,
        },
        "hyperparameters": config.params,
        "vocabulary": {"words": len(model.words), "labels": len(model.labels)},
        "fasttext": {"package": FASTTEXT_PACKAGE, "version": importlib.metadata.version(FASTTEXT_PACKAGE)},
        "winnow_version": winnow_version(),
        "training_seconds": round(seconds, 3),
        "training_attempts": attempts,
        "model_size_bytes": config.output.stat().st_size,
        "held_out": held_out,
    }
    write_json(config.card_path, card)
    return card


def _source_counts(texts: ClassTexts, split: Split) -> list[dict[str, Any]]:
    used = Counter(texts.origins[i] for i in [*split.train, *split.held_out])
    return [{**count.as_dict(), "used": used.get(index, 0)} for index, count in enumerate(texts.sources)]


def _write_training_file(
    path: Path, positive: ClassTexts, pos: list[int], negative: ClassTexts, neg: list[int], seed: int
) -> None:
    lines = [(POSITIVE_LABEL, positive.texts[i]) for i in pos] + [(NEGATIVE_LABEL, negative.texts[i]) for i in neg]
    random.Random(seed).shuffle(lines)
    with path.open("w", encoding="utf-8") as handle:
        for label, text in lines:
            handle.write(f"{label} {_LABEL_TOKEN.sub('', normalize(text))}\n")


def _write_holdout(folder: Path, positive: ClassTexts, pos: list[int], negative: ClassTexts, neg: list[int]) -> None:
    """The held-out documents as ``positive.jsonl`` / ``negative.jsonl`` (field ``text``), for ``eval``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, texts, indices in (("positive", positive, pos), ("negative", negative, neg)):
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"text": texts.texts[i]}, ensure_ascii=False) + "\n" for i in indices)


def _train_in_child(
    train_file: Path, params: dict[str, Any], model_out: Path, work: Path, report: Callable[[str, float | None], None]
) -> tuple[float, int]:
    """Train in a fresh process, retrying once; (fastText's training seconds, attempts)."""
    params_file, result_file = work / "params.json", work / "result.json"
    params_file.write_text(json.dumps(params))
    failures = []
    command = [sys.executable, "-m", "winnow.filters.classifier_train", *map(str, (train_file, params_file, model_out))]
    for attempt in (1, 2):
        phase = "training" if attempt == 1 else "training (second attempt)"
        report(phase, 0.0)
        error = _run_child([*command, str(result_file)], lambda fraction, phase=phase: report(phase, fraction))
        if error is None:
            return float(json.loads(result_file.read_text())["seconds"]), attempt
        failures.append(error)
        model_out.unlink(missing_ok=True)
    raise TrainingError(f"fastText training failed twice, each in a fresh process: {failures[-1]}")


def _run_child(command: list[str], on_fraction: Callable[[float], None]) -> str | None:
    """Run the training child; None on success, else its last error line."""
    env = {**os.environ, "MALLOC_PERTURB_": "255"}  # glibc: allocations start zero-filled (module docstring)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    tail = ""
    try:
        assert process.stderr is not None
        while chunk := process.stderr.read1(65536):
            text = chunk.decode("utf-8", "replace")
            if found := _PROGRESS.findall(text):
                on_fraction(min(float(found[-1]) / 100.0, 1.0))
            tail = (tail + text)[-8192:]
        code = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if code == 0:
        return None
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", tail) if ln.strip() and not _PROGRESS.match(ln.strip())]
    if code < 0:
        return f"the fastText process was killed by {signal.Signals(-code).name}" + (f" ({lines[-1]})" if lines else "")
    return lines[-1] if lines else f"the fastText process exited with status {code}"


def _child(train_file: str, params_file: str, model_out: str, result_file: str) -> int:
    """Child process: train on ``train_file``, check the weights are finite, save; 0 on success."""
    import fasttext
    import numpy as np

    params = json.loads(Path(params_file).read_text())
    start = time.perf_counter()
    try:
        model = fasttext.train_supervised(input=train_file, verbose=2, **params)
        seconds = time.perf_counter() - start
        if not (np.isfinite(model.get_output_matrix()).all() and np.isfinite(model.get_input_matrix()).all()):
            raise RuntimeError("the trained weights hold NaN or infinite values")
        with open(train_file, encoding="utf-8") as handle:
            sample = [line.split(" ", 1)[-1].rstrip("\n") for _, line in zip(range(100), handle, strict=False)]
        if not np.isfinite(np.concatenate(model.predict(sample, k=-1)[1])).all():
            raise RuntimeError("predictions of the trained model are NaN")
        model.save_model(model_out)
    except Exception as exc:
        sys.stderr.write(f"\nfastText training failed: {type(exc).__name__}: {exc}\n")
        return 1
    Path(result_file).write_text(json.dumps({"seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:]))
