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
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat, PhoneNumberMatcher
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

from bot.policy import RedactionPolicy


class Kind(StrEnum):
    """A kind of personal data; the name is the placeholder's prefix (`<EMAIL_1>`)."""

    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CARD = "CARD"
    IBAN = "IBAN"
    IP = "IP"
    NATIONAL_ID = "NATIONAL_ID"
    ADDRESS = "ADDRESS"


PLACEHOLDER = re.compile(r"<(EMAIL|PHONE|CARD|IBAN|IP|NATIONAL_ID|ADDRESS)_([1-9][0-9]{0,5})>")


@dataclass(kw_only=True, frozen=True)
class Found:
    """One piece of personal data in a text: `text[start:end]` is replaced as a whole (for a
    `<mailto:…>` link that is the whole link); `value` is the data itself and `normal` the
    form equal values share (emails case-folded, phones E.164, cards and IBANs digits only)."""

    kind: Kind
    start: int
    end: int
    value: str
    normal: str


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

# --- Emails ---------------------------------------------------------------------------------

_EMAIL_HINT = re.compile(r"[\w.%+'-]@[^\W_]")
_ENCODED_EMAIL = re.compile(r"(?i)[a-z0-9._+-]+%40[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}")
# Decimal digits of every script but ASCII, to their ASCII digit (one character each).
_DIGITS = {
    cp: str(unicodedata.digit(chr(cp)))
    for cp in range(0x80, 0x10000)
    if unicodedata.category(chr(cp)) == "Nd"
}
_FOREIGN_DIGIT = re.compile("[" + "".join(chr(cp) for cp in _DIGITS) + "]")
_MAILTO = re.compile(r"[^@\s|<>]+@[^@\s|<>.]+(?:\.[^@\s|<>.]+)+")
_EMAIL = re.compile(
    r"(?<![\w.%+'@-])"
    r"([\w%+'-]+(?:\.+[\w%+'-]+)*)"  # "..": invalid, but a typo still names someone
    r"@((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63})"
    r"(?![\w-]|\.[^\W_]|:[\w/~])"  # not user@host:path (scp, git), not a longer name
)

# --- Phone numbers --------------------------------------------------------------------------

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
_WORD = re.compile(r"[^\W\d_][\w-]*")
# The end of a clause; not the dot of "Tel. 0612…" or "IdNr. 123…", which names what follows.
_CLAUSE_END = re.compile(r"\.\s+(?![\d+(])|[!?]\s|[;\n\u2014]")
_NUMBER_WORD = re.compile(r"(?i)\b(?:number|no|nr|num|nummer|num[ée]ro|n[úu]mero)\b")
_NOT_PHONE_CUE = re.compile(
    r"(?i)\b(?:order|invoice|ticket|ref|reference|tracking|account|acct|id|case|po|build|"
    r"job|run|pr|issue|serial|part|sku|batch|epoch|ts|timestamp|unix|ssn|bsn|nino|nir|dni|"
    r"nie|idnr|steuer-?id|sofi|bestell\w*|rechnung\w*|auftrag\w*|commande|"
    r"facture|factuur|bestelling|pedido|factura|ordine|fattura)\b"
)

# --- Cards, IBANs, IPs ----------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w.,/+#-])\d(?:[\x20\u00a0-]?\d){11,18}+(?![\w-]|[.,]\d)")
_CARD_CUE = re.compile(
    r"(?i)\b(?:card|cc|visa|master\s?card|maestro|amex|karte|kreditkarte|carte|kaart|"
    r"creditcard|tarjeta|carta|pay|paid|payment|charge[ds]?|refund\w*|billing|exp|expiry|"
    r"expires|cvv|cvc|zahlung|paiement|betaling|pago|pagamento)\b"
)
# A word right before a number that says it is something else.
_OTHER_NUMBER = re.compile(
    r"(?i)\b(?:ean|gtin|upc|isbn|imei|iccid|meid|sku|order|invoice|account|tracking|po)\b"
)
_GROUPS_OF_FOUR = re.compile(r"\d{4}(?:[\x20-]\d{4}){2}")
_IBAN = re.compile(
    r"(?<![\w-])(?:[A-Z]{2}\d{2}(?:[\x20\u00a0-]?[A-Z0-9]){11,32}"
    r"|[a-z]{2}\d{2}(?:[\x20\u00a0-]?[a-z0-9]){11,32})"
)
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f:.]*\d)(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:])"
)
_IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
_IPV6_HINT = re.compile(r"[0-9A-Fa-f]?:[0-9A-Fa-f]{0,4}:")
_VERSION_CUE = re.compile(r"(?i)\b(?:v|ver|version|release|build|rev|firmware|fw|oid)\s*[:=]?\s*$")

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
    return _compact(value)[:2] not in _NINO_BAD_PREFIX


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


Spans = list[tuple[int, int]]


def _overlaps(span: tuple[int, int], spans: Spans) -> bool:
    return any(span[0] < end and start < span[1] for start, end in spans)


def _compact(value: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", value).upper()


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


def _clause(text: str, start: int, end: int, before: int = 40, after: int = 24) -> tuple[str, str]:
    """The words before and after `text[start:end]` within its clause (at most `before`
    and `after` characters): what a cue word must be among to count."""
    size = end - start
    head = _CLAUSE_END.split(text[max(0, start - before) : end])[-1][:-size]
    tail = _CLAUSE_END.split(text[start : end + after])[0][size:]
    return head, tail


def _named(text: str, start: int, end: int, words: re.Pattern[str]) -> bool:
    """Whether one of the two words right before `text[start:end]`, in its clause, is one
    of `words` ("order 4155550123", "SSN 666-12-3456", "EAN 4006381333931")."""
    head, _ = _clause(text, start, end, before=32, after=0)
    return words.search(" ".join(_WORD.findall(head)[-2:])) is not None


def _cued(text: str, start: int, end: int, cue: re.Pattern[str], after: int = 24) -> bool:
    head, tail = _clause(text, start, end, after=after)
    return cue.search(head) is not None or cue.search(tail) is not None


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
            return self._phone_normal(value) or re.sub(r"[^\d+]", "", value)
        if kind is Kind.IP:
            try:
                return str(ipaddress.ip_address(value.strip().strip("[]")))
            except ValueError:
                return value.strip().lower()
        if kind is Kind.ADDRESS:
            return " ".join(value.split()).casefold()
        return _compact(value)

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
            (Kind.IBAN, self._ibans),
            (Kind.EMAIL, self._emails),
            (Kind.EMAIL, self._encoded_emails),
            (Kind.NATIONAL_ID, self._national_ids),  # mod 97 (NIR) outranks Luhn
            (Kind.CARD, self._cards),
            (Kind.IP, self._ips),
            (Kind.PHONE, self._phones),
            (Kind.ADDRESS, self._addresses),
        ):
            if not self._on[kind] or not (has_digit or kind in (Kind.EMAIL, Kind.ADDRESS)):
                continue
            if kind not in (Kind.IBAN, Kind.EMAIL) and lookalikes:
                taken.extend(lookalikes)
                lookalikes = []
            for found in search(text, taken):
                if not _overlaps((found.start, found.end), taken):
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
            if not self._on[Kind.EMAIL] or _MAILTO.fullmatch(value) is None:
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

    def _encoded_emails(self, text: str, protected: Spans) -> Iterable[Found]:
        """Addresses percent-encoded in a URL (`?email=jane.doe%40acme.io`): the written
        form is replaced, the decoded one is what equal values share."""
        for match in _ENCODED_EMAIL.finditer(text):
            decoded = unquote(match.group(0))
            if _MAILTO.fullmatch(decoded):
                yield Found(
                    kind=Kind.EMAIL,
                    start=match.start(),
                    end=match.end(),
                    value=match.group(0),
                    normal=decoded.casefold(),
                )

    def _emails(self, text: str, protected: Spans) -> Iterable[Found]:
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

    def _phones(self, text: str, protected: Spans) -> Iterable[Found]:
        for match in _PHONE.finditer(text):
            raw = match.group(0)
            if sum(c.isdigit() for c in raw) < 7 or _overlaps(match.span(), protected):
                continue
            if _named(text, match.start(), match.end(), _NOT_PHONE_CUE):
                continue  # order 201-555-0123, SSN 666-12-3456
            dotted = _DOTTED.fullmatch(raw) is not None
            if (dotted and len(raw) - raw.count(".") < 9) or (
                _DOTTED_NOT_PHONE.fullmatch(raw)
                or (_DOTTED_QUAD.fullmatch(raw) and all(int(g) <= 255 for g in raw.split(".")))
            ):
                continue  # versions, OIDs, decimals, addresses that are not valid IPs
            # Bare digits, or 49 895 353 (a count with thousands separators), need a cue.
            bare = raw.isdigit() or _THOUSANDS.fullmatch(raw) is not None
            if bare and not self._phone_cued(text, match.start(), match.end()):
                continue  # bare digits: an order number looks the same
            for start, end, number in self._phone_matches(raw):
                value = raw[start:end]
                a, b = match.start() + start, match.start() + end
                if not bare and value.isdigit() and not self._phone_cued(text, a, b):
                    continue
                normal = phonenumbers.format_number(number, PhoneNumberFormat.E164)
                if number.extension:
                    normal += "x" + number.extension
                yield Found(kind=Kind.PHONE, start=a, end=b, value=value, normal=normal)

    def _phone_matches(self, raw: str) -> list[tuple[int, int, phonenumbers.PhoneNumber]]:
        """libphonenumber's reading of one candidate: the whole of it as a number of the
        first region where it is valid; failing that, all but its last group ("0612345678
        3 times") or — unless it starts "+", where that would reread the country code as a
        national number — all but its first."""
        whole = self._phone_whole(raw)
        if whole is not None:
            return [whole]
        if " " not in raw:
            return []
        part = self._phone_whole(raw[: raw.rindex(" ")])
        if part is not None:
            return [part]
        if raw.lstrip("(").startswith("+"):
            return []
        cut = raw.index(" ") + 1
        part = self._phone_whole(raw[cut:])
        return [] if part is None else [(part[0] + cut, part[1] + cut, part[2])]

    def _phone_whole(self, raw: str) -> tuple[int, int, phonenumbers.PhoneNumber] | None:
        if sum(c.isdigit() for c in raw) < 7:
            return None
        plus = raw.lstrip("(").startswith("+")
        first = next(i for i, c in enumerate(raw) if c.isdigit())
        last = len(raw.rstrip(" "))
        # Four groups or more written without "+" must be grouped as the region writes its
        # numbers: 383-643-8480-40 is a part number, 06 12 34 56 78 a phone number.
        groups = len(_PHONE_GROUP_SEP.split(raw.strip()))
        leniency = Leniency.VALID if plus or groups < 4 else Leniency.STRICT_GROUPING
        for region in self.regions[:1] if plus else self.regions:
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

    def _phone_cued(self, text: str, start: int, end: int) -> bool:
        """Whether a word near a bare run of digits says it is a phone number: in the same
        clause, and not with "order", "invoice", "account"… right before it."""
        before, after = _clause(text, start, end)
        if _PHONE_CUE.search(before) or _PHONE_CUE.search(after):
            return True
        near = before + " " + after
        return _NUMBER_WORD.search(near) is not None and _NOT_PHONE_CUE.search(near) is None

    def _phone_normal(self, value: str) -> str | None:
        for region in self.regions:
            try:
                number = phonenumbers.parse(value, region)
            except phonenumbers.NumberParseException:
                return None
            if phonenumbers.is_valid_number(number):
                normal = phonenumbers.format_number(number, PhoneNumberFormat.E164)
                return normal + ("x" + number.extension if number.extension else "")
        return None

    def _cards(self, text: str, protected: Spans) -> Iterable[Found]:
        for match in _CARD.finditer(text):
            found = self._card(text, match)
            if found is not None:
                yield found

    def _card(self, text: str, match: re.Match[str]) -> Found | None:
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
                short
                and not _GROUPS_OF_FOUR.match(value)
                and not _cued(text, a, b, _CARD_CUE, after=12)
            ) or _named(text, a, b, _OTHER_NUMBER):
                return None  # a bare 12-digit number is as likely an account id
            return Found(kind=Kind.CARD, start=a, end=b, value=value, normal=digits)
        return None

    def _ibans(self, text: str, protected: Spans) -> Iterable[Found]:
        for match in _IBAN.finditer(text):
            raw = match.group(0)
            # The pattern may run into the next word ("… 3000 BIC …"): try the longest
            # prefix that ends between two groups.
            ends = [len(raw)] + [i for i in range(len(raw) - 1, 14, -1) if not raw[i].isalnum()]
            for end in ends:
                value = raw[:end]
                compact = _compact(value)
                if len(compact) <= 34 and stdnum_iban.is_valid(compact):
                    yield Found(
                        kind=Kind.IBAN,
                        start=match.start(),
                        end=match.start() + end,
                        value=value,
                        normal=compact,
                    )
                    break

    def _ips(self, text: str, protected: Spans) -> Iterable[Found]:
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

    def _national_ids(self, text: str, protected: Spans) -> Iterable[Found]:
        if all(_overlaps(m.span(), protected) for m in _ID_HINT.finditer(text)):
            return  # nothing shaped like any scheme outside dates, ids and the like
        for scheme in _ID_SCHEMES:
            for match in scheme.pattern.finditer(text):
                value = match.group(0)
                if not scheme.is_valid(value):
                    continue
                if _named(text, match.start(), match.end(), _OTHER_NUMBER):
                    continue
                digits = re.sub(r"\D", "", value)
                if (
                    len(digits) >= 14
                    and _card_network_ok(digits)
                    and luhn.is_valid(digits)
                    and _cued(text, match.start(), match.end(), _CARD_CUE)
                ):
                    continue  # a card that also passes the NIR's mod 97, said to be a card
                if scheme.label is not None and not _cued(
                    text, match.start(), match.end(), scheme.label, after=16
                ):
                    continue
                yield Found(
                    kind=Kind.NATIONAL_ID,
                    start=match.start(),
                    end=match.end(),
                    value=value,
                    normal=_compact(value),
                )

    def _addresses(self, text: str, protected: Spans) -> Iterable[Found]:
        for match in _ADDRESS.finditer(text):
            value = match.group(0).rstrip(".,")
            yield Found(
                kind=Kind.ADDRESS,
                start=match.start(),
                end=match.start() + len(value),
                value=value,
                normal=" ".join(value.split()).casefold(),
            )


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
