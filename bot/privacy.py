"""Personal data along a request's path: masked on the way in, revealed only where it belongs.

A request's text is masked at intake (`<EMAIL_1>`, `<PHONE_1>`, … by `bot/pii.py`) and its
placeholder → value mapping is sealed (encrypted under the data key) into the request's own
row. Everything Warden stores, audits or sends to the model from then on holds placeholders:
the text, thread history, lookup outputs, the action's arguments, dry-run previews, results.
Values come back in three places only:

- the gate and the tools see real values (validation, risk from arguments, the run itself);
- cards and answers are revealed as they are delivered, into the thread where the values
  were written;
- the Edit modal shows the approver the real values, and what they type is masked again.

Memory keeps neither values nor a request's placeholders (whose numbers mean nothing in
another request): `lasting` writes `<EMAIL#3fa2c1d0>`, the kind and a keyed hash, so equal
values stay equal and nothing can be read back. Once no action of a request can still run
or be undone, the seal is cleared (`Sweeps`), and the values are gone from Warden for good.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from bot.pii import PLACEHOLDER, Detector, Kind, Masker
from bot.sealing import Sealer, SealError
from storage.models import Action
from storage.repo import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
ESCAPED = re.compile(r"&lt;((?:EMAIL|PHONE|CARD|IBAN|IP|NATIONAL_ID|ADDRESS)_[1-9][0-9]{0,5})&gt;")
LASTING = re.compile(r"<(EMAIL|PHONE|CARD|IBAN|IP|NATIONAL_ID|ADDRESS)#([0-9a-f]{8})>")


WITHHELD = "withheld"  # in a sealed mapping: placeholders first seen in tool output


class RequestMasker(Masker):
    """A request's `Masker`, knowing which of its values came from tool output."""

    withheld: set[str]

    def __init__(self, detector: Detector, known: dict[str, str] | None = None) -> None:
        super().__init__(detector, known)
        self.withheld = set()


class Privacy:
    def __init__(self, detector: Detector, sealer: Sealer, store: Store | None) -> None:
        self.detector = detector
        self.sealer = sealer
        self.store = store

    def masker(self, sealed: str | None = None) -> RequestMasker:
        """A request's masker, carrying on from its sealed mapping (if any). A seal that
        cannot be opened (the data key changed) gives an empty one: placeholders then stay
        placeholders, and a call that needs them fails rather than running with holes."""
        known: dict[str, str] = {}
        if sealed:
            try:
                known = self.sealer.open(sealed)
            except SealError as exc:
                log.warning("%s", exc)
        withheld = {p for p in known.pop(WITHHELD, "").split(",") if p}
        masker = RequestMasker(self.detector, known)
        masker.withheld = withheld & set(known)
        return masker

    def for_request(self, request_id: str) -> RequestMasker:
        return self.masker(self.store.request_pii(request_id) if self.store else None)

    def seal(self, masker: Masker) -> str | None:
        mapping = masker.mapping
        withheld: set[str] = getattr(masker, "withheld", set())
        if withheld:
            mapping[WITHHELD] = ",".join(sorted(withheld))
        return self.sealer.seal(mapping) if mapping else None

    @staticmethod
    def mask_output(masker: Masker, text: str) -> str:
        """Tool output masked: values first seen there are withheld from what Warden posts
        in free text (nobody wrote them in the thread); tools and cards still use them."""
        before = set(masker.mapping)
        masked = masker.mask(text)
        if isinstance(masker, RequestMasker):
            masker.withheld |= set(masker.mapping) - before
        return masked

    def masking(self, request_id: str, work: Callable[[Masker], T]) -> T:
        """Run `work` with the request's masker and keep any new placeholders it hands out,
        atomically (see `Store.update_request_pii`): for changes after planning — edits,
        dry runs, outputs, reasons — which may happen at once on one request's actions."""
        if self.store is None:
            return work(self.masker())

        def change(sealed: str | None) -> tuple[T, str | None]:
            masker = self.masker(sealed)
            before = len(masker.mapping)
            result = work(masker)
            return result, self.seal(masker) if len(masker.mapping) > before else sealed

        return self.store.update_request_pii(request_id, change)

    def save(self, request_id: str, masker: Masker, before: int) -> None:
        """Store the mapping again if it grew beyond `before` placeholders."""
        if len(masker.mapping) > before and self.store is not None:
            self.store.set_request_pii(request_id, self.seal(masker))

    def reveal_posted(self, masker: Masker, text: str, safe: Callable[[str], str]) -> str:
        """An answer made safe to post (`Core.safe` writes `<EMAIL_1>` as `&lt;EMAIL_1&gt;`)
        with its placeholders' values back, into the thread they were written in — each
        value made safe too (an address the model wrote is a link like any other)."""
        mapping = masker.mapping
        if not mapping:
            return text

        withheld: set[str] = getattr(masker, "withheld", set())

        def value(name: str, written: str) -> str:
            found = mapping.get(f"<{name}>")
            if found is None or f"<{name}>" in withheld:
                return written
            return safe(found)

        text = PLACEHOLDER.sub(lambda m: value(m.group(0)[1:-1], m.group(0)), text)
        return ESCAPED.sub(lambda m: value(m.group(1), m.group(0)), text)

    def real_args(self, action: Action) -> Any:
        """A stored action's arguments with its request's personal data put back."""
        masker = self.for_request(action.request_id)
        return masker.reveal_value(json.loads(action.args_json))

    def mask_model_text(self, masker: Masker, text: str) -> str:
        """Text the model wrote (a rationale, an answer): it may use this request's
        placeholders, which are kept as they are (`mask` would neutralise them, as it does
        in text people wrote); anything else that looks personal is masked."""
        out: list[str] = []
        pos = 0
        for match in PLACEHOLDER.finditer(text):
            out.append(masker.mask(text[pos : match.start()]))
            out.append(match.group(0))
            pos = match.end()
        out.append(masker.mask(text[pos:]))
        return "".join(out)

    def mask_value(self, masker: Masker, value: Any) -> Any:
        """`mask` applied to every string inside dicts and lists (tool arguments)."""
        if isinstance(value, str):
            return masker.mask(value)
        if isinstance(value, dict):
            return {key: self.mask_value(masker, item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_value(masker, item) for item in value]
        return value

    def digests(self, masker: Masker, text: str) -> dict[str, str]:
        """Keyed hashes of the placeholders used in `text` (for the audit: equal values are
        seen to be equal, and nothing more)."""
        mapping = masker.mapping
        out: dict[str, str] = {}
        for match in PLACEHOLDER.finditer(text):
            value = mapping.get(match.group(0))
            if value is not None:
                kind = Kind(match.group(1))
                out[match.group(0)] = self.sealer.digest(kind, self.detector.normalise(kind, value))
        return out

    def lasting(self, text: str, masker: Masker | None = None) -> str:
        """`text` fit to be kept beyond its request: a request's placeholders (with `masker`)
        and any personal data still in it become `<KIND#hash>`."""
        if masker is not None:
            mapping = masker.mapping

            def swap(match: re.Match[str]) -> str:
                value = mapping.get(match.group(0))
                if value is None:
                    return f"<{match.group(1)}>"
                kind = Kind(match.group(1))
                digest = self.sealer.digest(kind, self.detector.normalise(kind, value))
                return f"<{kind.value}#{digest[:8]}>"

            text = PLACEHOLDER.sub(swap, text)
        found = self.detector.find(text)
        for f in reversed(found):
            digest = self.sealer.digest(f.kind, f.normal)
            text = f"{text[: f.start]}<{f.kind.value}#{digest[:8]}>{text[f.end :]}"
        return text
