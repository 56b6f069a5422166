"""Which templates a document gets: the union over the routes it matches.

A route matches a document of one of its ``sources`` (all when unset) whose attribute ``column`` is
within ``[min, max]`` (a document without that value does not match), and then keeps a ``fraction``
of those by a seeded hash of the document id (the same documents on every run).
"""

from __future__ import annotations

from typing import Any

from winnow.pipeline.manifest import RephraseRoute
from winnow.pipeline.readers import stable_fraction


def route_matches(route: RephraseRoute, doc_id: str, source: str, attributes: dict[str, Any]) -> bool:
    """Whether ``route`` applies to the document."""
    if route.sources is not None and source not in route.sources:
        return False
    if route.column is not None:
        value = attributes.get(route.column)
        if value is None:
            return False
        if (route.min is not None and value < route.min) or (route.max is not None and value > route.max):
            return False
    return route.fraction >= 1.0 or stable_fraction(str(route.seed), doc_id) < route.fraction


def templates_for(routes: list[RephraseRoute], doc_id: str, source: str, attributes: dict[str, Any]) -> list[str]:
    """Template ids for a document, in route order, each once."""
    chosen: dict[str, None] = {}
    for route in routes:
        if route_matches(route, doc_id, source, attributes):
            chosen.update(dict.fromkeys(route.templates))
    return list(chosen)
