"""Sealing: values Warden must keep but nobody may read in the database — a request's
personal values while an action may still need them (`bot/privacy.py`), and a request from
Slack waiting in the inbox (`handlers/inbox.py`) — encrypted under the data key
(`Settings.data_key()`); and keyed hashes of personal values for equality checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken

from bot.errors import WardenError
from bot.pii import Kind


class SealError(WardenError):
    """A sealed token cannot be opened: it was altered, or sealed under another data key
    (WARDEN_DATA_KEY or SLACK_SIGNING_SECRET changed since)."""


class Sealer:
    """Seals a request's placeholder mapping while an action may still need the values, and
    hashes values for equality checks, under the data key (`Settings.data_key()`)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a data key needs at least 16 bytes")
        seal_key = hmac.new(key, b"warden pii seal", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(seal_key))
        self._digest_key = hmac.new(key, b"warden pii digest", hashlib.sha256).digest()

    def seal(self, mapping: Mapping[str, str]) -> str:
        """An opaque token (Fernet: AES-128-CBC + HMAC-SHA256, timestamped) holding `mapping`."""
        blob = json.dumps(dict(mapping), sort_keys=True, separators=(",", ":"))
        return self._fernet.encrypt(blob.encode()).decode("ascii")

    def open(self, token: str, ttl: timedelta | None = None) -> dict[str, str]:
        """The mapping sealed in `token`; `SealError` if it was altered, sealed under another
        key, or (given `ttl`) sealed longer ago than that."""
        try:
            blob = self._fernet.decrypt(
                token.encode("ascii"), ttl=None if ttl is None else int(ttl.total_seconds())
            )
        except (InvalidToken, UnicodeEncodeError):
            raise SealError(
                "cannot open sealed personal data: it was altered, has expired, or was sealed "
                "under another data key (was WARDEN_DATA_KEY or SLACK_SIGNING_SECRET changed?)"
            ) from None
        data = json.loads(blob)
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise SealError("sealed personal data is not a mapping of strings")
        return data

    def seal_text(self, text: str) -> str:
        """`text` sealed as `seal` seals a mapping (for a request from Slack, kept until it
        is handled: `storage/inbox.py`)."""
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open_text(self, token: str) -> str:
        """The text sealed in `token` by `seal_text`; `SealError` as for `open`."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise SealError("cannot open a sealed request: altered, or another data key") from None

    def digest(self, kind: Kind, normal: str) -> str:
        """A keyed hash (HMAC-SHA256, 32 hex digits) of a normalised value (`Found.normal`,
        `Detector.normalise`): equal values hash equal, and nobody without the key can
        test a guess."""
        mac = hmac.new(self._digest_key, f"{kind.value}\x00{normal}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]
