"""A success body as JSON bytes, handed to the server as it is.

FastAPI turns a returned ``dict`` into JSON by validating it against the route's response model and walking it
with ``jsonable_encoder``, and for a plain ``def`` route it does that in a worker thread of its own: a second
thread hop per request on the hottest routes. A :class:`~fastapi.Response` skips both; the routes keep
``response_model`` for the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response


def json_answer(body: dict[str, Any] | list[Any]) -> Response:
    """``body`` (JSON types only, as :mod:`timeline.application.views` builds them) as ``application/json``."""
    return Response(orjson.dumps(body), media_type="application/json")
