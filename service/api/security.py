"""The optional API key: one shared secret in a header, checked before any body is read."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader

from service.settings import Settings, get_settings

from .errors import ApiError

API_KEY_HEADER = "X-API-Key"

# auto_error=False: a missing key must answer 401 in our error shape, not FastAPI's 403 default.
_api_key = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Needed on every route but /healthz and /readyz when the service has SMOKEWATCH_API_KEY set.",
)


async def require_api_key(
    key: Annotated[str | None, Security(_api_key)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> None:
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    # compare_digest: the time taken must not tell how much of a guessed key was right.
    if key is None or not secrets.compare_digest(key.encode(), expected):
        raise ApiError("unauthorized", f"missing or wrong {API_KEY_HEADER} header")
