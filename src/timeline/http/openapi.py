"""The service's OpenAPI document, as checked in at ``schemas/openapi.json``.

Regenerate it after changing an endpoint: ``python -m timeline.http.openapi > schemas/openapi.json``.
"""

from __future__ import annotations

import json
import sys

from timeline.http.app import create_app


def document() -> str:
    """The OpenAPI document as the checked-in text: indented, keys in order, one final newline."""
    return json.dumps(create_app().openapi(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(document())
