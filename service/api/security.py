"""The optional API key: one shared secret in a header, checked before any body is read."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import APIKeyCookie, APIKeyHeader

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
    if not _accepted(settings, key):
        raise ApiError("unauthorized", f"missing or wrong {API_KEY_HEADER} header")


def _accepted(settings: Settings, *given: str | None) -> bool:
    """No key is set, or one of the given values is the key."""
    if settings.api_key is None:
        return True
    expected = settings.api_key.get_secret_value().encode()
    # compare_digest: the time taken must not tell how much of a guessed key was right.
    return any(value is not None and secrets.compare_digest(value.encode(), expected) for value in given)


API_KEY_COOKIE = "smokewatch_api_key"
_api_key_cookie = APIKeyCookie(
    name=API_KEY_COOKIE,
    auto_error=False,
    description="The API key in a cookie, accepted on read-only monitoring routes only (the dashboard's images "
    "and live feed cannot send headers). Routes that change anything need the X-API-Key header.",
)


async def require_api_key_or_cookie(
    key: Annotated[str | None, Security(_api_key)],
    cookie: Annotated[str | None, Security(_api_key_cookie)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> None:
    """For GET routes the dashboard reads: the key in the header or in the dashboard's cookie."""
    if not _accepted(settings, key, cookie):
        raise ApiError("unauthorized", f"missing or wrong {API_KEY_HEADER} header (or dashboard cookie)")
