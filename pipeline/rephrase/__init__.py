"""The rephrase stage: rewrite documents with an LLM server into new synthetic rows (WRAP, Nemotron-CC styles).

- ``templates``: prompt templates as versioned YAML data, each with an id and a content hash;
- ``routing``: which documents get which templates;
- ``chunks``: cutting a document to a template's input budget on paragraph and line boundaries;
- ``client``: requests to an OpenAI-compatible endpoint, concurrent, with retries and re-chunking;
- ``postprocess``: pure checks and clean-ups of an answer (prefix, markdown, QA pairs, length, overlap);
- ``step``: the datatrove step that ties them together, with a request cache for resume.
"""
