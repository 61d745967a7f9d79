"""Bearer-token authentication (BYOC operators set ``AUTH_TOKEN``)."""

from __future__ import annotations

import hmac

from runner.errors import Unauthorized

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def check_bearer(authorization: str | None, expected: str) -> None:
    """Raise ``Unauthorized`` unless the header carries ``expected``, compared in constant time."""
    given = bearer_token(authorization) or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        message = "Invalid bearer token." if given else "Missing bearer token."
        raise Unauthorized(message)
