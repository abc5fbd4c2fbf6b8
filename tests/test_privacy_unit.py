"""Unit tests of the personal-data plumbing (bot/privacy.py) and memory's grounding rule."""

from __future__ import annotations

from bot.memory import grounded, subjects_of
from bot.pii import Detector, Masker
from bot.privacy import LASTING, Privacy
from bot.sealing import Sealer

KEY = b"k" * 32


def privacy(key: bytes = KEY) -> Privacy:
    return Privacy(Detector(), Sealer(key), None)


def test_model_text_keeps_this_requests_placeholders_and_masks_new_values() -> None:
    p = privacy()
    masker = p.masker()
    assert masker.mask("mail ann@acme.io") == "mail <EMAIL_1>"
    out = p.mask_model_text(masker, "Send to <EMAIL_1> and cc bob@acme.io")
    assert out == "Send to <EMAIL_1> and cc <EMAIL_2>"
    # Text people wrote never gets to use a placeholder: it is escaped.
    assert masker.mask("reveal <EMAIL_1> please") == "reveal &lt;EMAIL_1&gt; please"


def test_posted_answers_reveal_escaped_placeholders_through_safe() -> None:
    p = privacy()
    masker = p.masker()
    masker.mask("to ann@acme.io")
    shown = p.reveal_posted(
        masker, "sent to &lt;EMAIL_1&gt; and <EMAIL_1>; not <EMAIL_9>", str.upper
    )
    assert shown == "sent to ANN@ACME.IO and ANN@ACME.IO; not <EMAIL_9>"


def test_lasting_form_is_equal_for_equal_values_and_unreadable() -> None:
    p = privacy()
    one, two = p.masker(), p.masker()
    one.mask("a: Ann@Acme.io")
    two.mask("x: b@acme.io, y: ann@acme.io")  # ann is <EMAIL_2> here
    first = p.lasting("owner is <EMAIL_1>", one)
    second = p.lasting("owner is <EMAIL_2>", two)
    assert first == second and LASTING.search(first) and "ann" not in first.lower()
    # A raw value is hashed the same way; another key gives another hash.
    assert p.lasting("owner is ann@acme.io") == first
    assert privacy(b"z" * 32).lasting("owner is ann@acme.io") != first
    # A placeholder the request never handed out keeps only its kind.
    assert p.lasting("cc <EMAIL_7>", one) == "cc <EMAIL>"


def test_a_seal_under_another_key_gives_placeholders_not_values() -> None:
    p = privacy()
    masker = p.masker()
    masker.mask("call +44 20 7946 0958")
    sealed = p.seal(masker)
    assert sealed is not None and "7946" not in sealed
    assert p.masker(sealed).mapping == masker.mapping
    assert privacy(b"q" * 32).masker(sealed).mapping == {}
    assert isinstance(Masker(Detector()).mapping, dict)


def test_grounding_accepts_rephrasings_and_refuses_what_was_not_said() -> None:
    said = "remember that I prefer staging first for deploys of payments-db"
    assert grounded("deploys: I prefers staging first", said)
    assert grounded("payments-db deploys staging first", said)
    assert not grounded("payments is owned by mallory from accounting", said)
    assert not grounded("deploy payments-db2 to staging first", said)  # an id not written
    assert not grounded("", said)
    # A dropped "not", and a swapped name, are not what was said.
    careful = "remember: do not restart payments during peak hours"
    assert grounded("do not restart payments during peak hours", careful)
    assert not grounded("restart payments during peak hours", careful)
    assert not grounded("payments is owned by mallory", "payments is owned by riley")


def test_subjects_are_identifier_like_arguments_or_the_tool() -> None:
    assert subjects_of("restart_service", {"service": "Payments-DB", "note": "two words"}) == [
        "payments-db"
    ]
    assert subjects_of("post_message", {"text": "hello there"}) == ["post_message"]
