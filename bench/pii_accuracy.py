"""Accuracy of `bot/pii.py` on a labelled chat corpus, and what it costs on the ack path.

    .venv/bin/python bench/pii_accuracy.py            # writes bench/results-pii.json
    .venv/bin/python bench/pii_accuracy.py --per 60   # fewer sentences per kind and locale

Faker (en_US, en_GB, de_DE, fr_FR, nl_NL, es_ES, it_IT) supplies the personal data, put in
chat sentences ("send the report to …", "call me on …"); forms Faker does not write are made
here (phone numbers with dots, spaces, parentheses, "00" and bare digits; plus-addressed,
subdomain and upper-case emails; compressed IPv6; spaced IBANs and cards; NINOs and
Steuer-IDs, which Faker has no provider for). Hard negatives — order and ticket numbers,
Slack ids, mentions, links and timestamps, versions, SHAs, UUIDs, dates, prices, ports,
durations — are mixed in and also stand alone. The seed is fixed.

A label counts as found when a detection of the same kind covers it; a detection is correct
when it overlaps a label of its kind. Secrets are `bot/redact.py`'s: recall there must be 1.0.
The exit status is 1 if a kind that is on by default misses recall 0.99 or precision 0.95.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import platform
import random
import statistics
import string
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from string import hexdigits
from typing import Any

import phonenumbers
from faker import VERSION as FAKER_VERSION
from faker import Faker
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from stdnum.de import idnr
from stdnum.nl import bsn

from bot.pii import Detector, Kind, Masker
from bot.policy_sections import RedactionPolicy
from bot.redact import redact

SEED = 20240601
LOCALES = {
    "en_US": "US",
    "en_GB": "GB",
    "de_DE": "DE",
    "fr_FR": "FR",
    "nl_NL": "NL",
    "es_ES": "ES",
    "it_IT": "IT",
}
RECALL_TARGET, PRECISION_TARGET = 0.99, 0.95
ROOT = Path(__file__).resolve().parent


@dataclass
class Sample:
    text: str
    labels: list[tuple[Kind, int, int]] = field(default_factory=list)
    group: str = "positive"


class Builder:
    """Builds a sentence piece by piece, remembering where each labelled value went."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.labels: list[tuple[Kind, int, int]] = []
        self.size = 0

    def add(self, text: str, kind: Kind | None = None) -> Builder:
        if kind is not None:
            self.labels.append((kind, self.size, self.size + len(text)))
        self.parts.append(text)
        self.size += len(text)
        return self

    def fill(self, template: str, values: list[tuple[str, Kind | None]]) -> Builder:
        pieces = template.split("{}")
        assert len(pieces) == len(values) + 1, template
        for piece, (value, kind) in zip(pieces, [*values, ("", None)], strict=True):
            self.add(piece)
            if value:
                self.add(value, kind)
        return self

    def sample(self, group: str) -> Sample:
        return Sample("".join(self.parts), list(self.labels), group)


# --- Sentence templates ------------------------------------------------------------------

TEMPLATES: dict[Kind, dict[str, list[str]]] = {
    Kind.EMAIL: {
        "en": [
            "send the report to {} when it's done",
            "can you add {} to the on-call rota?",
            "ping {} about the failed deploy",
            "forwarding this from {}: the invoice bounced",
            "my email is {}",
            "cc {} and {} on the incident review",
            "reply-to should be {}.",
            "{} asked for access to the staging bucket",
        ],
        "de_DE": ["schick das bitte an {}", "meine Mail ist {}, danke"],
        "fr_FR": ["envoie le rapport à {} stp", "mon adresse: {}"],
        "nl_NL": ["stuur het naar {} aub", "mijn e-mail is {}"],
        "es_ES": ["envía el informe a {} por favor", "mi correo es {}"],
        "it_IT": ["manda il report a {} grazie", "la mia email è {}"],
    },
    Kind.PHONE: {
        "en": [
            "call me on {} if the build breaks",
            "my number is {}",
            "reach me at {} after 6pm",
            "you can text {} for the door code",
            "on-call phone: {}",
            "mobile {} (personal, don't share)",
            "ring {} and ask for Sam",
            "his cell is {}, try that",
            "contact {} or {} for escalation",
        ],
        "de_DE": ["ruf mich unter {} an", "meine Handynummer ist {}", "Telefon: {}"],
        "fr_FR": ["appelle-moi au {} stp", "mon portable: {}", "tél. {}"],
        "nl_NL": ["bel me op {}", "mijn mobiel is {}", "telefoonnummer {}"],
        "es_ES": ["llámame al {}", "mi móvil es {}", "teléfono: {}"],
        "it_IT": ["chiamami al {}", "il mio cellulare è {}", "telefono {}"],
    },
    Kind.CARD: {
        "en": [
            "charge it to card {} please",
            "the customer paid with {}, exp 04/27",
            "card number {} was declined twice",
            "refund the payment on {}",
            "use my visa {} for the renewal",
            "billing card: {}",
            "can you check why {} failed at checkout?",
        ],
        "de_DE": ["Kreditkarte {} wurde abgelehnt"],
        "fr_FR": ["la carte {} a été refusée"],
        "nl_NL": ["creditcard {} werd geweigerd"],
        "es_ES": ["la tarjeta {} fue rechazada"],
        "it_IT": ["la carta {} è stata rifiutata"],
    },
    Kind.IBAN: {
        "en": [
            "wire the refund to {} today",
            "IBAN: {}",
            "her account is {}, BIC to follow",
            "please update the payee to {}",
            "payment from {} bounced",
        ],
        "de_DE": ["bitte auf {} überweisen"],
        "fr_FR": ["virement sur {} svp"],
        "nl_NL": ["maak het over naar {}"],
        "es_ES": ["transferencia a {} por favor"],
        "it_IT": ["bonifico su {} grazie"],
    },
    Kind.IP: {
        "en": [
            "the requests all come from {}",
            "block {} at the firewall",
            "ssh into {} and check the logs",
            "user logged in from {} and {}",
            "is {} on the allow list?",
            "curl http://{}/health returns 502",
            "the client IP was {}.",
        ],
        "de_DE": ["Zugriff von {} blockieren"],
        "fr_FR": ["bloque l'adresse {}"],
        "nl_NL": ["blokkeer {} even"],
        "es_ES": ["bloquea la IP {}"],
        "it_IT": ["blocca l'IP {}"],
    },
}

# National ids: (template, label needed?) per locale; bare digits need the label word.
ID_TEMPLATES = {
    "en_US": ["my SSN is {}", "SSN: {} (for the background check)", "social security number {}"],
    "en_GB": ["my NI number is {}", "National Insurance: {}", "payroll needs {} for her"],
    "de_DE": ["meine Steuer-ID ist {}", "Steuer-IdNr. {} bitte eintragen", "IdNr {}"],
    "fr_FR": ["mon numéro de sécu est {}", "NIR {}", "le salarié a le numéro {}"],
    "nl_NL": ["mijn BSN is {}", "BSN: {}", "burgerservicenummer {}"],
    "es_ES": ["mi DNI es {}", "NIE {}", "el documento {} está caducado"],
    "it_IT": ["il mio codice fiscale è {}", "CF: {}", "codice {} per la fattura"],
}

ADDRESS_TEMPLATES = [
    "ship it to {} please",
    "the office moved to {}",
    "I live at {} now",
    "deliver to {}, ring twice",
]

EMAIL_DOMAINS = ["example.com", "mail.example.org", "eu.corp.example.net", "example.co.uk"]


# --- Generators ---------------------------------------------------------------------------


def faker_for(locale: str) -> Faker:
    fake = Faker(locale)
    fake.seed_instance(SEED + sum(map(ord, locale)))
    return fake


def gen_email(fake: Faker, rnd: random.Random) -> str:
    pick = rnd.randrange(8)
    if pick < 3:
        return str([fake.email, fake.free_email, fake.company_email][pick]())
    user = fake.user_name()
    if pick == 3:
        return f"{user}+{rnd.choice(['alerts', 'ops', 'jira', 'x1'])}@{rnd.choice(EMAIL_DOMAINS)}"
    if pick == 4:
        first = fake.first_name().lower().replace(" ", "")
        last = fake.last_name().lower().replace(" ", "")
        return f"{first}.{last}@{rnd.choice(EMAIL_DOMAINS)}"
    if pick == 5:
        return f"{user}@{rnd.choice(EMAIL_DOMAINS)}".upper()
    if pick == 6:
        return f"{user}_{rnd.randrange(100)}@dept.{fake.domain_name()}"
    return f"{fake.first_name()}.{fake.last_name()}@{fake.free_email_domain()}".replace(" ", "")


def _valid_number(region: str, rnd: random.Random) -> phonenumbers.PhoneNumber:
    kind = rnd.choice([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE])
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    national = phonenumbers.national_significant_number(example)  # keeps Italy's 0
    while True:
        keep = rnd.randint(2, 4)  # the area or mobile prefix; the rest is drawn
        digits = national[:keep] + "".join(rnd.choice(string.digits) for _ in national[keep:])
        number = phonenumbers.parse("+" + str(example.country_code) + digits)
        if phonenumbers.is_valid_number(number):
            return number


def gen_phone(fake: Faker, region: str, rnd: random.Random) -> str:
    """A phone number: Faker's (when libphonenumber calls it valid: Faker draws area codes
    at random, and en_GB uses Ofcom's drama numbers, which are nobody's) or one of the
    forms people type."""
    return phone_in_some_form(fake, region, rnd)[0]


def phone_in_some_form(fake: Faker, region: str, rnd: random.Random) -> tuple[str, str]:
    if rnd.random() < 0.35:
        for _ in range(50):
            text = str(fake.phone_number())
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(text, region)):
                    return text, "faker"
            except phonenumbers.NumberParseException:
                pass
    number = _valid_number(region, rnd)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    form = rnd.choice(
        ["e164", "international", "national", "dots", "spaces", "paren0", "00", "bare", "dashes"]
    )
    if form == "e164":
        return phonenumbers.format_number(number, PhoneNumberFormat.E164), form
    if form == "international":
        return international, form
    if form == "national":
        return national, form
    groups = [g for g in national.replace("(", " ").replace(")", " ").replace("-", " ").split()]
    if form == "dots":
        return ".".join(groups), form
    if form == "spaces":
        return " ".join(groups), form
    if form == "dashes":
        return "-".join(groups), form
    cc, rest = international.split(" ", 1)
    if form == "paren0":  # "+44 (0)20 …" where the national prefix is 0, else "+1 (201) …"
        if region in ("GB", "DE", "FR", "NL"):
            return f"{cc} (0){rest}", form
        area, tail = (rest[:3], rest[4:]) if region == "US" else rest.split(" ", 1)
        return f"{cc} ({area}) {tail}", form
    if form == "00":
        return ("011 " if region == "US" else "00") + cc[1:] + " " + rest, form
    return "".join(c for c in national if c.isdigit()), form


CARD_TYPES = [
    "visa16",
    "visa13",
    "visa19",
    "mastercard",
    "amex",
    "discover",
    "diners",
    "jcb15",
    "jcb16",
    "maestro",
]


def gen_card(fake: Faker, rnd: random.Random) -> str:
    while True:
        digits = str(fake.credit_card_number(card_type=rnd.choice(CARD_TYPES)))
        if not digits.startswith("0"):  # Faker's Maestro "0604…" is no issuer range
            break
    form = rnd.randrange(4)
    if form == 0:
        return digits
    if len(digits) == 15 and digits[:2] in ("34", "37"):
        groups = [digits[:4], digits[4:10], digits[10:]]
    else:
        groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    return (" " if form in (1, 2) else "-").join(groups)


def gen_iban(fake: Faker, rnd: random.Random) -> str:
    value = str(fake.iban())
    form = rnd.randrange(4)
    if form == 0:
        return value
    spaced = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return spaced.lower() if form == 3 else spaced


def gen_ip(fake: Faker, rnd: random.Random) -> str:
    pick = rnd.randrange(7)
    if pick == 0:
        return str(fake.ipv4_public())
    if pick == 1:
        return str(fake.ipv4_private())
    if pick == 2:
        return str(fake.ipv6())
    groups = [f"{rnd.randrange(65536):x}" for _ in range(8)]
    zero_from = rnd.randrange(1, 6)
    for i in range(zero_from, zero_from + rnd.randint(2, 3)):
        groups[i] = "0"
    compressed = str(ipaddress.IPv6Address(":".join(groups)))
    if pick == 3:
        return compressed
    if pick == 4:
        return "2001:db8::" + f"{rnd.randrange(1, 65536):x}"
    if pick == 5:
        return "fe80::" + ":".join(f"{rnd.randrange(65536):x}" for _ in range(4))
    while True:
        address = ipaddress.IPv4Address(rnd.randrange(1 << 24, 223 << 24))
        if not address.is_loopback:  # 127/8 names nobody and is not redacted
            return str(address)


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"
NINO_BAD = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def gen_national_id(fake: Faker, locale: str, rnd: random.Random) -> str:
    if locale == "en_US":
        value = str(fake.ssn())
        return value if rnd.random() < 0.8 else value.replace("-", "")
    if locale == "en_GB":
        while True:
            prefix = rnd.choice(NINO_FIRST) + rnd.choice(NINO_SECOND)
            if prefix not in NINO_BAD:
                break
        digits = "".join(rnd.choice(string.digits) for _ in range(6))
        suffix = rnd.choice("ABCD")
        if rnd.random() < 0.5:
            return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
        return prefix + digits + suffix
    if locale == "de_DE":
        while True:
            first = rnd.choice("123456789")
            body = first + "".join(rnd.choice(string.digits) for _ in range(9))
            number = body + idnr.mod_11_10.calc_check_digit(body)
            if idnr.is_valid(number):
                break
        return (
            number
            if rnd.random() < 0.6
            else f"{number[:2]} {number[2:5]} {number[5:8]} {number[8:]}"
        )
    if locale == "fr_FR":
        value = str(fake.ssn())
        if rnd.random() < 0.5:
            v = value
            return f"{v[0]} {v[1:3]} {v[3:5]} {v[5:7]} {v[7:10]} {v[10:13]} {v[13:]}"
        return value
    if locale == "nl_NL":
        value = str(fake.ssn())
        assert bsn.is_valid(value)
        return value if rnd.random() < 0.7 else f"{value[:4]}.{value[4:6]}.{value[6:]}"
    if locale == "es_ES":
        return str(fake.nif() if rnd.random() < 0.6 else fake.nie())
    return str(fake.ssn())  # it_IT: codice fiscale


# --- Hard negatives ------------------------------------------------------------------------


def negative_tokens(rnd: random.Random, fake: Faker) -> list[str]:
    """Things in chat that look like personal data and are not."""
    hexs = "0123456789abcdef"

    def word(size: int, alphabet: str) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(size))

    sha = "".join(rnd.choice(hexs) for _ in range(40))
    ts = f"{rnd.randint(1_600_000_000, 1_800_000_000)}.{rnd.randrange(1_000_000):06d}"
    user = "U" + "".join(rnd.choice(string.ascii_uppercase + string.digits) for _ in range(10))
    chan = "C" + "".join(rnd.choice(string.ascii_uppercase + string.digits) for _ in range(10))
    return [
        f"order #{rnd.randint(10_000, 99_999_999)}",
        f"order {rnd.randint(1_000_000_000, 9_999_999_999)}",
        f"ORD-{rnd.randint(2019, 2025)}-{rnd.randint(100_000, 999_999)}",
        f"invoice INV-{rnd.randint(1, 999_999):06d}",
        f"tracking 1Z{word(16, string.ascii_uppercase + string.digits)}",
        f"ticket INC-{rnd.randint(100, 99_999)}",
        f"JIRA-{rnd.randint(100, 9999)}",
        f"PR #{rnd.randint(100, 9999)}",
        f"<@{user}>",
        f"<#{chan}|{fake.word()}>",
        f"<!subteam^S{rnd.randint(10**8, 10**9)}|@oncall>",
        "<!here>",
        "<!channel>",
        f"<https://{fake.domain_name()}/{fake.uri_path()}|{fake.word()}>",
        f"<https://acme.slack.com/archives/{chan}/p{ts.replace('.', '')}>",
        f"thread_ts {ts}",
        f"ts={ts}",
        user,
        chan,
        f"v{rnd.randint(0, 9)}.{rnd.randint(0, 30)}.{rnd.randint(0, 99)}",
        f"version {rnd.randint(1, 9)}.{rnd.randint(0, 9)}.{rnd.randint(0, 9)}.{rnd.randint(0, 99)}",
        f"Chrome {rnd.randint(100, 130)}.0.{rnd.randint(4000, 7000)}.{rnd.randint(10, 200)}",
        f"commit {sha}",
        f"commit {sha[:7]}",
        f"request id {fake.uuid4()}",
        f"{fake.date_between('-2y', 'today').isoformat()}",
        f"{fake.iso8601()}Z",
        f"{rnd.randint(1, 28):02d}.{rnd.randint(1, 12):02d}.{rnd.randint(2019, 2026)}",
        f"{rnd.randint(1, 12):02d}/{rnd.randint(1, 28):02d}/{rnd.randint(2019, 2026)}",
        f"{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}",
        f"${rnd.randint(1, 99)},{rnd.randint(100, 999)}.{rnd.randint(0, 99):02d}",
        f"€ {rnd.randint(1, 99)}.{rnd.randint(100, 999)},{rnd.randint(0, 99):02d}",
        f"£{rnd.randint(1, 999)}",
        f"port {rnd.choice([22, 443, 5432, 6379, 8080, 9090, 27017])}",
        f"localhost:{rnd.randint(1024, 65535)}",
        f"{rnd.randint(1, 9)}h{rnd.randint(1, 59)}m",
        f"{rnd.randint(1, 999)}ms",
        f"{rnd.randint(2, 90)} days",
        f"{rnd.randint(1000, 99_999_999):,} rows",
        f"exit code {rnd.choice([1, 2, 127, 137, 143])}",
        f"HTTP {rnd.choice([400, 401, 403, 404, 500, 502, 503])}",
        f"error 0x{rnd.randrange(16**8):08X}",
        f"epoch {rnd.randint(1_600_000_000, 1_800_000_000)}",
        f"at {rnd.randint(1_600_000_000_000, 1_800_000_000_000)} ms",
        f"build {rnd.randint(2019, 2025)}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}.3",
        f"checkout-api-{word(9, hexs)}-{word(5, string.ascii_lowercase + string.digits)}",
        f"account {rnd.randint(10**11, 10**12 - 1)}",
        f"arn:aws:iam::{rnd.randint(10**11, 10**12 - 1)}:role/deploy",
        f"sha256:{''.join(rnd.choice(hexs) for _ in range(64))}",
        f"OID 1.3.6.1.4.1.{rnd.randint(1000, 99999)}",
        f"pkg@{rnd.randint(1, 9)}.{rnd.randint(0, 20)}.{rnd.randint(0, 20)}",
        f"git@github.com:acme/{fake.word()}.git",
        "@here",
        f"{rnd.randint(2, 64)} cores / {rnd.choice([8, 16, 32, 64])} GiB",
        f"p99 {rnd.randint(50, 900)}ms over {rnd.randint(1000, 99999)} requests",
        f"ISBN 978-{rnd.randint(0, 9)}-{rnd.randint(10, 99)}-{rnd.randint(10**5, 10**6)}-7",
        f"{rnd.randint(10, 99)} {rnd.randint(100, 999)} {rnd.randint(100, 999)} items",
        f"lat {rnd.uniform(-90, 90):.6f}, lon {rnd.uniform(-180, 180):.6f}",
        # written after the detector was tuned, to check it was not tuned to the list above
        f"IMEI {rnd.randint(10**14, 10**15 - 1)}",
        f"EAN {rnd.randint(4 * 10**12, 5 * 10**12)}",
        f"MAC {':'.join(f'{rnd.randrange(256):02X}' for _ in range(6))}",
        f"PO {rnd.randint(4_500_000_000, 4_599_999_999)}",
        f"room {rnd.randint(1, 9)}.{rnd.randint(10, 99)}",
        f"call at {rnd.randint(9, 17)}:{rnd.choice(['00', '15', '30', '45'])}",
        f"phone {rnd.randint(1, 3)} of {rnd.randint(4, 9)} died",
        f"case {rnd.randint(10**7, 10**9)}",
        f"node-{rnd.randint(1, 64)}.{fake.domain_name()}",
        f"{rnd.randint(100, 999)}-{rnd.randint(100, 999)}-{rnd.randint(1000, 9999)}-42",
        f"SKU {rnd.randint(10**9, 10**10)}",
    ]


NEGATIVE_TEMPLATES = [
    "can you restart checkout-api? see {}",
    "{} is still failing after the rollback",
    "looks related to {} and {}",
    "deploy {} to staging, not prod",
    "fyi {}",
    "{} — anyone on this?",
]


# --- Corpus -------------------------------------------------------------------------------


def templates_for(kind: Kind, locale: str) -> list[str]:
    table = TEMPLATES[kind]
    return table["en"] + table.get(locale, [])


def build_corpus(per: int) -> list[Sample]:
    rnd = random.Random(SEED)
    corpus: list[Sample] = []
    for locale, region in LOCALES.items():
        fake = faker_for(locale)
        makers: dict[Kind, Callable[[], str]] = {
            Kind.EMAIL: partial(gen_email, fake, rnd),
            Kind.PHONE: partial(gen_phone, fake, region, rnd),
            Kind.CARD: partial(gen_card, fake, rnd),
            Kind.IBAN: partial(gen_iban, fake, rnd),
            Kind.IP: partial(gen_ip, fake, rnd),
        }
        for kind, make in makers.items():
            for _ in range(per):
                template = rnd.choice(templates_for(kind, locale))
                values = [(make(), kind) for _ in range(template.count("{}"))]
                if "http://{}" in template and ":" in values[0][0]:
                    template = template.replace("{}", "[{}]:8080")  # IPv6 in a URL
                elif "http://{}" in template:
                    template = template.replace("{}", "{}:8080")
                builder = Builder()
                if rnd.random() < 0.3:  # a hard negative in the same message
                    builder.add(rnd.choice(negative_tokens(rnd, fake)) + " — ")
                corpus.append(builder.fill(template, values).sample("positive"))
        for _ in range(per // 3):  # emails as Slack writes them
            email = gen_email(fake, rnd)
            token = f"<mailto:{email}|{email}>"
            corpus.append(
                Builder().fill("mail {} about it", [(token, Kind.EMAIL)]).sample("positive")
            )
        for _ in range(per):
            template = rnd.choice(ID_TEMPLATES[locale])
            value = gen_national_id(fake, locale, rnd)
            corpus.append(Builder().fill(template, [(value, Kind.NATIONAL_ID)]).sample("positive"))
        for _ in range(per):
            template = rnd.choice(ADDRESS_TEMPLATES)
            value = " ".join(str(fake.street_address()).split())
            corpus.append(Builder().fill(template, [(value, Kind.ADDRESS)]).sample("address"))
        for _ in range(per * 4):
            template = rnd.choice(NEGATIVE_TEMPLATES)
            tokens = negative_tokens(rnd, fake)
            values: list[tuple[str, Kind | None]] = [
                (rnd.choice(tokens), None) for _ in range(template.count("{}"))
            ]
            corpus.append(Builder().fill(template, values).sample("negative"))
        for token in negative_tokens(rnd, fake):  # each kind of negative at least once alone
            corpus.append(Builder().add(token).sample("negative"))
    return corpus


def bare_phone_corpus(per: int) -> list[Sample]:
    """Phone numbers typed as bare digits with no word saying so: reported, not targeted."""
    rnd = random.Random(SEED + 1)
    corpus = []
    for region in LOCALES.values():
        for _ in range(per // 3):
            number = _valid_number(region, rnd)
            national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
            digits = "".join(c for c in national if c.isdigit())
            corpus.append(Builder().fill("ok, {} it is", [(digits, Kind.PHONE)]).sample("bare"))
    return corpus


# --- Scoring ------------------------------------------------------------------------------


def score(corpus: list[Sample], detector: Detector, kinds: list[Kind]) -> dict[str, Any]:
    found_labels: Counter[Kind] = Counter()
    labels: Counter[Kind] = Counter()
    correct: Counter[Kind] = Counter()
    detected: Counter[Kind] = Counter()
    misses: dict[Kind, list[str]] = defaultdict(list)
    false: dict[Kind, list[str]] = defaultdict(list)
    for sample in corpus:
        found = detector.find(sample.text)
        for kind, start, end in sample.labels:
            if kind not in kinds:
                continue
            labels[kind] += 1
            if any(f.kind is kind and f.start <= start and f.end >= end for f in found):
                found_labels[kind] += 1
            else:
                misses[kind].append(sample.text)
        for f in found:
            if f.kind not in kinds:
                continue
            detected[f.kind] += 1
            if any(k is f.kind and f.start < e and s < f.end for k, s, e in sample.labels):
                correct[f.kind] += 1
            else:
                false[f.kind].append(f"{f.value!r} in {sample.text!r}")
    result: dict[str, Any] = {}
    for kind in kinds:
        recall = found_labels[kind] / labels[kind] if labels[kind] else 1.0
        precision = correct[kind] / detected[kind] if detected[kind] else 1.0
        result[kind.value] = {
            "labels": labels[kind],
            "detections": detected[kind],
            "recall": round(recall, 4),
            "precision": round(precision, 4),
            "missed_examples": misses[kind][:5],
            "false_positive_examples": false[kind][:5],
        }
    return result


# --- Secrets ------------------------------------------------------------------------------


def secrets_recall(rnd: random.Random) -> dict[str, Any]:
    alnum = string.ascii_letters + string.digits

    def s(n: int, chars: str = alnum) -> str:
        return "".join(rnd.choice(chars) for _ in range(n))

    made: list[tuple[str, str]] = []
    for _ in range(100):
        made += [
            (
                "slack bot token",
                f"xoxb-{rnd.randint(10**11, 10**12)}-{rnd.randint(10**11, 10**12)}-{s(24)}",
            ),
            ("slack user token", f"xoxp-{rnd.randint(10**11, 10**12)}-{s(30)}"),
            (
                "slack app token",
                f"xapp-1-A{s(10).upper()}-{rnd.randint(10**12, 10**13)}-{s(64, hexdigits)}",
            ),
            ("aws access key", "AKIA" + s(16, string.ascii_uppercase + string.digits)),
            ("github token", "ghp_" + s(36)),
            ("github app token", "ghs_" + s(36)),
            ("anthropic key", "sk-ant-api03-" + s(40, alnum + "-_")),
            (
                "private key",
                "-----BEGIN RSA PRIVATE KEY-----\n"
                + s(64, alnum + "+/")
                + "\n-----END RSA PRIVATE KEY-----",
            ),
            ("password assignment", s(rnd.randint(8, 24), alnum + "!#$%^*")),
        ]
    contexts = [
        "here's the token: {}",
        "export TOKEN={}",
        "oops pasted {} by mistake",
        "password={}",
        "use {} for the deploy",
    ]
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    misses: list[str] = []
    for name, secret in made:
        template = "password={}" if name == "password assignment" else rnd.choice(contexts)
        text = template.format(secret)
        totals[name] += 1
        if secret not in redact(text):
            hits[name] += 1
        else:
            misses.append(text)
    per = {name: round(hits[name] / totals[name], 4) for name in totals}
    return {
        "recall": round(sum(hits.values()) / sum(totals.values()), 4),
        "per_kind": per,
        "missed": misses[:5],
    }


# --- Ack-path cost ------------------------------------------------------------------------

ACK_MESSAGES = [
    "<@U012WARDEN> restart checkout-api in prod please, it's been throwing 502s since the "
    "10:30 deploy (v2.14.3, commit 9f3e2c1). See <https://grafana.example.com/d/abc|dash> "
    "and the runbook. Thanks a lot!",
    "<@U012WARDEN> can you scale payments-worker to 6 replicas? queue depth is at 48213 and "
    "the p99 is 2.4s; INC-4821 is tracking it, see thread 1700000000.000100 in <#C0OPS|ops> "
    "for details, thanks",
    "<@U012WARDEN> flush the session cache for staging and tell <#C0OPS|ops> when done. "
    "It's blocking the release 3.2.0 rollout that was scheduled for 2024-05-14 at 14:00, "
    "ask <@U0ALICE> if unsure.",
]
ACK_WITH_PII = (
    "<@U012WARDEN> the customer <mailto:jane.doe@example.com|jane.doe@example.com> says her "
    "card 4111 1111 1111 1111 was charged twice; call her on +49 1512 3456789 from 10.2.3.4"
)


def ack_cost(detector: Detector, rounds: int = 3000) -> dict[str, float]:
    def median_us(text: str) -> float:
        samples = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            Masker(detector).mask(text)
            samples.append((time.perf_counter_ns() - start) / 1000)
        return round(statistics.median(samples), 1)

    return {
        "message_chars": round(statistics.mean(len(m) for m in ACK_MESSAGES)),
        "no_pii_median_us": round(statistics.median(median_us(m) for m in ACK_MESSAGES), 1),
        "with_pii_median_us": median_us(ACK_WITH_PII),
    }


# --- Main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per", type=int, default=150, help="sentences per kind and locale")
    parser.add_argument("--out", default=str(ROOT / "results-pii.json"))
    args = parser.parse_args(argv)

    corpus = build_corpus(args.per)
    default = Detector()
    on_by_default = [k for k in Kind if default.enabled(k)]
    kinds = score(corpus, default, on_by_default)
    address = score(corpus, Detector(RedactionPolicy(address=True)), [Kind.ADDRESS])
    bare = score(bare_phone_corpus(args.per), default, [Kind.PHONE])[Kind.PHONE.value]
    secrets = secrets_recall(random.Random(SEED + 2))
    cost = ack_cost(default)

    groups = Counter(s.group for s in corpus)
    print(f"corpus: {len(corpus)} sentences ({dict(groups)}), seed {SEED}")
    print(f"{'kind':<12} {'labels':>6} {'found':>6} {'recall':>7} {'precision':>9}  target")
    failed = False
    rows = [(k, kinds[k.value], True) for k in on_by_default]
    rows.append((Kind.ADDRESS, address[Kind.ADDRESS.value], default.enabled(Kind.ADDRESS)))
    for kind, row, targeted in rows:
        ok = row["recall"] >= RECALL_TARGET and row["precision"] >= PRECISION_TARGET
        failed |= targeted and not ok
        mark = ("met" if ok else "MISSED") if targeted else "off by default"
        print(
            f"{kind.value:<12} {row['labels']:>6} {row['detections']:>6} {row['recall']:>7.4f} "
            f"{row['precision']:>9.4f}  {mark}"
        )
    print(f"phone, bare digits and no cue word (not targeted): recall {bare['recall']:.4f}")
    print(f"secrets (bot/redact.py): recall {secrets['recall']:.4f}")
    failed |= secrets["recall"] < 1.0
    print(
        f"mask() on a ~{cost['message_chars']}-char message: median {cost['no_pii_median_us']} µs "
        f"without personal data, {cost['with_pii_median_us']} µs with four pieces"
    )
    for kind, row, _ in rows:
        for example in row["missed_examples"][:2]:
            print(f"  missed {kind.value}: {example!r}")
        for example in row["false_positive_examples"][:2]:
            print(f"  false {kind.value}: {example}")

    result = {
        "seed": SEED,
        "per": args.per,
        "corpus": dict(groups),
        "targets": {"recall": RECALL_TARGET, "precision": PRECISION_TARGET},
        "kinds": kinds,
        "address": address[Kind.ADDRESS.value],
        "phone_bare_digits_no_cue": bare,
        "secrets": secrets,
        "ack_path": cost,
        "versions": {
            "python": platform.python_version(),
            "phonenumbers": phonenumbers.__version__,
            "faker": FAKER_VERSION,
        },
        "machine": platform.platform(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
