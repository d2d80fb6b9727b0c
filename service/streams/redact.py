"""Credentials never leave in clear: stream and webhook URLs are shown, logged and stored in
messages only through :func:`redact_url`, and any text that may quote a URL (an FFmpeg or HTTP
error) goes through :func:`scrub` first.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that commonly carry a secret (camera vendors put passwords in queries too).
_SECRET_KEYS = re.compile(r"(pass|pwd|secret|token|key|auth|sig|signature|credential|session)", re.I)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """The URL with its user name, password and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return url  # a file path or a device: nothing secret in it
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_KEYS.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(url: str) -> list[str]:
    """The secret pieces of a URL (password, user name, secret query values), raw and unquoted."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.append(userinfo)
        found.extend(p for p in userinfo.split(":", 1) if len(p) >= 3)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_KEYS.search(key) and len(value) >= 3:
            found.append(value)
            found.append(quote(value, safe=""))
    found.extend([unquote(s) for s in found])
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, *urls: str) -> str:
    """`text` with every URL in it redacted and the secrets of `urls` masked wherever they appear."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for url in urls:
        for secret in secrets_of(url):
            text = text.replace(secret, MASK)
    return text


def has_credentials(url: str) -> bool:
    return redact_url(url) != url
