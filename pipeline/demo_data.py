"""The embedded demo input: WARC files of web pages generated from text already on this machine.

The article text comes from the docstrings of the Python standard library's own source files (real
prose written by people, read with ``ast``, nothing imported), wrapped in page boilerplate (navigation,
cookie banners, footers) as real sites do. Around the articles the generator mixes in what a crawl
contains and a curation pipeline must handle: reposts of the same article on other sites, lightly
edited copies (near duplicates), pages in other languages, link farms and keyword spam, a blocklisted
domain, error and redirect pages, legacy-encoded pages, an empty body, binary data labelled as HTML,
and non-HTML records (requests, images, stylesheets, PDFs). The output is deterministic for a given Python version.

:func:`write_full_demo` adds what ``manifests/full_demo.yaml`` needs besides the web pages: PDFs
(born-digital papers, a scanned page, a broken file), a curated JSONL source (Python docstrings), and
labelled text to train the demo's quality classifier (article paragraphs vs spam and boilerplate).
"""

from __future__ import annotations

import ast
import functools
import html
import json
import random
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path

from winnow.pipeline.pdf_writer import scan_pdf, text_pdf
from winnow.pipeline.warc_writer import http_response, warc_record, write_warc

SITES = ("pyjournal.example.org", "devnotes.example.org", "codeweekly.example.org", "learnpython.example.org")
SPAM_DOMAIN = "spam-farm.example.org"

OTHER_LANGUAGES = {
    "de": (
        "Die Stadtbibliothek bleibt in den Sommerferien an allen Werktagen geöffnet. Wer Bücher "
        "ausleihen möchte, braucht einen gültigen Leseausweis, den man an der Information beantragen kann. "
        "Für Kinder und Jugendliche ist der Ausweis kostenlos, Erwachsene zahlen eine kleine Jahresgebühr.\n"
        "Neben Romanen und Sachbüchern bietet die Bibliothek auch Zeitschriften, Hörbücher und Filme an. "
        "Im ersten Stock gibt es ruhige Arbeitsplätze mit Steckdosen und kostenlosem Internetzugang. "
        "Gruppenräume können für bis zu drei Stunden im Voraus reserviert werden.\n"
        "Jeden Donnerstag findet am Nachmittag eine Vorlesestunde für Kinder statt, und einmal im Monat "
        "lädt die Bibliothek Autorinnen und Autoren zu einer Lesung mit anschließendem Gespräch ein."
    ),
    "fr": (
        "Le marché couvert du centre-ville ouvre ses portes tous les matins sauf le lundi. Les producteurs "
        "de la région y vendent des fruits, des légumes, du fromage et du pain cuit au feu de bois. "
        "Les prix sont affichés clairement et la plupart des stands acceptent la carte bancaire.\n"
        "Pendant l'été, des musiciens jouent sur la place devant l'entrée principale, et les familles "
        "viennent nombreuses le samedi. Un parking gratuit se trouve à deux rues du marché, mais il est "
        "souvent complet après dix heures.\n"
        "La mairie a annoncé des travaux de rénovation de la toiture pour l'automne prochain. Pendant "
        "cette période, les commerçants seront installés sous des tentes dans le parc voisin."
    ),
    "es": (
        "El museo de ciencias naturales ha inaugurado una nueva sala dedicada a los océanos. La exposición "
        "muestra esqueletos de ballenas, maquetas de arrecifes de coral y una colección de conchas "
        "recogidas durante más de un siglo por investigadores de la universidad.\n"
        "Los visitantes pueden tocar algunas piezas y observar a través de microscopios el plancton que "
        "vive en el agua del puerto. Los fines de semana hay talleres para niños en los que aprenden a "
        "identificar peces y algas de la costa.\n"
        "La entrada es gratuita el primer domingo de cada mes, y los estudiantes tienen un descuento "
        "presentando su carné. El museo recomienda reservar las visitas guiadas con antelación."
    ),
}


def stdlib_articles(limit: int) -> list[tuple[str, str, list[str]]]:
    """(module name, title, paragraphs) from stdlib docstrings, longest-documented modules first."""
    return _stdlib_articles()[:limit]


@functools.cache
def _stdlib_articles() -> list[tuple[str, str, list[str]]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    articles = []
    for path in sorted(root.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docs = [ast.get_docstring(tree) or ""]
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and not node.name.startswith("_"):
                docs.append(ast.get_docstring(node) or "")
        paragraphs = [" ".join(p.split()) for d in docs for p in d.split("\n\n")]
        paragraphs = [p for p in paragraphs if len(p) > 120 and not p.startswith((">>>", "$"))]
        if sum(len(p) for p in paragraphs) > 1200:
            title = f"Understanding the {path.stem} module"
            articles.append((path.stem, title, paragraphs[:12]))
    articles.sort(key=lambda a: (-sum(len(p) for p in a[2]), a[0]))
    return articles


def page(title: str, paragraphs: list[str], site: str, lang: str = "en", charset: str = "utf-8") -> str:
    """An HTML page with the boilerplate a real site wraps around its content."""
    nav = "".join(f'<li><a href="/{s}">{s.title()}</a></li>' for s in ("home", "news", "tutorials", "about"))
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="{charset}"><title>{html.escape(title)}</title>'
        f'<link rel="stylesheet" href="/site.css"><script>var analytics = {{id: "{site}"}};</script></head>'
        f'<body><header><a class="logo" href="/">{site}</a><nav><ul>{nav}</ul></nav></header>'
        f'<div class="cookie">We use cookies to improve your experience. <button>Accept</button></div>'
        f"<main><article><h1>{html.escape(title)}</h1>{body}</article>"
        f'<aside><h3>Popular</h3><ul><li><a href="/a">Ten tips</a></li>'
        f'<li><a href="/b">Weekly digest</a></li></ul></aside>'
        f"</main><footer><p>© 2024 {site}. All rights reserved.</p>"
        f'<a href="/privacy">Privacy</a> | <a href="/terms">Terms</a></footer></body></html>'
    )


def spam_page(rng: random.Random, words: list[str]) -> str:
    keywords = " ".join(rng.choice(words) for _ in range(400))
    links = "".join(f'<a href="/p/{i}">cheap {rng.choice(words)} deal</a> ' for i in range(200))
    return f"<html><head><title>best deals</title></head><body><div>{keywords}</div><div>{links}</div></body></html>"


def _records(pages: int, seed: int) -> Iterator[bytes]:
    """WARC records (request + response pairs) of the generated pages."""
    rng = random.Random(seed)
    articles = stdlib_articles(max(pages, 8))
    words = sorted({w.lower() for _, _, ps in articles[:20] for p in ps for w in p.split() if w.isalpha()})
    index = 0

    def response(
        url: str, body: bytes, content_type: str = "text/html; charset=utf-8", status: int = 200
    ) -> list[bytes]:
        """A request record and its response record."""
        nonlocal index
        index += 1
        request = f"GET / HTTP/1.1\r\nHost: {url.split('/')[2]}\r\n\r\n".encode()
        block = http_response(body, content_type, status)
        return [warc_record(url, request, "request", index=index), warc_record(url, block, "response", index=index)]

    for i in range(pages):
        kind = i % 20
        module, title, paragraphs = articles[i % len(articles)]
        site = SITES[i % len(SITES)]
        url = f"https://{site}/{module}/{i}"
        if kind == 7:  # the same article reposted elsewhere, with a different frame
            site2 = SITES[(i + 1) % len(SITES)]
            yield from response(f"https://{site2}/repost/{module}", page(title, paragraphs, site2).encode())
        elif kind == 8:  # a lightly edited copy: a near duplicate, not an exact one
            edited = [
                *paragraphs[:-1],
                f"Editor's note: this article on {module} was updated on {2020 + i % 5}-0{1 + i % 9}.",
            ]
            yield from response(f"https://{site}/edited/{module}/{i}", page(title, edited, site).encode())
        elif kind == 9:
            lang = ("de", "fr", "es")[(i // 20) % 3]
            text = OTHER_LANGUAGES[lang].split("\n")
            yield from response(
                f"https://{lang}.news.example.org/artikel/{i}", page(f"Nachrichten {i}", text, site, lang).encode()
            )
        elif kind == 11:
            yield from response(f"https://{SPAM_DOMAIN}/offers/{i}", spam_page(rng, words).encode())
        elif kind == 12:
            yield from response(f"https://cheap-deals.example.org/{i}", spam_page(rng, words).encode())
        elif kind == 13 and i % 40 == 13:
            yield from response(
                f"https://{site}/missing/{i}", b"<html><body><h1>Not Found</h1></body></html>", status=404
            )
        elif kind == 14 and i % 40 == 14:
            latin = page(title, paragraphs, site, charset="iso-8859-1").encode("latin-1", "replace")
            yield from response(url, latin, "text/html")
        elif kind == 15 and i % 40 == 15:
            yield from response(f"https://{site}/empty/{i}", b"")
        elif kind == 16 and i % 40 == 16:
            yield from response(f"https://{site}/blob/{i}", bytes(rng.randrange(256) for _ in range(3000)))
        elif kind == 17:
            yield from response(f"https://{site}/img/{i}.png", b"\x89PNG\r\n\x1a\n" + bytes(500), "image/png")
        elif kind == 18 and i % 40 == 18:
            yield from response(f"https://{site}/paper/{i}.pdf", b"%PDF-1.4\n%fake but labelled\n", "application/pdf")
        elif kind == 19:
            yield from response(f"https://{site}/short/{i}", page("Contact", ["Call us today."], site).encode())
        else:
            yield from response(url, page(title, paragraphs, site).encode())


def write_demo_warcs(folder: str | Path, pages: int = 400, files: int = 2, seed: int = 0) -> list[Path]:
    """Write ``pages`` generated pages split over ``files`` gzip WARC files; returns their paths."""
    records = list(_records(pages, seed))
    folder = Path(folder)
    per_file = -(-len(records) // files)
    return [
        write_warc(folder / f"demo-{n:02d}.warc.gz", records[n * per_file : (n + 1) * per_file]) for n in range(files)
    ]


def _paper_pages(title: str, paragraphs: list[str], lines_per_page: int = 48) -> list[list[str]]:
    """A paper's text as pages of lines wrapped at 90 characters (title first, a blank line between paragraphs)."""
    lines = [title, ""]
    for paragraph in paragraphs:
        lines += [*textwrap.wrap(paragraph, 90), ""]
    return [lines[i : i + lines_per_page] for i in range(0, len(lines), lines_per_page)]


def write_demo_pdfs(folder: str | Path, papers: int = 3) -> list[Path]:
    """Born-digital "papers" (text layer), one scanned page (image only) and one truncated PDF."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    articles = stdlib_articles(40)[-(papers + 1) :]  # not the ones the demo's web pages lead with
    paths = []
    for number, (module, _, paragraphs) in enumerate(articles[:papers]):
        path = folder / f"paper-{number}-{module}.pdf"
        path.write_bytes(text_pdf(_paper_pages(f"A note on {module}", paragraphs)))
        paths.append(path)
    module, _, paragraphs = articles[-1]
    scanned = folder / f"scan-{module}.pdf"
    scanned.write_bytes(scan_pdf([_paper_pages(f"Notes on {module}", paragraphs[:2], 30)[0]]))
    broken = folder / "broken.pdf"
    broken.write_bytes(text_pdf([["This file was cut short in transfer."]])[:300])
    return [*paths, scanned, broken]


def write_quality_training(folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """``positive.jsonl`` (article paragraphs, grouped) and ``negative.jsonl`` (keyword spam, link lists,
    boilerplate) to train the demo's quality classifier."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    articles = stdlib_articles(120)
    words = sorted({w.lower() for _, _, ps in articles[:20] for p in ps for w in p.split() if w.isalpha()})
    positive = [" ".join(paragraphs[i : i + 3]) for _, _, paragraphs in articles for i in range(0, len(paragraphs), 3)]
    negative = []
    for i in range(len(positive)):
        kind = i % 3
        if kind == 0:
            negative.append(" ".join(rng.choice(words) for _ in range(rng.randrange(60, 300))))
        elif kind == 1:
            negative.append(" ".join(f"cheap {rng.choice(words)} deal" for _ in range(rng.randrange(20, 80))))
        else:
            menu = ["Home", "News", "About", "Contact", "Privacy", "Terms", "Login", "Subscribe", "Accept cookies"]
            negative.append(" | ".join(rng.choice(menu) for _ in range(rng.randrange(10, 40))))
    paths = (folder / "positive.jsonl", folder / "negative.jsonl")
    for path, texts in zip(paths, (positive, negative), strict=True):
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return paths


def write_full_demo(folder: str | Path, pages: int = 400) -> dict[str, list[Path]]:
    """Everything ``manifests/full_demo.yaml`` reads, under ``folder``: ``*.warc.gz``, ``pdf/``,
    ``curated/python_docs.jsonl`` and ``quality/{positive,negative}.jsonl``."""
    from winnow.mixers.local_sources import write_local_sources

    folder = Path(folder)
    return {
        "warc": write_demo_warcs(folder, pages),
        "pdf": write_demo_pdfs(folder / "pdf"),
        "curated": list(write_local_sources(folder / "curated", 400_000, names=("python_docs",)).values()),
        "quality": list(write_quality_training(folder / "quality")),
    }
