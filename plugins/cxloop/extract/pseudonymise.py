"""Keyed pseudonymisation of personal data (contract section 1: email_hash is HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import os
import re

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")

KEY_ENV = "CXLOOP_PII_KEY"


class MissingKeyError(RuntimeError):
    pass


def pii_key() -> bytes:
    """The HMAC key, from the environment (an Airflow Variable or secret backend sets it in
    production). Never defaulted in code: a missing key is an error, not a silent constant."""
    key = os.environ.get(KEY_ENV, "")
    if not key:
        raise MissingKeyError(
            f"{KEY_ENV} is not set: the key that pseudonymises e-mail addresses must come from "
            "configuration (see README, 'Configuration')"
        )
    return key.encode()


def email_hash(email: object, key: bytes | None = None) -> str | None:
    """HMAC-SHA256 (hex) of the trimmed, lower-cased address; None for a missing address."""
    if email is None:
        return None
    text = str(email).strip().lower()
    if not text or text in {"nan", "none"}:
        return None
    return hmac.new(key if key is not None else pii_key(), text.encode(), hashlib.sha256).hexdigest()


def is_valid_email(email: object) -> bool:
    return email is not None and bool(EMAIL_RE.match(str(email).strip()))
