"""Keep/drop logic as datatrove steps: language ID, heuristic filters (and later dedup and classifiers)."""
