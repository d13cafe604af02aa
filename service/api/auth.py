"""Bearer-token auth for the scoring routes (health and metrics stay open for probes and scrapers)."""

from __future__ import annotations

import hmac

from fastapi import Request

from service.errors import Unauthorized


def check_bearer(request: Request, keys: list[str]) -> None:
    """Raise `Unauthorized` unless the request carries one of `keys`; constant-time comparison."""
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>` (the service has PARETORM_API_KEYS set)")
    supplied = token.strip().encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(supplied, key.encode())
    if not matched:
        raise Unauthorized("invalid API key: the bearer token matches none of the service's PARETORM_API_KEYS")
