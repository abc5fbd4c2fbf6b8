"""Redaction of secrets before text reaches the model, the database or the audit log.

Patterns cover the credentials most likely to be pasted into a chat: Slack, Anthropic, AWS,
GitHub and generic bearer tokens, private keys, passwords in URLs
(`scheme://user:password@host`) and `password=`-style assignments.
"""

from __future__ import annotations

import re

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL
        ),
        "[redacted private key]",
    ),
    # scheme://user:password@host → scheme://user:[redacted]@host. The password runs to the
    # last "@" before the path, so a password containing "@" is redacted whole.
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/?#@:]*):[^\s/?#]+@"),
        r"\1:[redacted]@",
    ),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "[redacted slack token]"),
    (re.compile(r"\bxapp-[A-Za-z0-9-]{10,}"), "[redacted slack token]"),
    (re.compile(r"\bsk-ant-[A-Za-z0-9_-]{10,}"), "[redacted api key]"),
    (re.compile(r"\bsk-[A-Za-z0-9]{20,}"), "[redacted api key]"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "[redacted aws key]"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), "[redacted github token]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"), "Bearer [redacted]"),
    (
        re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)(\S+)"),
        r"\1\2[redacted]",
    ),
]


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A Python str holds no surrogate pairs, so any surrogate code point is a lone one (JSON's
# "\ud800" decodes to it); UTF-8 cannot encode it and PostgreSQL rejects the insert.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def redact(text: str) -> str:
    """Replace anything that looks like a credential with a marker.

    Control characters (NUL above all, which PostgreSQL text cannot hold) are dropped too, and
    lone surrogates become U+FFFD: everything stored or audited passes through here.
    """
    text = _SURROGATE.sub("\ufffd", text)
    text = _CONTROL.sub("", text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
