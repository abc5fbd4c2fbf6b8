"""Personal data (bot/pii.py): found, replaced by stable placeholders, given back, sealed.

Plus the `[redaction]` and `[memory]` policy sections and the data key setting.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError
from bot.pii import PLACEHOLDER, Detector, Kind, Masker
from bot.policy import parse_policy
from bot.policy_sections import MemoryPolicy, RedactionPolicy
from bot.sealing import Sealer, SealError
from bot.settings import Settings, insecure_dev_data_key, load_settings
from tests.conftest import examples, policy_data

DETECTOR = Detector()


def kinds_and_values(text: str, detector: Detector = DETECTOR) -> list[tuple[Kind, str]]:
    return [(found.kind, found.value) for found in detector.find(text)]


# --- Each kind, in several formats and locales ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("send the report to ann.lee@example.com please", "ann.lee@example.com"),
        ("cc Ann.Lee+Alerts@Mail.Example.CO.UK on it", "Ann.Lee+Alerts@Mail.Example.CO.UK"),
        ("reply-to: o'brien_2@eu.corp.example.net.", "o'brien_2@eu.corp.example.net"),
        ("schick es an jürgen.müller@beispiel.de", "jürgen.müller@beispiel.de"),
        ("(ops@example.org)", "ops@example.org"),
        ("mail dad1234@example.com", "dad1234@example.com"),  # hex-only: not a git SHA
    ],
)
def test_emails(text: str, value: str) -> None:
    assert kinds_and_values(text) == [(Kind.EMAIL, value)]


@pytest.mark.parametrize(
    "text",
    [
        "git@github.com:acme/warden.git",
        "install pkg@1.2.3 first",
        "@here the deploy is done",
        "<@U012ABCDEF> please look",
        "image@sha256:abc123",
        "user@localhost",
    ],
)
def test_not_emails(text: str) -> None:
    assert DETECTOR.find(text) == []


@pytest.mark.parametrize(
    ("text", "value", "normal"),
    [
        ("call me on +1 (201) 555-0123 later", "+1 (201) 555-0123", "+12015550123"),
        ("my number is 201.555.0123", "201.555.0123", "+12015550123"),
        ("ring 0121 234 5678 tomorrow", "0121 234 5678", "+441212345678"),
        ("mobile: +44 7400 123456", "+44 7400 123456", "+447400123456"),
        ("ruf mich unter 030 123456 an", "030 123456", "+4930123456"),
        ("Handy +49 1512 3456789", "+49 1512 3456789", "+4915123456789"),
        ("appelle-moi au +33 6 12 34 56 78", "+33 6 12 34 56 78", "+33612345678"),
        ("bel me op +31 6 12345678", "+31 6 12345678", "+31612345678"),
        ("llámame al +34 612 34 56 78", "+34 612 34 56 78", "+34612345678"),
        ("chiamami al +39 312 345 6789", "+39 312 345 6789", "+393123456789"),
        ("tel. +1-201-555-0123 x42", "+1-201-555-0123 x42", "+12015550123x42"),
        ("call 0044 121 234 5678", "0044 121 234 5678", "+441212345678"),
        ("my number is 2015550123", "2015550123", "+12015550123"),  # bare, but cued
    ],
)
def test_phone_numbers(text: str, value: str, normal: str) -> None:
    [found] = DETECTOR.find(text)
    assert (found.kind, found.value, found.normal) == (Kind.PHONE, value, normal)


@pytest.mark.parametrize(
    "text",
    [
        "order 2015550123 shipped",  # bare digits with no word saying it's a phone
        "epoch 1700000000",
        "order number 2015550123",
        "Chrome 122.0.6261.94 crashed",
        "OID 1.3.6.1.4.1.2021",
        "part 383-643-8480-40 is back in stock",
        "49 895 353 rows scanned",
        "lat 51.507351, lon -0.127758",
        "the 10:30 deploy, 2024-05-14 at 14:00",
    ],
)
def test_not_phone_numbers(text: str) -> None:
    assert DETECTOR.find(text) == []


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("charge card 4111 1111 1111 1111 please", "4111111111111111"),
        ("paid with 5555-5555-5555-4444", "5555555555554444"),
        ("amex 3782 822463 10005 declined", "378282246310005"),
        ("refund 6011111111111117", "6011111111111117"),
        ("maestro card 6759 6498 2648", "675964982648"),
        ("debit 6759-6498-2648 declined", "675964982648"),  # grouped like a card
    ],
)
def test_cards(text: str, normal: str) -> None:
    [found] = DETECTOR.find(text)
    assert (found.kind, found.normal) == (Kind.CARD, normal)


@pytest.mark.parametrize(
    "text",
    [
        "charge card 4111 1111 1111 1112 please",  # Luhn fails
        "refund 6011111111111118",  # Luhn fails
        "account 675964982648",  # 12 digits, no card word
        "aws 675964982648 is prod",  # the same, no word at all
        "EAN 4006381333931 is out of stock",
        "9400 1000 0000 0000 0000 00 is the tracking id",
    ],
)
def test_not_cards(text: str) -> None:
    assert [f for f in DETECTOR.find(text) if f.kind is Kind.CARD] == []


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX", "DE89370400440532013000"),
        ("wire it to GB82WEST12345698765432 today", "GB82WEST12345698765432"),
        ("virement sur FR14 2004 1010 0505 0001 3M02 606", "FR1420041010050500013M02606"),
        ("rekening nl91 abna 0417 1643 00", "NL91ABNA0417164300"),
        ("bonifico su IT60X0542811101000000123456", "IT60X0542811101000000123456"),
        ("ES91 2100 0418 4502 0005 1332", "ES9121000418450200051332"),
        ("IBAN DE89-3704-0044-0532-0130-00", "DE89370400440532013000"),
    ],
)
def test_ibans(text: str, normal: str) -> None:
    [found] = DETECTOR.find(text)
    assert (found.kind, found.normal) == (Kind.IBAN, normal)


@pytest.mark.parametrize(
    "text",
    ["GB82WEST12345698765433", "DE89 3704 0044 0532 0130 01", "XX89370400440532013000"],
)
def test_ibans_failing_mod_97_are_not_found(text: str) -> None:
    assert DETECTOR.find(f"IBAN {text}") == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("requests come from 203.0.113.7", "203.0.113.7"),
        ("ssh 10.1.2.3:22", "10.1.2.3"),
        ("v6 2001:db8::8a2e:370:7334 is blocked", "2001:db8::8a2e:370:7334"),
        ("curl http://[fe80::1ff:fe23:4567:890a]:8080/", "fe80::1ff:fe23:4567:890a"),
        ("full 2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:0db8:0000:0000:0000:ff00:0042:8329"),
        ("mapped ::ffff:192.0.2.128 too", "::ffff:192.0.2.128"),
    ],
)
def test_ip_addresses(text: str, value: str) -> None:
    assert kinds_and_values(text) == [(Kind.IP, value)]


@pytest.mark.parametrize(
    "text",
    [
        "v1.2.3.4 released",
        "version 2.0.0.1",
        "999.1.1.1",
        "localhost is 127.0.0.1 and ::1",
        "12:30:45",
        "MAC 00:1A:2B:3C:4D:5E",
        "std::vector and crate::de",
    ],
)
def test_not_ip_addresses(text: str) -> None:
    assert DETECTOR.find(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "SSN 536-90-4399",
        "my social security number is 536904399",
        "NI number QQ 12 34 56 C".replace("QQ", "AB"),
        "NINO JG103759A",
        "mijn BSN is 111222333",
        "BSN: 1112.22.333",
        "NIR 1 85 05 78 006 084 91",
        "DNI 12345678Z",
        "NIE X1234567L",
        "codice fiscale RSSMRA85T10A562S",
        "Steuer-ID 65929970489",
        "Steuer-IdNr. 86 095 742 719",
    ],
)
def test_national_ids(text: str) -> None:
    assert [f.kind for f in DETECTOR.find(text)] == [Kind.NATIONAL_ID]


@pytest.mark.parametrize(
    "text",
    [
        "SSN 000-12-3456",  # area 000 is never issued
        "SSN 666-12-3456",
        "order 111222333 shipped",  # a valid BSN, but nothing says it is one
        "65929970489 rows",  # a valid Steuer-ID, unlabelled
        "NINO GB123456A",  # GB is not an allocated prefix
        "DNI 12345678A",  # wrong check letter
        "codice fiscale RSSMRA85T10A562X",  # wrong check letter
        "NIR 1 85 05 78 006 084 92",  # wrong key
        "BSN 111222334",  # fails the 11-proof
    ],
)
def test_national_ids_failing_their_checks_are_not_found(text: str) -> None:
    assert DETECTOR.find(text) == []


def test_addresses_are_off_by_default_and_found_when_on() -> None:
    text = "ship it to 10 Downing Street or Musterstraße 12"
    assert DETECTOR.find(text) == []
    on = Detector(RedactionPolicy(address=True))
    assert [f.value for f in on.find(text)] == ["10 Downing Street", "Musterstraße 12"]


# --- Slack markup is never touched -----------------------------------------------------------

SLACK_PIECES = st.one_of(
    st.from_regex(r"<@[UW][A-Z0-9]{8,10}>", fullmatch=True),
    st.from_regex(r"<#C[A-Z0-9]{8,10}\|[a-z0-9_-]{1,20}>", fullmatch=True),
    st.sampled_from(["<!here>", "<!channel>", "<!everyone>", "<!subteam^S0123ABCD|@oncall>"]),
    st.from_regex(r"<https://[a-z]{1,10}\.example/[a-z0-9/]{0,20}\|[a-z ]{1,12}>", fullmatch=True),
    st.from_regex(r"[UWCGD][A-Z0-9]{8,10}", fullmatch=True),
    st.from_regex(r"1[67]\d{8}\.\d{6}", fullmatch=True),  # Slack ts
    st.from_regex(r"p1[67]\d{14}", fullmatch=True),  # permalink ts
    st.uuids().map(str),
    st.from_regex(r"[0-9a-f]{40}", fullmatch=True).filter(lambda s: not s.isdigit()),
    st.from_regex(r"[0-9a-f]{7}", fullmatch=True).filter(lambda s: not s.isdigit()),
    st.from_regex(r"v?\d{1,2}\.\d{1,2}\.\d{1,3}", fullmatch=True),
    st.from_regex(r"\d{1,3}(h|m|s|ms|d)", fullmatch=True),
    st.dates().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(timespec="seconds") + "Z"),
    st.from_regex(r"(INC|JIRA|OPS|SEC)-\d{1,6}", fullmatch=True),
    st.from_regex(r"#\d{1,6}", fullmatch=True),
)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(SLACK_PIECES, min_size=1, max_size=8), st.sampled_from([" ", ", ", " and ", "\n"]))
def test_masking_slack_markup_ids_and_timestamps_changes_nothing(
    pieces: list[str], separator: str
) -> None:
    text = separator.join(pieces)
    masker = Masker(DETECTOR)
    assert masker.mask(text) == text
    assert masker.mapping == {}


def test_mailto_and_tel_links_become_one_placeholder() -> None:
    masker = Masker(DETECTOR)
    text = "mail <mailto:Ann@Example.com|Ann@Example.com> or <tel:+15551234567|+1 555 123 4567>"
    assert masker.mask(text) == "mail <EMAIL_1> or <PHONE_1>"
    assert masker.mapping == {"<EMAIL_1>": "Ann@Example.com", "<PHONE_1>": "+15551234567"}
    # the same address written plainly later is the same placeholder
    assert masker.mask("ann@example.com again") == "<EMAIL_1> again"


def test_a_link_holding_personal_data_is_written_out_without_its_brackets() -> None:
    masker = Masker(DETECTOR)
    masked = masker.mask("see <http://10.1.2.3:9090/graph|grafana> and <https://x.example/a|a>")
    assert masked == "see grafana (http://<IP_1>:9090/graph) and <https://x.example/a|a>"


# --- Placeholders --------------------------------------------------------------------------


def test_placeholders_are_stable_and_numbering_continues_across_texts() -> None:
    masker = Masker(DETECTOR)
    first = masker.mask("mail ann@example.com, bob@example.com and ANN@EXAMPLE.COM")
    assert first == "mail <EMAIL_1>, <EMAIL_2> and <EMAIL_1>"
    second = masker.mask("call +1 201-555-0123; bob@example.com owns (201) 555-0123, not cy@x.io")
    assert second == "call <PHONE_1>; <EMAIL_2> owns <PHONE_1>, not <EMAIL_3>"
    assert masker.mapping == {
        "<EMAIL_1>": "ann@example.com",
        "<EMAIL_2>": "bob@example.com",
        "<PHONE_1>": "+1 201-555-0123",
        "<EMAIL_3>": "cy@x.io",
    }
    assert PLACEHOLDER.fullmatch("<NATIONAL_ID_12>") is not None


def test_known_mapping_continues_numbering_and_reuses_placeholders() -> None:
    masker = Masker(DETECTOR, known={"<EMAIL_3>": "ann@example.com", "<IP_1>": "10.0.0.9"})
    assert masker.mask("ANN@example.com from 10.0.0.9 and bob@example.com") == (
        "<EMAIL_3> from <IP_1> and <EMAIL_4>"
    )
    with pytest.raises(ValueError, match="not a placeholder"):
        Masker(DETECTOR, known={"EMAIL_1": "x@example.com"})


PII_VALUES = st.sampled_from(
    [
        "ann.lee@example.com",
        "+1 (201) 555-0123",
        "4111 1111 1111 1111",
        "GB82WEST12345698765432",
        "203.0.113.7",
        "2001:db8::1",
        "536-90-4399",
        "RSSMRA85T10A562S",
    ]
)
FILLER = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>&"),
    max_size=30,
)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(FILLER, PII_VALUES), max_size=5), FILLER)
def test_reveal_undoes_mask(parts: list[tuple[str, str]], tail: str) -> None:
    # Values stand apart from the words around them, as in chat ("…, <value>, …").
    text = "".join(f"{filler}, {value}, " for filler, value in parts) + tail
    masker = Masker(DETECTOR)
    masked = masker.mask(text)
    for _, value in parts:
        assert value not in masked
    assert masker.reveal(masked) == text


def test_literal_placeholders_in_input_can_never_be_revealed_into_data() -> None:
    masker = Masker(DETECTOR)
    masked = masker.mask("ann@example.com; a tool printed <EMAIL_1> and <EMAIL_2>")
    assert masked == "<EMAIL_1>; a tool printed &lt;EMAIL_1&gt; and &lt;EMAIL_2&gt;"
    assert masker.reveal(masked).count("ann@example.com") == 1


def test_reveal_leaves_unknown_placeholders_and_reveal_value_walks_arguments() -> None:
    masker = Masker(DETECTOR)
    masker.mask("ann@example.com on +1 201-555-0123")
    assert masker.reveal("<EMAIL_1> <EMAIL_9> <PHONE_1>") == (
        "ann@example.com <EMAIL_9> +1 201-555-0123"
    )
    args: dict[str, Any] = {
        "to": "<EMAIL_1>",
        "<EMAIL_1>": "keys are names, kept",
        "cc": ["<EMAIL_1>", {"phone": "<PHONE_1>", "n": 3, "ok": True, "none": None}],
        "pair": ("<PHONE_1>", 1.5),
    }
    assert masker.reveal_value(args) == {
        "to": "ann@example.com",
        "<EMAIL_1>": "keys are names, kept",
        "cc": ["ann@example.com", {"phone": "+1 201-555-0123", "n": 3, "ok": True, "none": None}],
        "pair": ("+1 201-555-0123", 1.5),
    }


# --- Configuration: allowlist, kinds off, regions ---------------------------------------------


def test_allowlist_domains_networks_and_exact_values() -> None:
    detector = Detector(
        RedactionPolicy(allow=["@example.com", "10.0.0.0/8", "fd00::/8", "+1 201 555 0123"])
    )
    text = (
        "ann@example.com, bo@eu.example.com, cy@example.com.evil.io, 10.2.3.4, 11.2.3.4, "
        "fd00::1, (201) 555-0123, +1 201 555 0199"
    )
    assert kinds_and_values(text, detector) == [
        (Kind.EMAIL, "cy@example.com.evil.io"),
        (Kind.IP, "11.2.3.4"),
        (Kind.PHONE, "+1 201 555 0199"),
    ]


def test_an_allowed_mailto_link_stays_as_it_is() -> None:
    masker = Masker(Detector(RedactionPolicy(allow=["@example.com"])))
    text = "mail <mailto:ann@example.com|ann@example.com>"
    assert masker.mask(text) == text


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("email", "ann@example.com"),
        ("phone", "+1 201-555-0123"),
        ("card", "4111 1111 1111 1111"),
        ("iban", "GB82WEST12345698765432"),
        ("ip", "203.0.113.7"),
        ("national_id", "SSN 536-90-4399"),
    ],
)
def test_a_kind_switched_off_is_left_alone(kind: str, text: str) -> None:
    assert DETECTOR.find(text) != []
    off = Detector(RedactionPolicy.model_validate({kind: False}))
    assert off.find(text) == []
    assert not off.enabled(Kind(kind.upper()))


def test_phone_regions_decide_national_formats_but_plus_numbers_always_count() -> None:
    only_gb = Detector(RedactionPolicy(phone_regions=["GB"]))
    assert kinds_and_values("call 0121 234 5678", only_gb) == [(Kind.PHONE, "0121 234 5678")]
    assert only_gb.find("call 030 123456") == []  # German national format
    assert [f.normal for f in only_gb.find("call +49 30 123456")] == ["+4930123456"]
    none = Detector(RedactionPolicy(phone_regions=[]))
    assert none.find("call 0121 234 5678") == []
    assert [f.normal for f in none.find("call +44 121 234 5678")] == ["+441212345678"]


# --- Sealing and digests ------------------------------------------------------------------


def test_sealer_round_trip_and_a_wrong_key_is_a_seal_error() -> None:
    key = b"k" * 32
    mapping = {"<EMAIL_1>": "ann@example.com", "<PHONE_1>": "+1 201-555-0123"}
    token = Sealer(key).seal(mapping)
    assert "ann" not in token
    assert Sealer(key).open(token) == mapping
    with pytest.raises(SealError, match="another data key"):
        Sealer(b"x" * 32).open(token)
    with pytest.raises(SealError):
        Sealer(key).open(token[:-4] + "AAAA")
    with pytest.raises(SealError):
        Sealer(key).open("not a token ü")
    assert Sealer(key).open(token, ttl=timedelta(minutes=5)) == mapping


def test_digest_equal_for_equal_normal_values_and_different_under_another_key() -> None:
    sealer, other = Sealer(b"k" * 32), Sealer(b"x" * 32)
    a = DETECTOR.find("(201) 555-0123")[0]
    b = DETECTOR.find("+1 201.555.0123")[0]
    assert a.normal == b.normal
    assert sealer.digest(a.kind, a.normal) == sealer.digest(b.kind, b.normal)
    assert len(sealer.digest(a.kind, a.normal)) == 32
    assert sealer.digest(a.kind, a.normal) != other.digest(a.kind, a.normal)
    assert sealer.digest(Kind.EMAIL, "x") != sealer.digest(Kind.IBAN, "x")
    assert sealer.digest(Kind.EMAIL, DETECTOR.normalise(Kind.EMAIL, "Ann@Example.com")) == (
        sealer.digest(Kind.EMAIL, "ann@example.com")
    )


def test_data_key_from_setting_signing_secret_or_insecure_dev_constant() -> None:
    explicit = load_settings(WARDEN_DATA_KEY="d" * 32, SLACK_SIGNING_SECRET="s" * 32)
    signing = load_settings(SLACK_SIGNING_SECRET="s" * 32)
    signing_again = Settings(SLACK_SIGNING_SECRET="s" * 32)
    dev = Settings()
    assert len(explicit.data_key()) == 32
    assert explicit.data_key() != signing.data_key()
    assert signing.data_key() == signing_again.data_key()  # every replica derives the same key
    assert signing.data_key() != load_settings(SLACK_SIGNING_SECRET="t" * 32).data_key()
    if dev.slack_signing_secret is None and dev.warden_data_key is None:
        assert dev.data_key() == insecure_dev_data_key()
    with pytest.raises(ConfigError, match="WARDEN_DATA_KEY: must be at least 32 characters"):
        load_settings(WARDEN_DATA_KEY="short")
    assert "d" * 32 not in repr(explicit)


# --- Policy: [redaction] and [memory] -----------------------------------------------------------


def test_redaction_and_memory_defaults(tmp_path: Path) -> None:
    policy = parse_policy(policy_data(tmp_path))
    redaction = policy.redaction
    assert (redaction.email, redaction.phone, redaction.card, redaction.iban) == (True,) * 4
    assert (redaction.ip, redaction.national_id, redaction.address) == (True, True, False)
    assert redaction.allow == []
    assert redaction.phone_regions == ["US", "GB", "DE", "FR", "NL", "ES", "IT"]
    memory = policy.memory
    assert (memory.enabled, memory.max_facts, memory.budget_chars) == (True, 8, 2000)
    assert memory.expiry.of("profile") == timedelta(days=365)
    assert memory.expiry.of("preference") == timedelta(days=180)
    assert memory.expiry.of("decision") == timedelta(days=90)
    assert memory.expiry.of("task") == timedelta(days=30)
    with pytest.raises(KeyError):
        memory.expiry.of("gossip")
    assert MemoryPolicy() == memory


def test_redaction_and_memory_sections_parse(tmp_path: Path) -> None:
    data = policy_data(tmp_path)
    data["redaction"] = {
        "address": True,
        "ip": False,
        "allow": ["@example.com", "10.0.0.0/8", "ops@vendor.io"],
        "phone_regions": ["gb", "IE"],
    }
    data["memory"] = {
        "enabled": False,
        "max_facts": 3,
        "budget_chars": 500,
        "expiry": {"task": "12h", "decision": "1d12h"},
    }
    policy = parse_policy(data)
    assert policy.redaction.address and not policy.redaction.ip
    assert policy.redaction.phone_regions == ["GB", "IE"]
    assert policy.memory.expiry.task == timedelta(hours=12)
    assert policy.memory.expiry.decision == timedelta(days=1, hours=12)
    assert policy.memory.expiry.profile == timedelta(days=365)
    assert policy.version != parse_policy(policy_data(tmp_path)).version


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("redaction", {"emails": True}, "redaction.emails: unknown key"),
        ("redaction", {"email": "sometimes"}, "redaction.email:"),
        ("redaction", {"allow": ["@", "x"]}, "redaction.allow[0]: '@' is not an email domain"),
        ("redaction", {"allow": ["ok", " "]}, "redaction.allow[1]: an allowed value must not"),
        ("redaction", {"allow": ["10.0.0.1/8"]}, "redaction.allow[0]: '10.0.0.1/8' is not an IP"),
        ("redaction", {"phone_regions": ["GB", "UK"]}, "redaction.phone_regions[1]: 'UK' is not"),
        ("memory", {"max_fact": 3}, "memory.max_fact: unknown key"),
        ("memory", {"max_facts": 0}, "memory.max_facts:"),
        ("memory", {"budget_chars": -1}, "memory.budget_chars:"),
        ("memory", {"expiry": {"task": "soon"}}, "memory.expiry.task: bad duration"),
        ("memory", {"expiry": {"task": "0d"}}, "memory.expiry.task: bad duration"),
        ("memory", {"expiry": {"task": -5}}, "memory.expiry.task: a duration must be positive"),
        ("memory", {"expiry": {"facts": "1d"}}, "memory.expiry.facts: unknown key"),
    ],
)
def test_bad_redaction_and_memory_keys_name_the_key(
    tmp_path: Path, section: str, values: dict[str, Any], expected: str
) -> None:
    data = copy.deepcopy(policy_data(tmp_path))
    data[section] = values
    with pytest.raises(ConfigError) as info:
        parse_policy(data)
    assert expected in str(info.value)


def test_warden_check_reports_a_bad_memory_expiry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from handlers.cli import main
    from tests.test_policy import _toml

    data = policy_data(tmp_path)
    data["memory"] = {"expiry": {"preference": "half a year"}}
    path = tmp_path / "warden.toml"
    path.write_text(_toml(data))
    assert main(["check", "--config", str(path)]) == 2
    assert "memory.expiry.preference: bad duration" in capsys.readouterr().err
