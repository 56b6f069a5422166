"""Real text sources found on any machine with Python and Debian: for mixing tests and the mix experiment.

:func:`write_local_sources` writes one JSONL file per source, each document a chunk of a real file:

- ``python_code``: the standard library's ``.py`` files;
- ``python_docs``: the standard library's docstrings (English prose about code);
- ``c_headers``: C headers under ``/usr/include``;
- ``licenses``: licence texts and package copyright files under ``/usr/share``.

Files are read in sorted order and cut on blank lines into chunks of about ``chunk_chars`` characters,
so the output is the same on every run of the same machine.
"""

from __future__ import annotations

import ast
import json
import sysconfig
from collections.abc import Iterator
from pathlib import Path


def _chunks(text: str, chunk_chars: int) -> Iterator[str]:
    """Blank-line separated blocks, packed into chunks of about ``chunk_chars`` characters."""
    current: list[str] = []
    size = 0
    for block in text.split("\n\n"):
        block = block.strip("\n")
        if not block.strip():
            continue
        current.append(block)
        size += len(block)
        if size >= chunk_chars:
            yield "\n\n".join(current)
            current, size = [], 0
    if current:
        yield "\n\n".join(current)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _stdlib_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py"))


def _python_code() -> Iterator[tuple[str, str]]:
    for path in _stdlib_files():
        if (text := _read(path)) is not None:
            yield str(path), text


def _python_docs() -> Iterator[tuple[str, str]]:
    for path in _stdlib_files():
        text = _read(path)
        try:
            tree = ast.parse(text or "")
        except (SyntaxError, ValueError):
            continue
        nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
        docs = [d for n in nodes if (d := ast.get_docstring(n))]
        if docs:
            yield str(path), "\n\n".join(docs)


def _c_headers() -> Iterator[tuple[str, str]]:
    for path in sorted(Path("/usr/include").rglob("*.h")):
        if (text := _read(path)) is not None:
            yield str(path), text


def _licenses() -> Iterator[tuple[str, str]]:
    paths = sorted(Path("/usr/share/common-licenses").glob("*")) + sorted(Path("/usr/share/doc").glob("*/copyright"))
    for path in paths:
        if path.is_file() and (text := _read(path)) is not None:
            yield str(path), text


SOURCES = {
    "python_code": _python_code,
    "python_docs": _python_docs,
    "c_headers": _c_headers,
    "licenses": _licenses,
}


def write_local_sources(
    folder: Path, max_chars: int = 3_000_000, chunk_chars: int = 1500, names: tuple[str, ...] = tuple(SOURCES)
) -> dict[str, Path]:
    """Write ``<folder>/<source>.jsonl`` for the sources ``names`` (up to ``max_chars`` of text each); returns
    source -> path.

    Raises FileNotFoundError if a source finds no files on this machine.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in names:
        files = SOURCES[name]
        path = folder / f"{name}.jsonl"
        total = rows = 0
        with open(path, "w", encoding="utf-8") as out:
            for origin, text in files():
                for number, chunk in enumerate(_chunks(text, chunk_chars)):
                    out.write(json.dumps({"id": f"{origin}#{number}", "text": chunk}) + "\n")
                    total += len(chunk)
                    rows += 1
                if total >= max_chars:
                    break
        if rows == 0:
            raise FileNotFoundError(f"no files for the local source {name!r} on this machine")
        written[name] = path
    return written
