"""The built wheel is a complete install: one top-level name, the demo runs, fastText trains, LID works offline.

The wheel is built from this working tree (``pip wheel``, as ``pip install .`` builds it) and installed
into a fresh virtual environment with plain dependency resolution: no ``-e``, no Makefile step, no
reinstall of any package. Only torch is installed first, at the version of the tests' own environment,
because a plain ``torch`` from PyPI is a multi-GB CUDA build (README says the same to CPU users). The
checks run from a temporary folder so that the repository's own folders cannot be imported by accident.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

INSTALL_TIMEOUT_S = 1800


def _pip(python: Path, *args: str) -> None:
    """Run pip in the fresh environment; a failure shows pip's own output."""
    done = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _clean_env() -> dict[str, str]:
    """The environment without anything that points Python at the repository or the tests' venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["NO_COLOR"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this working tree, built as ``pip install .`` would build it (isolated build)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = out.glob("winnow_curate-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a new venv holding the wheel and what dependency resolution brings with it."""
    root = tmp_path_factory.mktemp("fresh-venv")
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    _pip(python, "install", "--upgrade", "pip")
    torch = importlib.metadata.version("torch").split("+")[0]
    _pip(python, "install", f"torch=={torch}")
    _pip(python, "install", str(wheel))
    return python


def test_wheel_has_one_top_level_name(wheel: Path) -> None:
    """Every file of the wheel is under ``winnow/`` (or its own metadata): no ``pipeline``, ``filters``..."""
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/", 1)[0] for name in archive.namelist()}
        assert {t for t in tops if not t.endswith(".dist-info")} == {"winnow"}
        names = archive.namelist()
    assert "winnow/filters/models/lid.176.ftz" in names and "winnow/filters/models/NOTICE.md" in names
    assert any(n.startswith("winnow/pipeline/rephrase/templates/") and n.endswith(".yaml") for n in names)


def test_installed_names_and_fasttext(fresh_python: Path, tmp_path: Path) -> None:
    """In the fresh venv: generic names are not importable, fastText trains and predicts, LID is offline."""
    script = tmp_path / "check.py"
    script.write_text(
        """
import importlib.util, random, sys
for generic in ("pipeline", "filters", "mixers", "ocr"):
    assert importlib.util.find_spec(generic) is None, f"{generic} is importable from the install"
import fasttext
from winnow.filters.fasttext_models import default_lid_model, identify, load_fasttext
rng = random.Random(0)
words = {"pets": ["cat", "kitten", "purr", "paw"], "money": ["bank", "loan", "stock", "tax"]}
lines = [f"__label__{k} " + " ".join(rng.choice(v) for _ in range(8)) for _ in range(200) for k, v in words.items()]
open("train.txt", "w").write("\\n".join(lines) + "\\n")
vectors = [w + " " + " ".join(f"{rng.uniform(-1, 1) / 8:.5f}" for _ in range(8)) for v in words.values() for w in v]
open("init.vec", "w").write(f"{len(vectors) + 1} 8\\n" + "\\n".join(vectors) + "\\n</s> " + " ".join(["0"] * 8) + "\\n")
model = fasttext.train_supervised("train.txt", dim=8, epoch=10, lr=0.5, thread=1, verbose=0,
                                  pretrainedVectors="init.vec")
assert model.predict("the kitten began to purr")[0] == ("__label__pets",), model.predict("kitten purr")
print(fasttext.__file__)
lid = load_fasttext(str(default_lid_model()))
assert identify(lid, "Die Bibliothek bleibt in den Sommerferien an allen Werktagen geöffnet.")[0] == "de"
assert identify(lid, "The library stays open on every weekday during the summer holidays.")[0] == "en"
print("ok")
"""
    )
    env = _clean_env() | {"HF_HUB_OFFLINE": "1", "NO_PROXY": "*", "http_proxy": "http://127.0.0.1:9"}
    done = subprocess.run(
        [str(fresh_python), str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    fasttext_file, verdict = done.stdout.split()[-2:]
    assert verdict == "ok" and str(fresh_python.parents[1]) in fasttext_file


def test_demo_runs_from_the_wheel(fresh_python: Path, tmp_path: Path) -> None:
    """``winnow make-demo-data`` and ``winnow run manifests/demo.yaml`` with the installed console script."""
    winnow = fresh_python.with_name("winnow")
    env = _clean_env()
    made = subprocess.run(
        [str(winnow), "make-demo-data", "data/demo"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    run = subprocess.run(
        [str(winnow), "run", str(REPO_ROOT / "manifests" / "demo.yaml"), "--no-progress", "--set", "output=out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    released = sorted((tmp_path / "out" / "demo" / "releases" / "latest" / "data").glob("*.parquet"))
    assert released and sum(pq.ParquetFile(f).metadata.num_rows for f in released) > 0
