"""Warden's memory: typed facts, deterministic supersession, retrieval and forgetting (part
of `storage.repo.Store`).

Memory is facts, not transcripts (`storage.models.Fact`). A fact with a slot states one thing
about its subject; `remember` closes the current fact of that slot (`valid_to`,
`superseded_by`) and inserts the new one in one transaction with its audit row, and a partial
unique index on current slotted facts makes two concurrent remembers leave exactly one
current fact (the loser's insert fails and it retries, closing the winner's fact). Nothing
is deleted by supersession: `fact_history` shows every version (a closed fact only leaves
the full-text index, which holds current facts). Expired facts are never deleted by a sweep
either — every query filters on `expires_at` — until `purge_expired_facts` removes those past
a retention. `forget_facts` deletes rows outright, their full-text entries with them (the
SQLite FTS5 index by triggers; the PostgreSQL `tsvector` lives in the row), and audits only
ids and digests. On SQLite the forgotten text must leave the files as well: an FTS5 delete
only adds a tombstone that repeats the deleted terms to a new index segment, so a forget (and
a purge) merges the index into one segment in its own transaction (`'optimize'`, which drops
deleted entries; a contentless table has no `secure-delete` option before SQLite 3.44), and
then `Database.erase_forgotten` empties the write-ahead log (`storage/db.py`).

Retrieval filters first — the asker's visible scopes, the kinds, current (`valid_to IS NULL`,
`expires_at > now`) — then ranks by relevance with a recency and a type prior (see
`search_facts`). User text becomes a query through `query_terms` only: words of letters and
digits, stop words dropped, at most `MAX_QUERY_TERMS`, each quoted (FTS5) or passed as its
own bound parameter (PostgreSQL), so no input can change a query's syntax.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, reduce
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    String,
    bindparam,
    case,
    delete,
    extract,
    func,
    insert,
    literal_column,
    or_,
    update,
)
from sqlalchemy import column as sa_column
from sqlalchemy import select as sa_select
from sqlalchemy import table as sa_table
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from storage import audit
from storage.db import Database
from storage.models import Action, Fact, FactKind, FactScope, FactSource, Request, utcnow

MAX_FACT_CHARS = 2000
"""The longest fact text stored: a fact is a sentence or two, never a transcript."""

MAX_QUERY_CHARS = 2000
"""Only the start of a longer query is read."""

MAX_QUERY_TERMS = 16
"""A query is at most this many distinct words (OR-ed), however long the text."""

MAX_TERM_CHARS = 64
"""Longer "words" (hashes, base64, noise) are dropped from a query."""

TYPE_PRIOR: dict[str, float] = {
    FactKind.DECISION: 1.0,
    FactKind.PREFERENCE: 0.95,
    FactKind.PROFILE: 0.85,
    FactKind.TASK: 0.75,
}
"""How much a kind of fact weighs in a search: decisions and preferences steer what Warden
proposes; profiles describe people; tasks are short-lived notes."""

RECENCY_DAYS = 30.0
"""At this age a fact has lost half of its recency bonus."""

RECENCY_FLOOR = 0.7
"""The recency factor of a very old fact: age reorders close matches, never buries a match."""

REMEMBER_ATTEMPTS = 10
"""A remember that loses a race for its slot retries (each loss means another committed)."""

# PostgreSQL's `english` stop words (tsearch_data/english.stop), dropped from every query on
# both databases: they carry no meaning, and PostgreSQL would drop them anyway.
_ENGLISH_STOP = """
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
she her hers herself it its itself they them their theirs themselves what which who whom
this that these those am is are was were be been being have has had having do does did
doing a an the and but if or because as until while of at by for with about against
between into through during before after above below to from up down in out on off over
under again further then once here there when where why how all any both each few more
most other some such no nor not only own same so than too very s t can will just don
should now
"""
STOPWORDS = frozenset(_ENGLISH_STOP.split())

_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, as FTS5's unicode61 splits text
_SPACES = re.compile(r"\s+")

# The SQLite full-text index (migration 0004): contentless FTS5 over
# (scope_key, subject, slot, text); `fact_fts` is also its hidden table-named column.
_FTS = sa_table("fact_fts", sa_column("rowid", Integer), sa_column("fact_fts"))
_FTS_WEIGHTS = (0.0, 5.0, 2.0, 1.0)  # bm25 weights: scope_key, subject, slot, text
_PG_CONFIG: Any = literal_column("'english'::regconfig")
_PG_SIMPLE: Any = literal_column("'simple'::regconfig")
_PG_TSV: Any = literal_column("fact.tsv")


def normalise_subject(value: str) -> str:
    """A subject as stored and looked up: trimmed, lower-case, single spaces, no NULs, ≤ 64
    characters."""
    return _SPACES.sub(" ", value.replace("\x00", "")).strip().lower()[:64]


def normalise_slot(value: str | None) -> str | None:
    """A slot as stored and looked up (like a subject); empty means no slot."""
    if value is None:
        return None
    return normalise_subject(value) or None


def fact_digest(text: str) -> str:
    """The SHA-256 of a fact's text: what the audit trail keeps instead of the text."""
    return hashlib.sha256(text.encode()).hexdigest()


def query_terms(query: str) -> list[str]:
    """The words of a user's query that a search looks for: lower-case runs of letters and
    digits from its first `MAX_QUERY_CHARS` characters, without stop words, single ASCII
    characters and over-long runs, first occurrences only, at most `MAX_QUERY_TERMS`. No
    character of the result has a meaning in FTS5's or PostgreSQL's query syntax."""
    terms: list[str] = []
    for word in _WORD.findall(query[:MAX_QUERY_CHARS].lower()):
        if word in STOPWORDS or len(word) > MAX_TERM_CHARS or (len(word) == 1 and word.isascii()):
            continue
        if word not in terms:
            terms.append(word)
            if len(terms) == MAX_QUERY_TERMS:
                break
    return terms


def scope_key(scope: str, scope_id: str) -> str:
    """The one token `fact_fts.scope_key` holds for a scope: SQLite's `hex(scope || ':' ||
    scope_id)`, i.e. the hex of its UTF-8 bytes (the tokenizer folds case)."""
    return f"{scope}:{scope_id}".encode().hex()


def pg_scope_lexeme(scope: str, scope_id: str) -> str:
    """The lexeme `fact.tsv` holds for a scope: `'scope' || md5(scope || ':' || scope_id)`."""
    return "scope" + hashlib.md5(f"{scope}:{scope_id}".encode(), usedforsecurity=False).hexdigest()


def _merge_fts(db: Database, s: Any) -> None:
    """Merge the SQLite full-text index into one segment, dropping deleted entries and the
    tombstones that name their terms (`secure_delete` zeroes the old segments' pages). Its
    cost grows with the index, so only after a forget or a purge."""
    if db.is_sqlite:
        s.execute(insert(_FTS).values({_FTS.c.fact_fts: "optimize"}))


def fts_match(terms: Sequence[str], scopes: Sequence[tuple[str, str]]) -> str:
    """The FTS5 MATCH expression for `terms` (from `query_terms`) in `scopes`: any term in
    subject, slot or text, and one of the scopes' keys. Every term is a quoted string."""
    keys = " OR ".join(f'"{scope_key(scope, scope_id)}"' for scope, scope_id in scopes)
    words = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
    return f"{{scope_key}} : ({keys}) AND {{subject slot text}} : ({words})"


@dataclass(kw_only=True, frozen=True)
class FactHit:
    """A fact found by `search_facts`, with its score (higher is better; comparable within
    one search, not across databases)."""

    id: int
    kind: str
    scope: str
    scope_id: str
    subject: str
    slot: str | None
    text: str
    request_id: str | None
    channel: str
    message_ts: str
    author: str
    action_id: str | None
    source: str
    valid_from: datetime
    valid_to: datetime | None
    expires_at: datetime
    superseded_by: int | None
    digest: str
    created_at: datetime
    score: float

    @classmethod
    def of(cls, fact: Fact, score: float) -> FactHit:
        assert fact.id is not None
        return cls(
            id=fact.id,
            kind=fact.kind,
            scope=fact.scope,
            scope_id=fact.scope_id,
            subject=fact.subject,
            slot=fact.slot,
            text=fact.text,
            request_id=fact.request_id,
            channel=fact.channel,
            message_ts=fact.message_ts,
            author=fact.author,
            action_id=fact.action_id,
            source=fact.source,
            valid_from=fact.valid_from,
            valid_to=fact.valid_to,
            expires_at=fact.expires_at,
            superseded_by=fact.superseded_by,
            digest=fact.digest,
            created_at=fact.created_at,
            score=score,
        )


@dataclass(kw_only=True, frozen=True)
class Remembered:
    """What `remember` stored: the new fact, and the id of the fact it closed (if any)."""

    fact: Fact
    superseded: int | None


def recency(age_days: float) -> float:
    """The recency factor of a fact `age_days` old (1 when new, → `RECENCY_FLOOR`)."""
    age = max(age_days, 0.0)
    return RECENCY_FLOOR + (1 - RECENCY_FLOOR) * RECENCY_DAYS / (RECENCY_DAYS + age)


def prior(kind: str, age_days: float) -> float:
    """A fact's score before relevance: its type prior times its recency factor."""
    return TYPE_PRIOR.get(kind, TYPE_PRIOR[FactKind.TASK]) * recency(age_days)


def _visible(scopes: Sequence[tuple[str, str]]) -> Any:
    """Rows in one of `scopes`, compared as "scope:scope_id": a filter on rows found through
    a more selective index (full text, subject), never a reason for PostgreSQL to walk every
    current fact of the workspace through the scope index."""
    return (col(Fact.scope) + ":" + col(Fact.scope_id)).in_([f"{a}:{b}" for a, b in scopes])


def _current(now: datetime) -> list[Any]:
    return [col(Fact.valid_to).is_(None), col(Fact.expires_at) > now]


def _scopes(scopes: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    # A NUL can never be stored (PostgreSQL refuses it in text), so such a scope matches
    # nothing; dropping it keeps the query valid.
    pairs = ((str(scope), str(scope_id)) for scope, scope_id in scopes)
    return list(dict.fromkeys(p for p in pairs if "\x00" not in p[0] + p[1]))


class MemoryQueries:
    db: Database

    # -- writing ---------------------------------------------------------------------------

    def remember(
        self,
        *,
        kind: str,
        scope: str,
        scope_id: str,
        subject: str,
        slot: str | None,
        text: str,
        author: str,
        source: str,
        expires_at: datetime,
        request_id: str | None = None,
        channel: str = "",
        message_ts: str = "",
        action_id: str | None = None,
        trace_id: str = "",
        now: datetime | None = None,
    ) -> Remembered:
        """Store a fact; if it has a slot, close the current fact of that slot in the same
        transaction (its `valid_to` becomes `now`, its `superseded_by` the new id).

        Written with a `memory.remember` audit row that holds the kind, scope, subject, slot,
        digest and superseded id — never the text. Two remembers racing for one slot both
        succeed, one after the other: the partial unique index refuses the second insert
        while the first's fact is current, and the loser retries, closing it. Raises
        ValueError for an unknown kind, scope or source, a workspace fact with a scope id (or
        another without one), an empty subject, or an empty or over-long text.
        """
        kind, scope, source = FactKind(kind), FactScope(scope), FactSource(source)
        if (scope == FactScope.WORKSPACE) != (scope_id == ""):
            raise ValueError("workspace facts have scope_id '', user and channel facts an id")
        subject, slot, text = (
            normalise_subject(subject),
            normalise_slot(slot),
            text.replace("\x00", "").strip(),
        )
        if not subject:
            raise ValueError("a fact needs a subject")
        if not text or len(text) > MAX_FACT_CHARS:
            raise ValueError(f"a fact's text has 1 to {MAX_FACT_CHARS} characters")
        now = now or utcnow()
        digest = fact_digest(text)
        for attempt in range(REMEMBER_ATTEMPTS):
            try:
                with self.db.write() as s:
                    superseded: int | None = None
                    if slot is not None:
                        superseded = s.execute(
                            update(Fact)
                            .where(
                                col(Fact.scope) == scope,
                                col(Fact.scope_id) == scope_id,
                                col(Fact.subject) == subject,
                                col(Fact.slot) == slot,
                                col(Fact.valid_to).is_(None),
                            )
                            .values(valid_to=now)
                            .returning(col(Fact.id))
                        ).scalar_one_or_none()
                    fact = Fact(
                        kind=kind,
                        scope=scope,
                        scope_id=scope_id,
                        subject=subject,
                        slot=slot,
                        text=text,
                        request_id=request_id,
                        channel=channel,
                        message_ts=message_ts,
                        author=author,
                        action_id=action_id,
                        source=source,
                        valid_from=now,
                        expires_at=expires_at,
                        digest=digest,
                        created_at=now,
                    )
                    s.add(fact)
                    s.flush()
                    if superseded is not None:
                        s.exec(
                            update(Fact)
                            .where(col(Fact.id) == superseded)
                            .values(superseded_by=fact.id)
                        )
                    audit.append(
                        s,
                        actor=author,
                        kind="memory.remember",
                        subject=f"fact:{fact.id}",
                        trace_id=trace_id,
                        after="current",
                        data={
                            "kind": kind.value,
                            "scope": scope.value,
                            "scope_id": scope_id,
                            "subject": subject,
                            "slot": slot,
                            "digest": digest,
                            "superseded": superseded,
                        },
                    )
                    return Remembered(fact=fact, superseded=superseded)
            except IntegrityError:
                if slot is None or attempt == REMEMBER_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def forget_facts(self, ids: Sequence[int], actor: str) -> list[tuple[int, str]]:
        """Delete facts (and, with them, their full-text index entries): a forgotten fact is
        never found again, by search or history. Returns (id, digest) of each fact deleted;
        ids that do not exist are skipped. The `memory.forget` audit row keeps only those
        pairs. A current fact withdrawn this way gives its slot back to the fact it had
        replaced (reopened: the newer statement is taken back, the older one stands again);
        other facts it had superseded stay closed, their `superseded_by` cleared."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        with self.db.write() as s:
            rows = s.execute(
                delete(Fact)
                .where(col(Fact.id).in_(wanted))
                .returning(col(Fact.id), col(Fact.digest), col(Fact.valid_to))
            ).all()
            gone = sorted((int(fact_id), str(digest)) for fact_id, digest, _ in rows)
            if not gone:
                return []
            current = [int(fact_id) for fact_id, _, valid_to in rows if valid_to is None]
            if current:
                s.exec(
                    update(Fact)
                    .where(col(Fact.superseded_by).in_(current))
                    .values(valid_to=None, superseded_by=None)
                )
            s.exec(
                update(Fact)
                .where(col(Fact.superseded_by).in_([i for i, _ in gone]))
                .values(superseded_by=None)
            )
            audit.append(
                s,
                actor=actor,
                kind="memory.forget",
                subject=f"fact:{gone[0][0]}" if len(gone) == 1 else "memory",
                before="remembered",
                after="forgotten",
                data={"facts": [[i, d] for i, d in gone]},
            )
            _merge_fts(self.db, s)
        self.db.erase_forgotten()
        return gone

    def purge_expired_facts(self, before: datetime, actor: str = "warden") -> int:
        """Delete facts that expired, or were superseded, before `before` (the retention
        cutoff); returns how many. Until then expired facts are only filtered out. Audited
        (`memory.purge`, a count) when anything was deleted."""
        with self.db.write() as s:
            ids = [
                int(i)
                for i in s.execute(
                    delete(Fact)
                    .where(or_(col(Fact.expires_at) < before, col(Fact.valid_to) < before))
                    .returning(col(Fact.id))
                ).scalars()
            ]
            if not ids:
                return 0
            s.exec(update(Fact).where(col(Fact.superseded_by).in_(ids)).values(superseded_by=None))
            audit.append(
                s,
                actor=actor,
                kind="memory.purge",
                subject="memory",
                data={"count": len(ids), "before": before.isoformat()},
            )
            _merge_fts(self.db, s)
        self.db.erase_forgotten()
        return len(ids)

    # -- reading ---------------------------------------------------------------------------

    def scrub_remember_call(self, action_id: str, args_json: str) -> bool:
        """Replace the arguments (and rationale) of the `remember` action that stored a
        now-forgotten fact, and the text of the message that asked for it, so the fact is
        nowhere in Warden's rows and never reaches the model again as thread history."""
        with self.db.write() as s:
            request_id = s.execute(
                update(Action)
                .where(col(Action.id) == action_id, col(Action.tool) == "remember")
                .values(args_json=args_json, rationale="(forgotten)")
                .returning(col(Action.request_id))
            ).scalar_one_or_none()
            if request_id is None:
                return False
            s.exec(
                update(Request)
                .where(col(Request.id) == request_id)
                .values(text="(this message held a fact that was forgotten)")
            )
        self.db.erase_forgotten()
        return True

    def fact_ids_in_scope(self, scope: str, scope_id: str) -> list[int]:
        """Every fact of a scope, current or not (what "forget everything about me" means)."""
        with self.db.read() as s:
            return [
                int(i)
                for i in s.exec(
                    select(Fact.id).where(col(Fact.scope) == scope, col(Fact.scope_id) == scope_id)
                ).all()
                if i is not None
            ]

    def fact_by_id(self, fact_id: int) -> Fact | None:
        with self.db.read() as s:
            return s.get(Fact, fact_id)

    def fact_history(self, scope: str, scope_id: str, subject: str, slot: str | None) -> list[Fact]:
        """Every fact stored for one slot (or, with slot None, the subject's slotless facts),
        current or not, oldest first."""
        slot = normalise_slot(slot)
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Fact)
                    .where(
                        col(Fact.subject) == normalise_subject(subject),
                        col(Fact.scope) == scope,
                        col(Fact.scope_id) == scope_id,
                        col(Fact.slot).is_(None) if slot is None else col(Fact.slot) == slot,
                    )
                    .order_by(col(Fact.valid_from), col(Fact.id))
                ).all()
            )

    def search_facts(
        self,
        query: str,
        scopes: Sequence[tuple[str, str]],
        kinds: Sequence[str] | None,
        now: datetime,
        limit: int = 10,
    ) -> list[FactHit]:
        """The current facts visible in `scopes` ((scope, scope_id) pairs) that best answer
        `query`, best first.

        Filters first: scope in `scopes`, kind in `kinds` (None: any), current
        (`valid_to IS NULL` and `expires_at > now`). Only facts matching at least one query
        term are returned, ranked by

            score = relevance × TYPE_PRIOR[kind] × recency
            recency = 0.7 + 0.3 × 30 / (30 + age in days)     (age = now − valid_from)

        where relevance is `−bm25(fact_fts, 0, 5, 2, 1)` on SQLite (subject, slot, text
        weighted 5 : 2 : 1) and `ts_rank(tsv, query)` on PostgreSQL (weights 1.0 / 0.4 / 0.2
        for subject / slot / text, tsvector weights A / B / C; no length normalisation, facts
        are short); TYPE_PRIOR is decision 1.0, preference 0.95, profile 0.85, task 0.75.
        Both relevances add up over the query's words, so a fact matching more of them
        wins; the priors span a factor 1.9 at most, so they reorder close matches and never
        bury a clearly better one. Ties: newer id first. A query
        with no searchable word (empty, stop words, punctuation) returns the most recent
        current facts instead, scored by their priors alone. No input raises.
        """
        scopes = _scopes(scopes)
        limit = max(0, min(int(limit), 500))
        if not scopes or not limit or (kinds is not None and not kinds):
            return []
        terms = query_terms(query)
        if not terms:
            return [
                FactHit.of(f, prior(f.kind, _days(now - f.valid_from)))
                for f in self._recent(scopes, kinds, now, limit)
            ]
        params: dict[str, Any] = {
            "now": now,
            "limit": limit,
            "scopes": [f"{scope}:{scope_id}" for scope, scope_id in scopes],
        }
        if self.db.is_sqlite:
            params["match"] = fts_match(terms, scopes)
        else:
            params.update({f"t{i}": term for i, term in enumerate(terms)})
            params.update({f"k{i}": pg_scope_lexeme(*pair) for i, pair in enumerate(scopes)})
        if kinds is not None:
            params["kinds"] = [str(k) for k in kinds]
        stmt = _search_statement(
            self.db.is_sqlite,
            0 if self.db.is_sqlite else len(terms),
            len(scopes),
            kinds is not None,
        )
        with self.db.read() as s:
            rows = s.connection().execute(stmt, params).all()
        return [FactHit(**{**r._mapping, "score": float(r.score or 0.0)}) for r in rows]

    def facts_for(
        self,
        scopes: Sequence[tuple[str, str]],
        now: datetime,
        query: str | None = None,
        limit: int = 50,
    ) -> list[Fact]:
        """Current facts visible in `scopes` for listing (`/warden memory`): the most recent
        first, or, with a query, those matching it best first (`search_facts`)."""
        if query is not None and query_terms(query):
            hits = self.search_facts(query, scopes, None, now, limit)
            with self.db.read() as s:
                found = {
                    f.id: f
                    for f in s.exec(
                        select(Fact).where(col(Fact.id).in_([h.id for h in hits]))
                    ).all()
                }
            return [found[h.id] for h in hits if h.id in found]
        scopes = _scopes(scopes)
        limit = max(0, min(int(limit), 500))
        if not scopes or not limit:
            return []
        return self._recent(scopes, None, now, limit)

    def decisions_about(
        self,
        subjects: Sequence[str],
        scopes: Sequence[tuple[str, str]],
        now: datetime,
        limit: int = 3,
    ) -> list[Fact]:
        """The most recent current decisions visible in `scopes` whose subject is one of
        `subjects` (exact, after `normalise_subject`): what a card shows as "Previously"."""
        wanted = sorted({normalise_subject(x) for x in subjects} - {""})
        scopes = _scopes(scopes)
        limit = max(0, min(int(limit), 500))
        if not wanted or not scopes or not limit:
            return []
        with self.db.read() as s:
            return list(
                s.exec(
                    select(Fact)
                    .where(
                        col(Fact.subject).in_(wanted),
                        col(Fact.kind) == FactKind.DECISION,
                        _visible(scopes),
                        *_current(now),
                    )
                    .order_by(col(Fact.valid_from).desc(), col(Fact.id).desc())
                    .limit(limit)
                ).all()
            )

    def _recent(
        self,
        scopes: Sequence[tuple[str, str]],
        kinds: Sequence[str] | None,
        now: datetime,
        limit: int,
    ) -> list[Fact]:
        """The `limit` newest current facts over `scopes`: one indexed, newest-first query
        per scope (each stops after `limit` rows), merged."""
        found: list[Fact] = []
        with self.db.read() as s:
            for scope, scope_id in scopes:
                stmt = (
                    select(Fact)
                    .where(col(Fact.scope) == scope, col(Fact.scope_id) == scope_id, *_current(now))
                    .order_by(col(Fact.valid_from).desc(), col(Fact.id).desc())
                    .limit(limit)
                )
                if kinds is not None:
                    stmt = stmt.where(col(Fact.kind).in_(list(kinds)))
                found.extend(s.exec(stmt).all())
        found.sort(key=lambda f: (f.valid_from, f.id or 0), reverse=True)
        return found[:limit]


@lru_cache(maxsize=512)
def _search_statement(sqlite: bool, terms: int, scopes: int, kinds: bool) -> Any:
    """The search's statement for one shape (dialect, number of terms and scopes, with or
    without a kind filter), built once. Every value is a bound parameter: `now`, `limit`,
    `scopes` ("scope:scope_id" strings), `kinds`, and the full-text query — `match` (SQLite)
    or `t0`… and `k0`… (PostgreSQL: terms, and the scopes' lexemes).

    The full-text index narrows the search to the visible scopes (their keys are in the
    index) and the current facts; the scopes are checked again on the rows themselves,
    exactly. That check compares "scope:scope_id" rather than the two columns so that
    PostgreSQL never prefers the scope b-tree — which would visit every current fact of the
    workspace — to the GIN index."""
    t = Fact.__table__  # type: ignore[attr-defined]
    when = bindparam("now", type_=t.c.valid_from.type)
    if sqlite:
        relevance: Any = -func.bm25(_FTS.c.fact_fts, *_FTS_WEIGHTS)
        age: Any = func.max(func.julianday(when) - func.julianday(t.c.valid_from), 0.0)
        source: Any = _FTS.join(t, t.c.id == _FTS.c.rowid)
        match: Any = _FTS.c.fact_fts.op("MATCH")(bindparam("match", type_=String))
    else:

        def any_of(config: Any, name: str, count: int) -> Any:
            parts: list[Any] = [
                func.plainto_tsquery(config, bindparam(f"{name}{i}", type_=String))
                for i in range(count)
            ]
            return reduce(lambda a, b: a.op("||")(b), parts)

        words = any_of(_PG_CONFIG, "t", terms)
        relevance = func.ts_rank(_PG_TSV, words)
        age = func.greatest(extract("epoch", when - t.c.valid_from) / 86400.0, 0.0)
        source = t
        match = _PG_TSV.op("@@")(any_of(_PG_SIMPLE, "k", scopes).op("&&")(words))
    type_prior = case(TYPE_PRIOR, value=t.c.kind, else_=TYPE_PRIOR[FactKind.TASK])
    recency_ = RECENCY_FLOOR + (1 - RECENCY_FLOOR) * RECENCY_DAYS / (RECENCY_DAYS + age)
    score = (relevance * type_prior * recency_).cast(Float).label("score")
    visible = (t.c.scope + ":" + t.c.scope_id).in_(bindparam("scopes", expanding=True))
    stmt = (
        sa_select(*t.c, score)
        .select_from(source)
        .where(match, t.c.valid_to.is_(None), t.c.expires_at > when, visible)
        .order_by(score.desc(), t.c.id.desc())
        .limit(bindparam("limit", type_=Integer))
    )
    if kinds:
        stmt = stmt.where(t.c.kind.in_(bindparam("kinds", expanding=True)))
    return stmt


def _days(delta: Any) -> float:
    return float(delta.total_seconds()) / 86400.0
