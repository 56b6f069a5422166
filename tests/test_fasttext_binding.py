"""The installed ``fasttext`` module trains and predicts under numpy 2, and the default LID model works.

Two packages can break this silently: ``fasttext-predict`` (which some language-ID packages pull in) installs a
``fasttext`` module that can only predict, overwriting the full binding if installed after it; and
fasttext 0.9.3 / fasttext-wheel crash in ``predict`` under numpy 2 (``np.array(..., copy=False)``).

Training here starts from pretrained vectors for the whole vocabulary. fastText (0.9.2+ sources, this
binding included) allocates the input matrix without zeroing it and, with fewer than 10 threads, its
random initialisation covers only ``thread/10`` of it; a small matrix then reuses freed heap memory
and training fails at random with "Encountered NaN" (rarely in a fresh process, usually from the second
model trained in one). Pretrained vectors overwrite every row, which makes training deterministic.
"""

from __future__ import annotations

import importlib.metadata
import random
from pathlib import Path
from typing import Any

import fasttext
import numpy as np
import pytest

from winnow.filters.fasttext_models import default_lid_model, identify, load_fasttext

CATS = ["cat", "kitten", "purr", "whiskers", "meow", "litter", "tabby", "paw", "fur", "mouse"]
MONEY = ["bank", "loan", "interest", "stock", "bond", "dividend", "credit", "market", "tax", "invoice"]
DIM = 16


@pytest.fixture(scope="module")
def training_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny, clearly separable two-label training set in fastText's ``__label__`` format."""
    rng = random.Random(0)
    lines = []
    for _ in range(200):
        for label, vocab in (("pets", CATS), ("finance", MONEY)):
            lines.append(f"__label__{label} " + " ".join(rng.choice(vocab) for _ in range(8)))
    rng.shuffle(lines)
    path = tmp_path_factory.mktemp("fasttext") / "train.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def vectors_file(training_file: Path) -> Path:
    """Small random ``.vec`` vectors for every word of the training set (and fastText's ``</s>``)."""
    rng = random.Random(1)
    words = [*CATS, *MONEY, "</s>"]
    rows = [w + " " + " ".join(f"{rng.uniform(-1, 1) / DIM:.6f}" for _ in range(DIM)) for w in words]
    path = training_file.with_name("init.vec")
    path.write_text(f"{len(words)} {DIM}\n" + "\n".join(rows) + "\n")
    return path


def train(training_file: Path, vectors_file: Path) -> Any:
    """A supervised model on the tiny training set, every input row initialised from ``vectors_file``."""
    return fasttext.train_supervised(
        str(training_file), epoch=10, lr=0.5, dim=DIM, thread=1, verbose=0, pretrainedVectors=str(vectors_file)
    )


def test_fasttext_module_is_the_full_binding() -> None:
    """``fasttext`` has training support (not fasttext-predict's predict-only module)."""
    assert hasattr(fasttext, "train_supervised"), (
        f"`fasttext` at {fasttext.__file__} cannot train: fasttext-predict overwrote it; "
        "reinstall fasttext-numpy2-wheel (pip install --force-reinstall --no-deps fasttext-numpy2-wheel)"
    )
    assert importlib.metadata.version("fasttext-numpy2-wheel")


def test_train_and_predict(training_file: Path, vectors_file: Path, tmp_path: Path) -> None:
    """Training works, and twice in one process gives the same model (no uninitialised weights)."""
    model = train(training_file, vectors_file)
    assert set(model.get_labels()) == {"__label__pets", "__label__finance"}

    labels, probs = model.predict("the kitten chased a mouse and began to purr", k=2)
    assert list(labels) == ["__label__pets", "__label__finance"], (labels, probs, np.__version__)
    assert isinstance(probs, np.ndarray) and probs.shape == (2,)
    assert 0.5 < probs[0] <= 1.0 + 1e-6 and probs[0] >= probs[1] >= 0.0
    assert probs.sum() == pytest.approx(1.0, abs=1e-3)

    batch_labels, batch_probs = model.predict(["bank loan with interest", "tabby cat fur"])
    assert [ls[0] for ls in batch_labels] == ["__label__finance", "__label__pets"]
    assert all(0.0 <= p[0] <= 1.0 + 1e-6 for p in batch_probs)

    saved = tmp_path / "model.bin"
    model.save_model(str(saved))
    reloaded = fasttext.load_model(str(saved))
    assert reloaded.predict("stock market dividend")[0] == ("__label__finance",)

    again_labels, again_probs = train(training_file, vectors_file).predict(
        "the kitten chased a mouse and began to purr", k=2
    )
    assert again_labels == labels
    np.testing.assert_allclose(again_probs, probs, rtol=1e-5)


def test_default_lid_model_exists() -> None:
    path = default_lid_model()
    assert path.is_file(), f"{path} missing: winnow's package data was not installed"
    assert path.stat().st_size > 100_000


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The library stays open during the summer holidays, and children can borrow books for free.", "en"),
        ("Die Stadtbibliothek bleibt in den Sommerferien an allen Werktagen geöffnet und ist kostenlos.", "de"),
    ],
)
def test_identify_with_default_model(text: str, language: str) -> None:
    found, score = identify(load_fasttext(str(default_lid_model())), text)
    assert found == language
    assert 0.5 < score <= 1.0
