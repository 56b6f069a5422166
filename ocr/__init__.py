"""PDF to text (page triage, text layer, tesseract, VLM server, fallback chain, cleanup).

``document.py`` reads one PDF (the OCR stage's sandboxed worker), ``stage.py`` is the stage's datatrove step;
docs/DESIGN.md's OCR section says what each module owns.
"""
