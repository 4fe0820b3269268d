"""Sealing of one personal-data field under a customer's data key (AES-GCM), bound to event and field.

The associated data is ``"{event_id}:{field}"``, so a ciphertext cannot be moved to another event or
field. The key-encryption key that wraps data keys is the adapter's business (:mod:`timeline.crypto`).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def seal(dek: bytes | AESGCM, event_id: UUID, field: str, value: Any) -> dict[str, str]:
    """Encrypt one PII field value (any JSON value) into its stored form.

    ``dek`` may be given as its cipher (``AESGCM(dek)``), to set the key up once for several fields.
    """
    cipher = dek if isinstance(dek, AESGCM) else AESGCM(dek)
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    ciphertext = cipher.encrypt(nonce, plaintext, f"{event_id}:{field}".encode())
    return {"$enc": _b64e(nonce + ciphertext)}


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and "$enc" in value


def open_sealed(dek: bytes, event_id: UUID, field: str, sealed: dict[str, str]) -> Any:
    raw = _b64d(sealed["$enc"])
    plaintext = AESGCM(dek).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"{event_id}:{field}".encode())
    return json.loads(plaintext)
