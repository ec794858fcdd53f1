"""Unknown query parameters are refused (422 naming them) instead of silently ignored: a
typo such as ``?compnay_id=`` would otherwise return everything unfiltered, which for an
inspector's report is a wrong answer that looks right."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant

from api.errors import ApiError

_ALLOWED: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    names = {getattr(f, "alias", None) or f.name for f in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _allowed(route: Any) -> frozenset[str] | None:
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    key = id(route)
    if key not in _ALLOWED:
        _ALLOWED[key] = frozenset(_query_names(dependant))
    return _ALLOWED[key]


def reject_unknown_query(request: Request) -> None:
    allowed = _allowed(request.scope.get("route"))
    if allowed is None:
        return
    unknown = sorted({k for k in request.query_params if k not in allowed})
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise ApiError(
            422,
            "validation_error",
            f"unknown query parameter {shown}",
            [
                {"field": k[:100], "in": "query", "message": "unknown parameter", "type": "extra"}
                for k in unknown[:20]
            ],
        )
