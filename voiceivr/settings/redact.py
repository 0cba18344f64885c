"""Masking secrets for display: passwords inside URLs (user part or query) and whole tokens elsewhere."""

from __future__ import annotations

import re


def mask_secret(value: str) -> str:
    """Hide passwords inside URLs and whole tokens elsewhere."""
    if "://" in value:
        return redact_urls(value)
    return "***"


# scheme://user:PASSWORD@host: the password runs to the last @ before the path (a raw @ may be in it).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)[^/?#\s]*@")
# ...?password=PASSWORD&... (libpq and SQLAlchemy take it from the query too), in any case.
# In a sentence ("... db?password=x: refused") the ": " after it is not the password's.
_QUERY_PASSWORD = re.compile(r"(?i)(?P<head>[?&;]password=)[^&;#\s'\"]*?(?=[&;#\s'\"]|:\s|$)")


def redact_urls(text: str) -> str:
    """``text`` with the password of every URL in it masked, in the user part or in the query."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", text)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}***", text)
