"""Personal data: found in text, replaced by placeholders, given back where an action needs it.

Secrets are `bot/redact.py`'s job and are always removed; this module is the layer above it
for personal data (PRODUCT.md principle 6): emails, phone numbers, payment cards, IBANs, IP
addresses, national ids and (off by default) street addresses.

    detector = Detector(policy.redaction)   # once; immutable, shared by every thread
    masker = Masker(detector)               # once per request
    masker.mask("call Ann on +44 7400 123456")   ->  "call Ann on <PHONE_1>"
    masker.reveal("texting <PHONE_1> now")       ->  "texting +44 7400 123456 now"

Candidates are found with regular expressions and confirmed by the libraries that know each
format: `phonenumbers` (libphonenumber's metadata), `python-stdnum` (Luhn, IBAN mod-97,
national id checksums) and `ipaddress`. Slack's own markup (`<@U…>`, `<#C…|name>`, `<!here>`,
links), ids, timestamps, UUIDs, git SHAs, dates and ticket ids are never touched; a
`<mailto:…>` or `<tel:…>` link becomes one placeholder, so the angle brackets stay balanced.

Numbers that are only digits and carry no checksum strong enough to stand alone (a bare
9-digit Dutch BSN, an 11-digit German tax id, an unformatted phone number, a 12-digit card)
are taken only next to a word that says what they are ("BSN", "call me", "card"): an order
number looks exactly like them.

`bot/sealing.py`'s `Sealer` keeps the real values of a request's placeholders encrypted while
an action may still need them, and gives keyed hashes for equality checks without the value.

Where each part is: the kinds, their placeholders and `Found` in `bot/pii_kinds.py`; the
finders, one a kind, in `bot/pii_finders.py` (emails, cards, IBANs, IPs, national ids, street
addresses) and `bot/pii_phones.py` (phone numbers); here the `Detector`, which runs them in
order and keeps what the policy wants, and the `Masker`.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberFormat

from bot.pii_finders import (
    MAILTO,
    find_addresses,
    find_cards,
    find_emails,
    find_encoded_emails,
    find_ibans,
    find_ips,
    find_national_ids,
)
from bot.pii_kinds import PLACEHOLDER, Found, Kind, Spans, compact, overlaps
from bot.pii_phones import find_phones, phone_normal
from bot.policy_sections import RedactionPolicy

__all__ = ["PLACEHOLDER", "Detector", "Found", "Kind", "Masker"]

# --- Spans never touched --------------------------------------------------------------------

_ANGLE = re.compile(r"<([^<>\s][^<>]*)>")
_URL_SCHEME = re.compile(r"(?i)^[a-z][a-z0-9+.-]*:")
_PROTECTED = re.compile(
    r"""
    \b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b  # UUID
    | \b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,64}\b      # git SHA, digests (lower)
    | \b[0-9A-F]{40}\b | \b[0-9A-F]{64}\b                          # the same, upper case
    | \bp?\d{9,10}\.\d{6}\b | \bp\d{16}\b                          # Slack ts, permalink ts
    | \b\d{4}-\d{2}-\d{2}(?:[T\x20]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b
    | \b\d{1,2}[./-]\d{1,2}[./-](?:19|20)\d{2}\b | \b(?:19|20)\d{2}/\d{2}/\d{2}\b  # dates
    | \b[A-Z][A-Z0-9]{1,9}-\d{1,9}\b                               # ticket ids: INC-1234
    """,
    re.VERBOSE,
)
_DIGIT = re.compile(r"\d")
# Decimal digits of every script but ASCII, to their ASCII digit (one character each).
_DIGITS = {
    cp: str(unicodedata.digit(chr(cp)))
    for cp in range(0x80, 0x10000)
    if unicodedata.category(chr(cp)) == "Nd"
}
_FOREIGN_DIGIT = re.compile("[" + "".join(chr(cp) for cp in _DIGITS) + "]")


class Detector:
    """Finds personal data in text, as configured by the policy's `[redaction]` section.

    Built once; holds no per-call state, so one instance serves every thread."""

    def __init__(self, config: RedactionPolicy | None = None) -> None:
        self.config = config = config or RedactionPolicy()
        # "ZZ" (no region) reads only numbers written with "+".
        self.regions: tuple[str, ...] = tuple(config.phone_regions) or ("ZZ",)
        self._on = {
            Kind.EMAIL: config.email,
            Kind.PHONE: config.phone,
            Kind.CARD: config.card,
            Kind.IBAN: config.iban,
            Kind.IP: config.ip,
            Kind.NATIONAL_ID: config.national_id,
            Kind.ADDRESS: config.address,
        }
        self._domains: tuple[str, ...] = ()
        self._networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
        self._exact: frozenset[str] = frozenset()
        for region in config.phone_regions:  # load libphonenumber's metadata now
            phonenumbers.example_number(region)
        domains, networks, exact = [], [], set()
        for entry in (e.strip() for e in config.allow):
            if entry.startswith("@"):
                domains.append(entry[1:].lower())
                continue
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry))
                    continue
                except ValueError:
                    pass
            exact.add(entry.casefold())
            exact.update(found.normal for found in self._find(entry))
        self._domains, self._networks, self._exact = (
            tuple(domains),
            tuple(networks),
            frozenset(exact),
        )

    def enabled(self, kind: Kind) -> bool:
        return self._on[kind]

    def find(self, text: str) -> list[Found]:
        """Every piece of personal data in `text`, in order, none overlapping another.

        Digits of other scripts (fullwidth `４１１１`, Arabic-Indic…) are read as ASCII digits
        (one character for one, so positions hold); a value found keeps its written form."""
        folded = text.translate(_DIGITS) if _FOREIGN_DIGIT.search(text) else text
        found = [f for f in self._find(folded) if not self._allowed(f)]
        if folded is not text:
            found = [replace(f, value=text[f.start : f.end]) for f in found]
        return found

    def normalise(self, kind: Kind, value: str) -> str:
        """The form equal values of `kind` share: what `Found.normal` holds and what
        `Sealer.digest` should be given."""
        if kind is Kind.EMAIL:
            return value.strip().removeprefix("mailto:").casefold()
        if kind is Kind.PHONE:
            return phone_normal(value, self.regions) or re.sub(r"[^\d+]", "", value)
        if kind is Kind.IP:
            try:
                return str(ipaddress.ip_address(value.strip().strip("[]")))
            except ValueError:
                return value.strip().lower()
        if kind is Kind.ADDRESS:
            return " ".join(value.split()).casefold()
        return compact(value)

    # --- the search ---

    def _find(self, text: str) -> list[Found]:
        has_digit = _DIGIT.search(text) is not None
        if not has_digit and "@" not in text and not self._on[Kind.ADDRESS]:
            return []  # the common case on the ack path: nothing to look at
        # Spans already decided: Slack markup, then whatever a stronger kind claimed (kinds
        # run from the best-validated down). Look-alikes (UUIDs, SHAs, ts, dates, ticket ids)
        # hold off every kind but IBANs and emails, whose shape no look-alike shares (a SHA
        # pattern would otherwise swallow "dad1234@example.com" or a lower-case IBAN).
        taken: Spans = []
        chosen: list[Found] = []
        for match in _ANGLE.finditer(text):
            body = match.group(1)
            if body[0] in "@#!":
                taken.append(match.span())
            elif body[:7].lower() == "mailto:" or body[:4].lower() == "tel:":
                found = self._link(match, body)
                if found is not None:
                    chosen.append(found)
                taken.append(match.span())
        lookalikes = [m.span() for m in _PROTECTED.finditer(text)] if has_digit else []
        for kind, search in (
            (Kind.IBAN, find_ibans),
            (Kind.EMAIL, find_emails),
            (Kind.EMAIL, find_encoded_emails),
            (Kind.NATIONAL_ID, find_national_ids),  # mod 97 (NIR) outranks Luhn
            (Kind.CARD, find_cards),
            (Kind.IP, find_ips),
            (Kind.PHONE, self._phones),
            (Kind.ADDRESS, find_addresses),
        ):
            if not self._on[kind] or not (has_digit or kind in (Kind.EMAIL, Kind.ADDRESS)):
                continue
            if kind not in (Kind.IBAN, Kind.EMAIL) and lookalikes:
                taken.extend(lookalikes)
                lookalikes = []
            for found in search(text, taken):
                if not overlaps((found.start, found.end), taken):
                    chosen.append(found)
                    taken.append((found.start, found.end))
        return sorted(chosen, key=lambda f: f.start)

    def _allowed(self, found: Found) -> bool:
        if found.normal in self._exact or found.value.casefold() in self._exact:
            return True
        if found.kind is Kind.EMAIL:
            domain = found.normal.rpartition("@")[2]
            return any(domain == d or domain.endswith("." + d) for d in self._domains)
        if found.kind is Kind.IP and self._networks:
            address = ipaddress.ip_address(found.normal)
            return any(address in network for network in self._networks)
        return False

    def _link(self, match: re.Match[str], body: str) -> Found | None:
        """A `<mailto:…|…>` or `<tel:…|…>` link: the link says what it is, so a plausible
        value is enough (a `tel:` number need only be a possible one)."""
        target = body.partition("|")[0]
        scheme, _, value = target.partition(":")
        value = value.split("?")[0]
        if scheme.lower() == "mailto":
            if not self._on[Kind.EMAIL] or MAILTO.fullmatch(value) is None:
                return None
            return Found(
                kind=Kind.EMAIL,
                start=match.start(),
                end=match.end(),
                value=value,
                normal=value.casefold(),
            )
        if not self._on[Kind.PHONE]:
            return None
        try:
            number = phonenumbers.parse(value, self.regions[0])
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_possible_number(number):
            return None
        normal = phonenumbers.format_number(number, PhoneNumberFormat.E164)
        return Found(
            kind=Kind.PHONE, start=match.start(), end=match.end(), value=value, normal=normal
        )

    def _phones(self, text: str, protected: Spans) -> Iterable[Found]:
        return find_phones(text, protected, self.regions)


def _neutralise(text: str) -> str:
    """A placeholder-shaped string that was already in the text is written as Slack escapes
    it (`&lt;EMAIL_1&gt;`), so `reveal` can never turn it into someone's data."""
    return PLACEHOLDER.sub(lambda m: f"&lt;{m.group(0)[1:-1]}&gt;", text)


class Masker:
    """One request's placeholders: `mask` replaces personal data with `<KIND_N>`, the same
    value always getting the same placeholder and numbering continuing across every text of
    the request; `reveal` puts the values back (for tool arguments, once approved).

    `known` (placeholder → value) carries on the numbering of an earlier part of the same
    request, e.g. from a sealed mapping."""

    def __init__(self, detector: Detector, known: Mapping[str, str] | None = None) -> None:
        self.detector = detector
        self._values: dict[str, str] = {}
        self._by_normal: dict[tuple[Kind, str], str] = {}
        self._count: dict[Kind, int] = {}
        for placeholder, value in (known or {}).items():
            match = PLACEHOLDER.fullmatch(placeholder)
            if match is None:
                raise ValueError(f"{placeholder!r} is not a placeholder like <EMAIL_1>")
            kind, number = Kind(match.group(1)), int(match.group(2))
            self._values[placeholder] = value
            self._by_normal.setdefault((kind, detector.normalise(kind, value)), placeholder)
            self._count[kind] = max(self._count.get(kind, 0), number)

    @property
    def mapping(self) -> dict[str, str]:
        """Placeholder → value, for every placeholder handed out so far (a copy)."""
        return dict(self._values)

    def placeholder(self, found: Found) -> str:
        """The placeholder for `found`: the one its value already has, or the next number."""
        key = (found.kind, found.normal)
        placeholder = self._by_normal.get(key)
        if placeholder is None:
            number = self._count.get(found.kind, 0) + 1
            self._count[found.kind] = number
            placeholder = f"<{found.kind.value}_{number}>"
            self._by_normal[key] = placeholder
            self._values[placeholder] = found.value
        return placeholder

    def _known(self, text: str, found: list[Found]) -> list[Found]:
        """`found` plus every occurrence of a value this request already holds: a value the
        detector took only with a cue ("call me on …") is still masked where it stands
        alone (as a tool argument, in a tool's output, in an edit)."""
        extra: list[Found] = []
        for placeholder, value in self._values.items():
            if len(value) < 4:
                continue
            kind = Kind(PLACEHOLDER.fullmatch(placeholder).group(1))  # type: ignore[union-attr]
            start = text.find(value)
            while start >= 0:
                end = start + len(value)
                if not any(f.start < end and start < f.end for f in (*found, *extra)):
                    normal = self.detector.normalise(kind, value)
                    extra.append(Found(kind=kind, start=start, end=end, value=value, normal=normal))
                start = text.find(value, end)
        return sorted([*found, *extra], key=lambda f: f.start) if extra else found

    def mask(self, text: str) -> str:
        """`text` with each piece of personal data replaced by its placeholder."""
        found = self._known(text, self.detector.find(text))
        if not found:
            return _neutralise(text) if "<" in text else text
        # A link whose address holds personal data (<http://10.1.2.3/x|status>) cannot keep
        # its angle brackets around a placeholder: it is written out as "label (address)".
        links = [
            m
            for m in _ANGLE.finditer(text)
            if _URL_SCHEME.match(m.group(1))
            and any(m.start() < f.start and f.end < m.end() for f in found)
        ]
        out: list[str] = []
        pos = 0
        for link in links:
            out.append(self._replace(text, pos, link.start(), found))
            url_end = link.start() + 1 + len(link.group(1).partition("|")[0])
            url = self._replace(text, link.start() + 1, url_end, found)
            label = self._replace(text, url_end + 1, link.end() - 1, found)
            out.append(f"{label} ({url})" if url_end < link.end() - 1 and label else url)
            pos = link.end()
        out.append(self._replace(text, pos, len(text), found))
        return "".join(out)

    def _replace(self, text: str, start: int, end: int, found: list[Found]) -> str:
        out: list[str] = []
        pos = start
        for f in found:
            if f.start < start or f.end > end:
                continue
            out.append(_neutralise(text[pos : f.start]))
            out.append(self.placeholder(f))
            pos = f.end
        out.append(_neutralise(text[pos:end]))
        return "".join(out)

    def reveal(self, text: str) -> str:
        """Placeholders back to their values; a placeholder this request never handed out is
        left as it is."""
        if "<" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self._values.get(m.group(0), m.group(0)), text)

    def reveal_value(self, value: Any) -> Any:
        """`reveal` applied to every string inside dicts, lists and tuples (tool arguments);
        dict keys are names, not data, and are kept."""
        if isinstance(value, str):
            return self.reveal(value)
        if isinstance(value, dict):
            return {key: self.reveal_value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.reveal_value(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self.reveal_value(item) for item in value)
        return value
