"""Web extraction: WARC/ARC reading (``web_archives``), the extract stage's step (``stage``), the function its
sandbox worker runs (``html_text``) and extraction quality against human ground truth (``evaluation``)."""
