"""PDF to text (page triage, text layer, tesseract, VLM server, fallback chain).

Not built yet: see the OCR issue. The package exists so the layout of the design card holds.
"""
