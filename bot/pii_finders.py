"""The finders of personal data, one a kind: emails, payment cards, IBANs, IP addresses,
national ids and street addresses (phone numbers are `bot/pii_phones.py`). See `bot/pii.py`.

Each is `find_KIND(text, protected) -> Iterable[Found]`: candidates from a regular expression,
kept only where the library that knows the format confirms them (`python-stdnum`: Luhn, IBAN
mod-97, national id checksums; `ipaddress`). `bot/pii.py`'s `Detector` runs them in order
and keeps a value only outside the spans already decided.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

from bot.pii_kinds import Found, Kind, Spans, compact, cued, named, overlaps

# A word right before a number that says it is something else.
_OTHER_NUMBER = re.compile(
    r"(?i)\b(?:ean|gtin|upc|isbn|imei|iccid|meid|sku|order|invoice|account|tracking|po)\b"
)

# --- Emails ---------------------------------------------------------------------------------

_EMAIL_HINT = re.compile(r"[\w.%+'-]@[^\W_]")
_ENCODED_EMAIL = re.compile(r"(?i)[a-z0-9._+-]+%40[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}")
MAILTO = re.compile(r"[^@\s|<>]+@[^@\s|<>.]+(?:\.[^@\s|<>.]+)+")
_EMAIL = re.compile(
    r"(?<![\w.%+'@-])"
    r"([\w%+'-]+(?:\.+[\w%+'-]+)*)"  # "..": invalid, but a typo still names someone
    r"@((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63})"
    r"(?![\w-]|\.[^\W_]|:[\w/~])"  # not user@host:path (scp, git), not a longer name
)


def find_emails(text: str, protected: Spans) -> Iterable[Found]:
    """Email addresses as written (`jane.doe@acme.io`); not `user@host:path` (scp, git)."""
    if _EMAIL_HINT.search(text) is None:
        return
    for match in _EMAIL.finditer(text):
        local = match.group(1)
        if local.startswith(("'", "-")):
            continue
        value = match.group(0)
        yield Found(
            kind=Kind.EMAIL,
            start=match.start(),
            end=match.end(),
            value=value,
            normal=value.casefold(),
        )


def find_encoded_emails(text: str, protected: Spans) -> Iterable[Found]:
    """Addresses percent-encoded in a URL (`?email=jane.doe%40acme.io`): the written
    form is replaced, the decoded one is what equal values share."""
    for match in _ENCODED_EMAIL.finditer(text):
        decoded = unquote(match.group(0))
        if MAILTO.fullmatch(decoded):
            yield Found(
                kind=Kind.EMAIL,
                start=match.start(),
                end=match.end(),
                value=match.group(0),
                normal=decoded.casefold(),
            )


# --- Payment cards --------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w.,/+#-])\d(?:[\x20\u00a0-]?\d){11,18}+(?![\w-]|[.,]\d)")
_CARD_CUE = re.compile(
    r"(?i)\b(?:card|cc|visa|master\s?card|maestro|amex|karte|kreditkarte|carte|kaart|"
    r"creditcard|tarjeta|carta|pay|paid|payment|charge[ds]?|refund\w*|billing|exp|expiry|"
    r"expires|cvv|cvc|zahlung|paiement|betaling|pago|pagamento)\b"
)
_GROUPS_OF_FOUR = re.compile(r"\d{4}(?:[\x20-]\d{4}){2}")


def _card_network_ok(digits: str) -> bool:
    """Whether the length fits the issuer prefix (IIN) of a real card network."""
    n = len(digits)
    p2, p3, p4, p6 = int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p4 in (2131, 1800):  # JCB (old 15-digit ranges)
        return n == 15
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649 or 622126 <= p6 <= 622925:  # Discover
        return 16 <= n <= 19
    if p2 == 35:  # JCB (3528-3589; nothing else is issued under 35)
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p2 in (36, 38, 39) or p4 == 3095:  # Diners Club
        return 14 <= n <= 19
    if p2 == 62:  # UnionPay
        return 16 <= n <= 19
    if p2 == 50 or 56 <= p2 <= 69:  # Maestro
        return 12 <= n <= 19
    return False


def find_cards(text: str, protected: Spans) -> Iterable[Found]:
    """Payment cards: a real network's prefix and length, and a valid Luhn check digit."""
    for match in _CARD.finditer(text):
        found = _card(text, match)
        if found is not None:
            yield found


def _card(text: str, match: re.Match[str]) -> Found | None:
    raw = match.group(0)
    # The pattern may take in a neighbouring group ("4111 1111 1111 1111 2 times"):
    # the whole first, then without a group or two at either end.
    cuts = [i for i, c in enumerate(raw) if not c.isdigit()]
    starts = [0] + [i + 1 for i in cuts[:2]]
    ends = [len(raw), *cuts[::-1][:2]]
    for start, end in sorted(
        ((a, b) for a in starts for b in ends if a < b), key=lambda ab: ab[0] - ab[1]
    ):
        value = raw[start:end]
        digits = re.sub(r"\D", "", value)
        if len(digits) < 12 or not (_card_network_ok(digits) and luhn.is_valid(digits)):
            continue
        a, b = match.start() + start, match.start() + end
        short = len(digits) == 12 or (len(digits) == 13 and digits[0] != "4")
        if (
            short and not _GROUPS_OF_FOUR.match(value) and not cued(text, a, b, _CARD_CUE, after=12)
        ) or named(text, a, b, _OTHER_NUMBER):
            return None  # a bare 12-digit number is as likely an account id
        return Found(kind=Kind.CARD, start=a, end=b, value=value, normal=digits)
    return None


# --- IBANs ----------------------------------------------------------------------------------

_IBAN = re.compile(
    r"(?<![\w-])(?:[A-Z]{2}\d{2}(?:[\x20\u00a0-]?[A-Z0-9]){11,32}"
    r"|[a-z]{2}\d{2}(?:[\x20\u00a0-]?[a-z0-9]){11,32})"
)


def find_ibans(text: str, protected: Spans) -> Iterable[Found]:
    """IBANs whose mod-97 check holds, spaced in groups or not."""
    for match in _IBAN.finditer(text):
        raw = match.group(0)
        # The pattern may run into the next word ("… 3000 BIC …"): try the longest
        # prefix that ends between two groups.
        ends = [len(raw)] + [i for i in range(len(raw) - 1, 14, -1) if not raw[i].isalnum()]
        for end in ends:
            value = raw[:end]
            normal = compact(value)
            if len(normal) <= 34 and stdnum_iban.is_valid(normal):
                yield Found(
                    kind=Kind.IBAN,
                    start=match.start(),
                    end=match.start() + end,
                    value=value,
                    normal=normal,
                )
                break


# --- IP addresses ---------------------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f:.]*\d)(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:])"
)
_IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
_IPV6_HINT = re.compile(r"[0-9A-Fa-f]?:[0-9A-Fa-f]{0,4}:")
_VERSION_CUE = re.compile(r"(?i)\b(?:v|ver|version|release|build|rev|firmware|fw|oid)\s*[:=]?\s*$")


def find_ips(text: str, protected: Spans) -> Iterable[Found]:
    """IPv4 and IPv6 addresses; not loopback or unspecified ones (they name nobody), nor a
    version that looks like an IPv4 address ("v1.2.3.4")."""
    for pattern, hint in ((_IPV6, _IPV6_HINT), (_IPV4, _IPV4_HINT)):
        if hint.search(text) is None:
            continue
        for match in pattern.finditer(text):
            value = match.group(0)
            if pattern is _IPV6:
                value = value.rstrip(":") if not value.endswith("::") else value
                if value.count(":") < 2:
                    continue
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                continue
            if address.is_loopback or address.is_unspecified:
                continue  # 127.0.0.1, ::1, 0.0.0.0 name nobody
            if pattern is _IPV4 and _VERSION_CUE.search(
                text[max(0, match.start() - 12) : match.start()]
            ):
                continue
            yield Found(
                kind=Kind.IP,
                start=match.start(),
                end=match.start() + len(value),
                value=value,
                normal=str(address),
            )


# --- National ids ---------------------------------------------------------------------------

# Something every scheme below needs (a cheap test before nine patterns run).
_ID_HINT = re.compile(
    r"\d(?:\d{6}|\d{2}[-\x20]\d{2}[-\x20]\d|\d{3}\.\d{2}\.|\d\x20\d{3}\x20\d{3}"
    r"|\d[A-EHLMPR-Ta-ehlmpr-t]\d{2}[A-Za-z]"  # codice fiscale: 85T10A
    r"|[\x20.]?\d{2}[\x20.]?\d{2}[\x20.]?(?:\d{2}|2[ABab])[\x20.]?\d{3})|[A-Z]{2}\x20?\d{2}"
)
_NINO_BAD_PREFIX = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def _nino_ok(value: str) -> bool:
    # HMRC's published rules; python-stdnum has no NINO module and the number has no check
    # digit, so the prefix letters (neither D, F, I, Q, U, V; O not second; not BG, GB, KN,
    # NK, NT, TN, ZZ) are the only test.
    return compact(value)[:2] not in _NINO_BAD_PREFIX


@dataclass(kw_only=True, frozen=True)
class _IdScheme:
    pattern: re.Pattern[str]
    is_valid: Callable[[str], bool]
    label: re.Pattern[str] | None = None  # required nearby, for bare digit runs


_SSN_LABEL = re.compile(r"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no|#))?|soc\.?\s*sec)\b")
_BSN_LABEL = re.compile(
    r"(?i)\b(?:bsn|burgerservicenummer|sofi-?nummer|sofinummer|citizen\s+service\s+number)\b"
)
_IDNR_LABEL = re.compile(
    r"(?i)(?:\bsteuer-?\s?id(?:entifikations)?(?:-?nr|nummer)?\b|\bidnr\b"
    r"|\bsteueridentifikationsnummer\b|\btax\s+(?:id|identification)(?:\s+(?:number|no))?\b"
    r"|\btin\b|\bidentifikationsnummer\b)"
)
_ID_SCHEMES: tuple[_IdScheme, ...] = (
    # US social security number: written 123-45-6789 it stands alone; nine bare digits
    # need the label.
    _IdScheme(
        pattern=re.compile(r"(?<![\w-])\d{3}[-\x20]\d{2}[-\x20]\d{4}(?![\w-])"),
        is_valid=ssn.is_valid,
    ),
    _IdScheme(
        pattern=re.compile(r"(?<![\w.-])\d{9}(?![\w-]|[.,]\d)"),
        is_valid=ssn.is_valid,
        label=_SSN_LABEL,
    ),
    # UK National Insurance number: AB 12 34 56 C.
    _IdScheme(
        pattern=re.compile(
            r"(?<![\w-])[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\x20?\d{2}\x20?\d{2}\x20?\d{2}\x20?[A-D]"
            r"(?![\w-])"
        ),
        is_valid=_nino_ok,
    ),
    # Dutch BSN (11-proof): nine digits, or 1234.56.782.
    _IdScheme(
        pattern=re.compile(r"(?<![\w.-])(?:\d{9}|\d{4}\.\d{2}\.\d{3})(?![\w-]|[.,]\d)"),
        is_valid=bsn.is_valid,
        label=_BSN_LABEL,
    ),
    # French NIR (sécurité sociale): 15 digits with a mod-97 key, often spaced.
    _IdScheme(
        pattern=re.compile(
            r"(?<![\w.-])[12](?:[\x20.]?\d{2}){2}[\x20.]?(?:\d{2}|2[ABab])[\x20.]?\d{3}[\x20.]?\d{3}"
            r"[\x20.]?\d{2}(?![\w-]|[.,]\d)"
        ),
        is_valid=nir.is_valid,
    ),
    # Spanish DNI (12345678Z) and NIE (X1234567L): a check letter.
    _IdScheme(pattern=re.compile(r"(?<![\w-])\d{8}-?[A-Za-z](?![\w-])"), is_valid=dni.is_valid),
    _IdScheme(
        pattern=re.compile(r"(?<![\w-])[XYZxyz]-?\d{7}-?[A-Za-z](?![\w-])"), is_valid=nie.is_valid
    ),
    # Italian codice fiscale: 16 characters with a check letter (omocodia digits as letters).
    _IdScheme(
        pattern=re.compile(
            r"(?<![\w-])[A-Za-z]{6}[\dLMNP-Vlmnp-v]{2}[A-EHLMPR-Ta-ehlmpr-t][\dLMNP-Vlmnp-v]{2}"
            r"[A-Za-z][\dLMNP-Vlmnp-v]{3}[A-Za-z](?![\w-])"
        ),
        is_valid=codicefiscale.is_valid,
    ),
    # German Steuer-ID: eleven digits (ISO 7064 mod 11,10), often 12 345 678 901.
    _IdScheme(
        pattern=re.compile(r"(?<![\w./-])\d{2}(?:\x20?\d{3}){3}(?![\w-]|[.,/]\d)"),
        is_valid=idnr.is_valid,
        label=_IDNR_LABEL,
    ),
)


def find_national_ids(text: str, protected: Spans) -> Iterable[Found]:
    """National ids of the schemes above whose checksum (or prefix) holds; a bare run of
    digits only with its scheme's name near it."""
    if all(overlaps(m.span(), protected) for m in _ID_HINT.finditer(text)):
        return  # nothing shaped like any scheme outside dates, ids and the like
    for scheme in _ID_SCHEMES:
        for match in scheme.pattern.finditer(text):
            value = match.group(0)
            if not scheme.is_valid(value):
                continue
            if named(text, match.start(), match.end(), _OTHER_NUMBER):
                continue
            digits = re.sub(r"\D", "", value)
            if (
                len(digits) >= 14
                and _card_network_ok(digits)
                and luhn.is_valid(digits)
                and cued(text, match.start(), match.end(), _CARD_CUE)
            ):
                continue  # a card that also passes the NIR's mod 97, said to be a card
            if scheme.label is not None and not cued(
                text, match.start(), match.end(), scheme.label, after=16
            ):
                continue
            yield Found(
                kind=Kind.NATIONAL_ID,
                start=match.start(),
                end=match.end(),
                value=value,
                normal=compact(value),
            )


# --- Street addresses (off by default) --------------------------------------------------

_STREET_WORDS = (
    # English
    r"street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|place|pl|square|"
    r"sq|terrace|way|close|crescent|grove|gardens|parkway|pkwy|highway|hwy|circle|trail|row|"
    r"mews|walk|hill|park|view|green|rise"
)
_ADDRESS = re.compile(
    r"(?i)(?<![\w-])(?:"
    # 1600 Amphitheatre Parkway, 10 Downing Street
    r"\d{1,5}[a-z]?\s+(?:[A-Z][\w'.-]+\s+){1,3}(?:" + _STREET_WORDS + r")\b\.?"
    # Musterstraße 12, Kerkstraat 5a, Hauptstr. 3, Bahnhofsweg 7, Lindenplein 2
    r"|[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|gasse|allee|platz|ring|damm|ufer|"
    r"straat|laan|gracht|plein|kade|steeg|singel|dijk|hof)\s+\d{1,4}[a-z]?\b"
    # 12 rue de la Paix, Calle Mayor 5, Via Roma 10, Piazza Garibaldi 3
    r"|\d{1,4}(?:\s?bis|\s?ter)?,?\s+(?:rue|avenue|boulevard|bd|chemin|impasse|allée|place|"
    r"quai|route|cours)\s+(?:(?:de|du|des|la|le|l'|d')\s*)*[A-ZÉ][\w'-]+(?:\s+[A-ZÉ][\w'-]+)?"
    r"|(?:calle|c/|avenida|avda\.|plaza|paseo|camino|carrera|via|viale|piazza|corso|"
    r"vicolo|largo|strada)\s+(?:(?:de|del|de\s+la|della|dei|di)\s+)?[A-ZÁÉÍÓÚ][\w'-]+"
    r"(?:\s+[A-ZÁÉÍÓÚ][\w'-]+)?,?\s+\d{1,4}\b"
    r")"
)


def find_addresses(text: str, protected: Spans) -> Iterable[Found]:
    """Street addresses written as in English, German, Dutch, French, Spanish or Italian."""
    for match in _ADDRESS.finditer(text):
        value = match.group(0).rstrip(".,")
        yield Found(
            kind=Kind.ADDRESS,
            start=match.start(),
            end=match.start() + len(value),
            value=value,
            normal=" ".join(value.split()).casefold(),
        )
