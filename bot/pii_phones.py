"""Phone numbers in text: candidates found by a regular expression, confirmed by
libphonenumber (`phonenumbers`) for the policy's `phone_regions`. See `bot/pii.py`.

An unformatted run of digits is taken only next to a word that says it is a phone number
("call me on", "Tel."): an order number looks exactly like one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat, PhoneNumberMatcher

from bot.pii_kinds import Found, Kind, Spans, clause, named, overlaps

_PHONE = re.compile(
    r"(?<![\w+#@/\\.=&?-])"
    r"(?:\+|\(\+?)?\d(?:[\x20\u00a0().\-/]{0,3}\d){6,20}+"
    r"(?:[\x20\u00a0]?(?:x|ext\.?|extension|#)[\x20\u00a0]?\d{1,6})?"
    r"(?![\w@]|[.\-/:,]\d)"
)
_PHONE_CUE = re.compile(
    r"(?i)\b(?:call\w*|\w*phone\w*|ph|tel|mobile|mob|cell|ring|dial|text|"
    r"sms|whats\s?app|signal|fax|hotline|reach|contact|"
    r"anruf\w*|ruf\w*|telefon\w*|handy\w*|mobil\w*|"
    r"appel\w*|t[ée]l[ée]phone|t[ée]l|portable|joindre|"
    r"bel|bellen|telefoon\w*|mobiel\w*|"
    r"ll[aá]m\w*|tel[ée]fono|m[óo]vil|"
    r"chiam\w*|cellulare)\b"
)
# Dots only: a decimal, or a one-digit group after the first (122.0.6261.94, 1.3.6.1.4.1).
_DOTTED_NOT_PHONE = re.compile(r"(?:0|[1-9]\d*)\.\d+|\d+(?:\.\d+)*\.\d(?:\.\d+)*")
_DOTTED = re.compile(r"\d+(?:\.\d+)+")  # fewer than nine digits: a version or a date
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:([\x20\u00a0.,])\d{3})(?:\1\d{3})*")
_PHONE_GROUP_SEP = re.compile(r"[\x20\u00a0.\-/]+")
_NUMBER_WORD = re.compile(r"(?i)\b(?:number|no|nr|num|nummer|num[ée]ro|n[úu]mero)\b")
_NOT_PHONE_CUE = re.compile(
    r"(?i)\b(?:order|invoice|ticket|ref|reference|tracking|account|acct|id|case|po|build|"
    r"job|run|pr|issue|serial|part|sku|batch|epoch|ts|timestamp|unix|ssn|bsn|nino|nir|dni|"
    r"nie|idnr|steuer-?id|sofi|bestell\w*|rechnung\w*|auftrag\w*|commande|"
    r"facture|factuur|bestelling|pedido|factura|ordine|fattura)\b"
)


def find_phones(text: str, protected: Spans, regions: tuple[str, ...]) -> Iterable[Found]:
    """Phone numbers libphonenumber finds valid, read as numbers of `regions` in turn (the
    policy's `phone_regions`; "ZZ" reads only numbers written with "+"); a bare run of digits
    only with a word near it that says it is a phone number."""
    for match in _PHONE.finditer(text):
        raw = match.group(0)
        if sum(c.isdigit() for c in raw) < 7 or overlaps(match.span(), protected):
            continue
        if named(text, match.start(), match.end(), _NOT_PHONE_CUE):
            continue  # order 201-555-0123, SSN 666-12-3456
        dotted = _DOTTED.fullmatch(raw) is not None
        if (dotted and len(raw) - raw.count(".") < 9) or (
            _DOTTED_NOT_PHONE.fullmatch(raw)
            or (_DOTTED_QUAD.fullmatch(raw) and all(int(g) <= 255 for g in raw.split(".")))
        ):
            continue  # versions, OIDs, decimals, addresses that are not valid IPs
        # Bare digits, or 49 895 353 (a count with thousands separators), need a cue.
        bare = raw.isdigit() or _THOUSANDS.fullmatch(raw) is not None
        if bare and not _phone_cued(text, match.start(), match.end()):
            continue  # bare digits: an order number looks the same
        for start, end, number in _phone_matches(raw, regions):
            value = raw[start:end]
            a, b = match.start() + start, match.start() + end
            if not bare and value.isdigit() and not _phone_cued(text, a, b):
                continue
            normal = phonenumbers.format_number(number, PhoneNumberFormat.E164)
            if number.extension:
                normal += "x" + number.extension
            yield Found(kind=Kind.PHONE, start=a, end=b, value=value, normal=normal)


def _phone_matches(
    raw: str, regions: tuple[str, ...]
) -> list[tuple[int, int, phonenumbers.PhoneNumber]]:
    """libphonenumber's reading of one candidate: the whole of it as a number of the
    first region where it is valid; failing that, all but its last group ("0612345678
    3 times") or — unless it starts "+", where that would reread the country code as a
    national number — all but its first."""
    whole = _phone_whole(raw, regions)
    if whole is not None:
        return [whole]
    if " " not in raw:
        return []
    part = _phone_whole(raw[: raw.rindex(" ")], regions)
    if part is not None:
        return [part]
    if raw.lstrip("(").startswith("+"):
        return []
    cut = raw.index(" ") + 1
    part = _phone_whole(raw[cut:], regions)
    return [] if part is None else [(part[0] + cut, part[1] + cut, part[2])]


def _phone_whole(
    raw: str, regions: tuple[str, ...]
) -> tuple[int, int, phonenumbers.PhoneNumber] | None:
    if sum(c.isdigit() for c in raw) < 7:
        return None
    plus = raw.lstrip("(").startswith("+")
    first = next(i for i, c in enumerate(raw) if c.isdigit())
    last = len(raw.rstrip(" "))
    # Four groups or more written without "+" must be grouped as the region writes its
    # numbers: 383-643-8480-40 is a part number, 06 12 34 56 78 a phone number.
    groups = len(_PHONE_GROUP_SEP.split(raw.strip()))
    leniency = Leniency.VALID if plus or groups < 4 else Leniency.STRICT_GROUPING
    for region in regions[:1] if plus else regions:
        try:  # parsing is cheap; the matcher, which also rules out dates and the like,
            # runs only where the number is valid
            if not phonenumbers.is_valid_number(phonenumbers.parse(raw, region)):
                continue
        except phonenumbers.NumberParseException:
            continue
        for m in PhoneNumberMatcher(raw, region, leniency):
            if m.start <= first and m.end >= last:
                return (m.start, m.end, m.number)
    return None


def _phone_cued(text: str, start: int, end: int) -> bool:
    """Whether a word near a bare run of digits says it is a phone number: in the same
    clause, and not with "order", "invoice", "account"… right before it."""
    before, after = clause(text, start, end)
    if _PHONE_CUE.search(before) or _PHONE_CUE.search(after):
        return True
    near = before + " " + after
    return _NUMBER_WORD.search(near) is not None and _NOT_PHONE_CUE.search(near) is None


def phone_normal(value: str, regions: tuple[str, ...]) -> str | None:
    """`value` in E.164 (and "x" and its extension, if any), read as a number of the first
    of `regions` where it is valid; None where it cannot be read or is valid in none."""
    for region in regions:
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            return None
        if phonenumbers.is_valid_number(number):
            normal = phonenumbers.format_number(number, PhoneNumberFormat.E164)
            return normal + ("x" + number.extension if number.extension else "")
    return None
