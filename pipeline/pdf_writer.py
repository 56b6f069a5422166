"""Writing real PDF files: born-digital text pages, scans, and a hostile one (the demo input and test fixtures).

- :func:`text_pdf`: pages of Helvetica text written as PDF objects by hand (a text layer, no images);
  a line is a string (placed under the previous one), ``(x, y, text)`` in points or ``(x, y, text,
  size)``, drawn in the order given. ``rotate`` sets the pages' ``/Rotate`` and draws the text turned
  so that it reads upright on the rotated page (``x, y`` are where it shows); ``scale`` and
  ``to_unicode`` write text the way OCR tools and math fonts do (see the function).
- :func:`scanned_text_pdf`: scans (as :func:`scan_pdf`) with a text layer over them, invisible by
  default (what an OCR tool leaves on a scanned page).
- :func:`scan_pdf`: pages of text drawn with Pillow into a greyscale image at ``dpi`` and saved by
  Pillow as an image-only PDF (what a scanner gives).
- :func:`bomb_pdf`: one page holding a tiny Flate stream that inflates to a huge image.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

Line = str | tuple[float, float, str] | tuple[float, float, str, float]
LETTER = (612, 792)
# (x, y) where the text shows on the page displayed turned by /Rotate -> (text matrix a b c d, x, y) in PDF space
_TURNS = {
    0: lambda x, y, w, h: ((1, 0, 0, 1), x, y),
    90: lambda x, y, w, h: ((0, 1, -1, 0), w - y, x),
    180: lambda x, y, w, h: ((-1, 0, 0, -1), w - x, h - y),
    270: lambda x, y, w, h: ((0, -1, 1, 0), y, h - x),
}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _assemble(objects: list[bytes]) -> bytes:
    """A PDF file from its numbered objects (object ``i + 1`` is ``objects[i]``), with a correct xref."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _stream(data: bytes, extra: str = "") -> bytes:
    return f"<< /Length {len(data)} {extra}>>\nstream\n".encode() + data + b"\nendstream"


def _text_ops(
    lines: Sequence[Line], size: tuple[int, int], font_size: float, rotate: int, mode: int, scale: float = 1.0
) -> list[str]:
    """Content-stream operators drawing ``lines`` in Helvetica (text render ``mode`` 3: invisible), each set
    in a font ``1 / scale`` times its size and shrunk back by the text matrix."""
    y = (size[0] if rotate in (90, 270) else size[1]) - 72  # the first line's baseline on the page as it shows
    ops = []
    for line in lines:
        x, y, text, points = (
            (*line, font_size)[:4] if isinstance(line, tuple) else (72, y - font_size * 1.4, line, font_size)
        )
        (a, b, c, d), px, py = _TURNS[rotate](x, y, size[0], size[1])
        matrix = " ".join(f"{v * scale:g}" for v in (a, b, c, d))
        ops.append(f"BT {mode} Tr /F1 {points / scale:g} Tf {matrix} {px:.2f} {py:.2f} Tm ({_escape(text)}) Tj ET")
    return ops


def _to_unicode(mapped: dict[str, str]) -> bytes:
    """A ToUnicode CMap: printable ASCII as itself, each character of ``mapped`` (a cp1252 character) as its text."""
    chars = "".join(
        f"<{ord(k.encode('cp1252')):02X}> <{v.encode('utf-16-be').hex().upper()}>\n" for k, v in mapped.items()
    )
    cmap = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def\n"
        "1 begincodespacerange <00> <FF> endcodespacerange\n1 beginbfrange <20> <7E> <0020> endbfrange\n"
        f"{len(mapped)} beginbfchar\n{chars}endbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end"
    )
    return _stream(cmap.encode())


def text_pdf(
    pages: Sequence[Sequence[Line]],
    size: tuple[int, int] = LETTER,
    font_size: float = 11,
    rotate: int = 0,
    scale: float = 1.0,
    to_unicode: dict[str, str] | None = None,
) -> bytes:
    """A born-digital PDF: each page's lines as Helvetica text; ``size`` is the unrotated media box.

    ``scale`` < 1 sets the text in a larger font shrunk by the text matrix (as OCR tools write text layers);
    ``to_unicode`` gives the font a ToUnicode map under which those cp1252 characters read as other text
    (such as characters outside the BMP)."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    font = _FONT if to_unicode is None else _FONT[:-2] + f" /ToUnicode {4 + 2 * count} 0 R >>".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        font,
    ]
    for i, lines in enumerate(pages):
        content = "\n".join(_text_ops(lines, size, font_size, rotate, 0, scale)).encode("cp1252")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] /Rotate {rotate} "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(_stream(content))
    if to_unicode is not None:
        objects.append(_to_unicode(to_unicode))
    return _assemble(objects)


_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"


def scanned_text_pdf(
    pages: Sequence[tuple[Sequence[str], Sequence[Line]]], dpi: int = 200, invisible: bool = True
) -> bytes:
    """Pages of ``(scanned lines, text-layer lines)``: the first drawn into a greyscale scan at ``dpi`` that
    covers the page, the second as Helvetica text over it (invisible: render mode 3)."""
    count = len(pages)
    kids = " ".join(f"{4 + 3 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        _FONT,
    ]
    for i, (scanned, layer) in enumerate(pages):
        image = scan_image(scanned, dpi)
        text = _text_ops(layer, LETTER, 11, 0, 3 if invisible else 0)
        ops = [f"q {LETTER[0]} 0 0 {LETTER[1]} 0 0 cm /Im0 Do Q", *text]
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {LETTER[0]} {LETTER[1]}] /Resources << /Font << /F1 3 0 R >> "
            f"/XObject << /Im0 {6 + 3 * i} 0 R >> >> /Contents {5 + 3 * i} 0 R >>".encode()
        )
        objects.append(_stream("\n".join(ops).encode("cp1252")))
        objects.append(
            _stream(
                zlib.compress(image.tobytes()),
                f"/Type /XObject /Subtype /Image /Width {image.width} /Height {image.height} /ColorSpace /DeviceGray "
                "/BitsPerComponent 8 /Filter /FlateDecode ",
            )
        )
    return _assemble(objects)


def scan_image(lines: Sequence[str], dpi: int = 200, size: tuple[int, int] = LETTER, rotate: int = 0) -> Image.Image:
    """A greyscale page image with ``lines`` drawn at 12 pt, turned ``rotate`` degrees counter-clockwise."""
    width, height = round(size[0] / 72 * dpi), round(size[1] / 72 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=round(12 / 72 * dpi))
    y = dpi  # one inch margin
    for line in lines:
        draw.text((dpi, y), line, fill=0, font=font)
        y += round(18 / 72 * dpi)
    return image.rotate(rotate, expand=True) if rotate else image


def scan_pdf(pages: Sequence[Sequence[str]], dpi: int = 200, rotate: int = 0) -> bytes:
    """An image-only PDF: each page's lines rendered into a scan at ``dpi``."""
    images = [scan_image(lines, dpi, rotate=rotate) for lines in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return buffer.getvalue()


def bomb_pdf(side_px: int = 20_000) -> bytes:
    """A one-page PDF whose greyscale image is ``side_px`` squared (400 MB at the default) from under 1 MB of Flate."""
    rows_per_block = max(1, (1 << 20) // side_px)
    block = b"\xff" * (side_px * rows_per_block)
    compressor = zlib.compressobj(9)
    blocks = -(-side_px // rows_per_block)
    data = b"".join(compressor.compress(block) for _ in range(blocks)) + compressor.flush()
    image = _stream(
        data,
        f"/Type /XObject /Subtype /Image /Width {side_px} /Height {side_px} /ColorSpace /DeviceGray "
        "/BitsPerComponent 8 /Filter /FlateDecode ",
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im0 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        image,
        _stream(b"q 612 0 0 792 0 0 cm /Im0 Do Q"),
    ]
    return _assemble(objects)
