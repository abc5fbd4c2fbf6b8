"""Memory is facts: supersession, scopes, retrieval, forgetting, and sealed personal data.

Every test runs on SQLite and PostgreSQL (the `db` fixture). Times are passed explicitly, so
nothing sleeps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text

from storage.db import Database
from storage.memory import MAX_QUERY_TERMS, fact_digest, fts_match, query_terms
from storage.models import Action, ActionStatus, Request, RequestStatus, VerifyStatus, utcnow
from storage.repo import Store
from tests.conftest import examples

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=utcnow().tzinfo)
LATER = NOW + timedelta(days=90)
DAY = timedelta(days=1)

U1, U2, C1, C2 = ("user", "U1"), ("user", "U2"), ("channel", "C1"), ("channel", "C2")
WS = ("workspace", "")

FILLER = [
    "the weekly report goes to finance on mondays",
    "grafana dashboards live in the observability folder",
    "lunch orders close at eleven",
    "vpn certificates rotate every quarter",
    "the design review happens on thursdays",
    "office wifi password is rotated by it",
]


def remember(
    store: Store,
    text_: str,
    *,
    scope: tuple[str, str] = WS,
    kind: str = "profile",
    subject: str = "misc",
    slot: str | None = None,
    at: datetime = NOW,
    expires_at: datetime = LATER,
    author: str = "U1",
) -> int:
    r = store.remember(
        kind=kind,
        scope=scope[0],
        scope_id=scope[1],
        subject=subject,
        slot=slot,
        text=text_,
        author=author,
        source="person",
        expires_at=expires_at,
        request_id="r1",
        channel="C1",
        message_ts="1.000001",
        now=at,
    )
    assert r.fact.id is not None
    return r.fact.id


def fill(store: Store, scope: tuple[str, str] = WS) -> None:
    """Unrelated facts, so that a term's inverse document frequency means something."""
    for i, line in enumerate(FILLER):
        remember(store, line, scope=scope, subject=f"filler-{i}", at=NOW - 40 * DAY)


def ids(hits: Sequence[object]) -> list[int]:
    return [h.id for h in hits]  # type: ignore[attr-defined]


# -- supersession ----------------------------------------------------------------------------


def test_a_newer_fact_for_a_slot_closes_the_current_one_and_history_keeps_both(
    db: Database,
) -> None:
    store = Store(db)
    old = remember(store, "alice owns payments-db", subject="payments-db", slot="owner")
    r = store.remember(
        kind="profile",
        scope="workspace",
        scope_id="",
        subject=" Payments-DB ",
        slot="Owner",
        text="bob owns payments-db now",
        author="U2",
        source="person",
        expires_at=LATER,
        now=NOW + DAY,
    )
    assert r.superseded == old
    closed = store.fact_by_id(old)
    assert closed is not None
    assert closed.valid_to == NOW + DAY and closed.superseded_by == r.fact.id
    current = store.fact_by_id(r.fact.id or 0)
    assert current is not None and current.valid_to is None and current.superseded_by is None
    history = store.fact_history("workspace", "", "payments-db", "owner")
    assert [f.id for f in history] == [old, r.fact.id]
    # Search only ever sees the current fact.
    assert ids(store.search_facts("who owns payments-db", [WS], None, NOW + DAY, 10)) == [r.fact.id]


def test_facts_without_a_slot_or_in_another_scope_never_supersede(db: Database) -> None:
    store = Store(db)
    a = remember(store, "we restart payments-db only at night", kind="decision", subject="p")
    b = remember(store, "we never restart payments-db on fridays", kind="decision", subject="p")
    c = remember(store, "owner is alice", scope=C1, subject="p", slot="owner")
    d = remember(store, "owner is bob", scope=C2, subject="p", slot="owner")
    e = remember(store, "owner is carol", scope=C1, subject="q", slot="owner")
    for fact_id in (a, b, c, d, e):
        fact = store.fact_by_id(fact_id)
        assert fact is not None and fact.valid_to is None and fact.superseded_by is None


def test_invalid_facts_are_refused(db: Database) -> None:
    store = Store(db)
    with pytest.raises(ValueError):
        remember(store, "x", kind="opinion")
    with pytest.raises(ValueError):
        remember(store, "x", scope=("user", ""))
    with pytest.raises(ValueError):
        remember(store, "x", scope=("workspace", "T1"))
    with pytest.raises(ValueError):
        remember(store, "   ")
    with pytest.raises(ValueError):
        remember(store, "x", subject="  ")


def test_concurrent_remembers_for_one_slot_leave_exactly_one_current_fact(
    db: Database,
) -> None:
    store = Store(db)
    remember(store, "owner is nobody", subject="checkout-api", slot="owner")
    threads = 8
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait()
            remember(store, f"owner is person {i}", subject="checkout-api", slot="owner")
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    history = store.fact_history("workspace", "", "checkout-api", "owner")
    assert len(history) == threads + 1
    current = [f for f in history if f.valid_to is None]
    assert len(current) == 1
    # The versions form one chain, from the first fact to the current one.
    by_id = {f.id: f for f in history}
    chain = [history[0].id]
    while (nxt := by_id[chain[-1]].superseded_by) is not None:
        chain.append(nxt)
    assert sorted(chain, key=lambda i: i or 0) == sorted(by_id, key=lambda i: i or 0)
    assert chain[-1] == current[0].id
    assert store.verify_audit()[1] == []


# -- scopes, kinds, expiry -------------------------------------------------------------------


def test_scopes_filter_every_query(db: Database) -> None:
    store = Store(db)
    fill(store)
    mine = remember(store, "prefers terse payments-db replies", scope=U1, kind="preference")
    theirs = remember(store, "prefers verbose payments-db replies", scope=U2, kind="preference")
    here = remember(store, "payments-db lives here", scope=C1, subject="payments-db")
    there = remember(store, "payments-db lives there", scope=C2, subject="payments-db")
    everyone = remember(store, "payments-db is postgres", subject="payments-db")
    d1 = remember(
        store, "payments-db: drain first", scope=C1, kind="decision", subject="payments-db"
    )
    d2 = remember(store, "payments-db: never", scope=C2, kind="decision", subject="payments-db")

    u1_view = [U1, C1, WS]
    found = ids(store.search_facts("payments-db replies", u1_view, None, NOW, 50))
    assert set(found) == {mine, here, everyone, d1}
    assert ids(store.search_facts("payments-db", [U2], None, NOW, 50)) == [theirs]
    assert set(ids(store.search_facts("", u1_view, None, NOW, 50))) >= {mine, here, d1}
    assert not {theirs, there, d2} & set(ids(store.search_facts("", u1_view, None, NOW, 50)))
    assert not {theirs, there, d2} & {f.id for f in store.facts_for(u1_view, NOW, None, 50)}
    assert [f.id for f in store.decisions_about(["payments-db"], u1_view, NOW)] == [d1]
    assert store.search_facts("payments-db", [], None, NOW, 10) == []


def test_kind_filter(db: Database) -> None:
    store = Store(db)
    fill(store)
    d = remember(store, "restart web only after the deploy", kind="decision", subject="web")
    t = remember(store, "restart web tomorrow", kind="task", subject="web")
    assert ids(store.search_facts("restart web", [WS], ["decision"], NOW, 10)) == [d]
    assert ids(store.search_facts("restart web", [WS], ["task"], NOW, 10)) == [t]
    assert ids(store.search_facts("", [WS], ["task"], NOW, 10)) == [t]
    assert store.search_facts("restart web", [WS], [], NOW, 10) == []


def test_expired_facts_are_never_returned_and_are_purged_later(db: Database) -> None:
    store = Store(db)
    fill(store)
    gone = remember(store, "deploy freeze on web", kind="decision", subject="web", expires_at=NOW)
    live = remember(store, "deploy web with canary", kind="decision", subject="web")
    assert ids(store.search_facts("deploy web", [WS], None, NOW, 10)) == [live]
    assert gone not in ids(store.search_facts("", [WS], None, NOW, 50))
    assert [f.id for f in store.decisions_about(["web"], [WS], NOW)] == [live]
    assert gone not in {f.id for f in store.facts_for([WS], NOW, "deploy", 10)}
    # Expired facts are only filtered until the retention purge deletes them.
    assert store.fact_by_id(gone) is not None
    old = remember(store, "owner alice", subject="db", slot="owner", at=NOW - 10 * DAY)
    remember(store, "owner bob", subject="db", slot="owner", at=NOW - 5 * DAY)
    assert store.purge_expired_facts(NOW - 6 * DAY) == 0
    assert store.purge_expired_facts(NOW + timedelta(seconds=1)) == 2
    assert store.fact_by_id(gone) is None and store.fact_by_id(old) is None
    assert store.fact_by_id(live) is not None
    assert store.audit_rows()[-1].kind == "memory.purge"


# -- relevance -------------------------------------------------------------------------------


def test_a_matching_fact_ranks_above_a_newer_non_matching_one(db: Database) -> None:
    store = Store(db)
    fill(store)
    match = remember(
        store,
        "restart payments-db in staging with the runbook",
        subject="payments-db",
        kind="task",
        at=NOW - 60 * DAY,
    )
    recent = remember(store, "checkout-api owner is carol", kind="decision", subject="co")
    hits = store.search_facts("restart payments-db in staging", [WS], None, NOW, 10)
    assert ids(hits)[0] == match
    assert recent not in ids(hits)
    assert all(h.score > 0 for h in hits)


def test_better_matches_outrank_priors_and_priors_break_close_calls(db: Database) -> None:
    store = Store(db)
    fill(store)
    strong = remember(
        store,
        "payments-db restart needs the dba on call",
        subject="payments-db",
        kind="task",
        at=NOW - 90 * DAY,
    )
    weak = remember(store, "staging is shared with the qa team", subject="staging", kind="decision")
    hits = ids(store.search_facts("restart payments-db", [WS], None, NOW, 10))
    assert hits == [strong]
    hits = ids(store.search_facts("restart payments-db staging", [WS], None, NOW, 10))
    assert hits.index(strong) < hits.index(weak)
    # Same words: a decision above a task, a newer fact above an older one.
    task = remember(store, "rotate the kafka keys", subject="kafka", kind="task")
    decision = remember(store, "rotate the kafka keys", subject="kafka", kind="decision")
    older = remember(store, "rotate the kafka keys", subject="kafka", at=NOW - 300 * DAY)
    newer = remember(store, "rotate the kafka keys", subject="kafka")
    hits = ids(store.search_facts("kafka keys", [WS], None, NOW, 10))
    assert hits.index(decision) < hits.index(task)
    assert hits.index(newer) < hits.index(older)


def test_an_empty_or_stopword_query_lists_the_most_recent_current_facts(db: Database) -> None:
    store = Store(db)
    a = remember(store, "first", at=NOW - 3 * DAY)
    b = remember(store, "second", scope=U1, at=NOW - 2 * DAY)
    c = remember(store, "third", scope=C1, at=NOW - DAY)
    for query in ("", "   ", "the and of", "?!", "_"):
        assert ids(store.search_facts(query, [WS, U1, C1], None, NOW, 10)) == [c, b, a]
    assert ids(store.search_facts("", [WS, U1, C1], None, NOW, 2)) == [c, b]
    assert [f.id for f in store.facts_for([WS, U1, C1], NOW, None, 10)] == [c, b, a]
    assert [f.id for f in store.facts_for([WS, U1, C1], NOW, "second", 10)] == [b]


HOSTILE = [
    '"',
    '""',
    "*",
    "NEAR(",
    "NEAR(a b, 2)",
    "a:b",
    "subject:foo",
    "{scope_key}: x",
    "'",
    "'; DROP TABLE fact; --",
    "&|!",
    "a & b | !c",
    "foo <-> bar",
    "(((",
    ")",
    "^start",
    "x*",
    "-",
    "AND OR NOT",
    "\\",
    "\x00",
    "payments-db ✓ 日本語 ṩŧåġïñğ",
    "İstanbul ß ﬁ",
    "x" * 10_000,
    " ".join(f"w{i}" for i in range(5000)),
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_raise(db: Database, query: str) -> None:
    store = Store(db)
    fill(store)
    remember(store, "restart payments-db in staging", subject="payments-db")
    store.search_facts(query, [WS, U1], None, NOW, 10)
    store.search_facts(query, [WS], ["decision", "task"], NOW, 10)
    store.facts_for([WS], NOW, query, 10)


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(query=st.text(max_size=300))
def test_arbitrary_queries_never_raise(db: Database, query: str) -> None:
    store = Store(db)
    hits = store.search_facts(query, [WS, ("user", query[:32] or "U1")], None, NOW, 5)
    assert len(hits) <= 5
    assert store.decisions_about([query], [WS, ("channel", query[:32])], NOW, 3) == []
    store.facts_for([WS], NOW, query, 5)


@given(query=st.text(max_size=2000))
def test_query_terms_are_plain_words(query: str) -> None:
    terms = query_terms(query)
    assert len(terms) <= MAX_QUERY_TERMS and len(set(terms)) == len(terms)
    assert all(t.isalnum() and t == t.lower() for t in terms)
    assert fts_match(terms, [WS]).count('"') == 2 * (len(terms) + 1)


# -- forgetting ------------------------------------------------------------------------------


def indexed(db: Database, word: str) -> int:
    """How many entries of the full-text index hold `word`, read from the index itself (on
    PostgreSQL, the `tsv` of the rows the partial GIN index covers)."""
    with db.read() as s:
        if db.is_sqlite:
            s.execute(
                text(
                    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.fact_vocab "
                    "USING fts5vocab(main, fact_fts, 'instance')"
                )
            )
            return int(
                s.execute(
                    text("SELECT count(*) FROM temp.fact_vocab WHERE term = :w"), {"w": word}
                ).scalar_one()
            )
        return int(
            s.execute(
                text(
                    "SELECT coalesce(sum(nentry), 0) "
                    "FROM ts_stat('SELECT tsv FROM fact WHERE valid_to IS NULL') WHERE word = :w"
                ),
                {"w": word},
            ).scalar_one()
        )


def test_forgotten_facts_are_gone_from_search_history_and_the_index(db: Database) -> None:
    store = Store(db)
    fill(store)
    first = remember(store, "zanzibar owns billing", subject="billing", slot="owner")
    second = remember(store, "quixotic owns billing", subject="billing", slot="owner", at=NOW + DAY)
    keep = remember(store, "billing runs on tuesdays", subject="billing")
    assert indexed(db, "quixot") == 1
    assert indexed(db, "zanzibar") == 0  # superseded: kept for history, no longer searched
    gone = store.forget_facts([second, 99_999], "U0ADMIN")
    assert gone == [(second, fact_digest("quixotic owns billing"))]
    assert store.fact_by_id(second) is None
    assert store.search_facts("quixotic", [WS], None, NOW + DAY, 10) == []
    assert second not in ids(store.search_facts("billing", [WS], None, NOW + DAY, 10))
    assert second not in {f.id for f in store.facts_for([WS], NOW + DAY, None, 50)}
    history = store.fact_history("workspace", "", "billing", "owner")
    assert [f.id for f in history] == [first]
    # The withdrawn statement gives the slot back to the one it had replaced.
    assert history[0].superseded_by is None and history[0].valid_to is None
    assert indexed(db, "quixot") == 0
    assert indexed(db, "zanzibar") == 1
    # Forgetting the reopened fact too leaves the index consistent.
    assert store.forget_facts([first], "U0ADMIN") == [(first, fact_digest("zanzibar owns billing"))]
    assert store.fact_history("workspace", "", "billing", "owner") == []
    if db.is_sqlite:
        with db.write() as s:
            s.execute(text("INSERT INTO fact_fts (fact_fts, rank) VALUES ('integrity-check', 0)"))
    assert ids(store.search_facts("billing", [WS], None, NOW + DAY, 10)) == [keep]
    with db.read() as s:
        if db.is_sqlite:
            rows = s.execute(
                text("SELECT rowid FROM fact_fts WHERE fact_fts MATCH 'quixotic'")
            ).all()
        else:
            rows = s.execute(
                text("SELECT id FROM fact WHERE tsv @@ plainto_tsquery('english', 'quixotic')")
            ).all()
    assert rows == []
    # Ids are never reused, even the newest one's after it was forgotten.
    newest = remember(store, "nothing", subject="n")
    assert store.forget_facts([newest], "U0ADMIN") != []
    assert remember(store, "something", subject="n") > newest > keep
    assert store.forget_facts([], "U0ADMIN") == []
    assert store.forget_facts([newest], "U0ADMIN") == []


def test_audit_rows_never_hold_fact_text(db: Database) -> None:
    store = Store(db)
    secret = "the vault master key is hunter2 at jupiter"
    a = remember(store, secret, subject="vault", slot="key", at=NOW - 400 * DAY, expires_at=NOW)
    b = remember(store, secret + " again", subject="vault", slot="key", at=NOW - 300 * DAY)
    store.forget_facts([b], "U0ADMIN")  # `a` stands again, until it expires at NOW
    store.purge_expired_facts(NOW + DAY)
    rows = store.audit_rows()
    assert [r.kind for r in rows] == [
        "memory.remember",
        "memory.remember",
        "memory.forget",
        "memory.purge",
    ]
    for row in rows:
        for word in ("hunter2", "jupiter", "master"):
            assert word not in row.data
    second = json.loads(rows[1].data)
    assert second["superseded"] == a and second["digest"] == fact_digest(secret + " again")
    assert second["subject"] == "vault" and second["slot"] == "key"
    assert json.loads(rows[2].data) == {"facts": [[b, fact_digest(secret + " again")]]}
    assert store.verify_audit()[1] == []


def test_decisions_about_returns_recent_current_decisions_on_those_subjects(
    db: Database,
) -> None:
    store = Store(db)
    old = remember(store, "restart at night", kind="decision", subject="web", at=NOW - 5 * DAY)
    new = remember(store, "restart any time", kind="decision", subject="web", at=NOW - DAY)
    other = remember(store, "scale to 3", kind="decision", subject="worker", at=NOW - 2 * DAY)
    remember(store, "web is owned by alice", kind="profile", subject="web")
    remember(store, "webapp decided", kind="decision", subject="webapp")
    remember(store, "closed", kind="decision", subject="web", expires_at=NOW - DAY)
    assert [f.id for f in store.decisions_about(["WEB"], [WS], NOW, 5)] == [new, old]
    assert [f.id for f in store.decisions_about(["web", "worker"], [WS], NOW, 5)] == [
        new,
        other,
        old,
    ]
    assert [f.id for f in store.decisions_about(["web", "worker"], [WS], NOW, 1)] == [new]
    assert store.decisions_about([], [WS], NOW, 5) == []
    assert store.decisions_about(["web"], [C1], NOW, 5) == []


# -- sealed personal data --------------------------------------------------------------------


def _request(db: Database, rid: str, status: str, updated_at: datetime, *actions: Action) -> None:
    with db.write() as s:
        s.add(
            Request(
                id=rid,
                trace_id=rid,
                channel="C1",
                thread_ts=f"1.{rid}",
                message_ts=f"1.{rid}",
                requester="U1",
                text="restart web for <PERSON_1>",
                status=status,
                updated_at=updated_at,
            )
        )
        s.flush()
        for a in actions:
            s.add(a)


def _action(rid: str, n: int, status: str, undo_until: datetime | None = None) -> Action:
    return Action(
        id=f"{rid}a{n}",
        request_id=rid,
        trace_id=rid,
        tool="restart_service",
        args_json="{}",
        policy_version="v1",
        risk="high",
        requester="U1",
        channel="C1",
        thread_ts=f"1.{rid}",
        status=status,
        undo_until=undo_until,
    )


def test_sealed_pii_is_kept_while_anything_can_still_need_it(db: Database) -> None:
    store = Store(db)
    old, recent = NOW - 10 * DAY, NOW - timedelta(minutes=5)
    S = ActionStatus
    cases = {
        "done": (RequestStatus.DONE, old, [], True),
        "failed": (RequestStatus.FAILED, old, [], True),
        "recent": (RequestStatus.DONE, recent, [], False),
        "queued": (RequestStatus.RECEIVED, old, [], False),
        "planning": (RequestStatus.PLANNING, old, [], False),
        "waiting": (RequestStatus.PLANNED, old, [(S.AWAITING_APPROVAL, None)], False),
        "running": (RequestStatus.PLANNED, old, [(S.REJECTED, None), (S.EXECUTING, None)], False),
        "undoable": (RequestStatus.PLANNED, old, [(S.SUCCEEDED, NOW + DAY)], False),
        "undoing": (RequestStatus.PLANNED, old, [(S.UNDOING, None)], False),
        "settled": (RequestStatus.PLANNED, old, [(S.SUCCEEDED, NOW - DAY)], True),
        "no_undo": (RequestStatus.PLANNED, old, [(S.SUCCEEDED, None)], True),
        "checking": (RequestStatus.PLANNED, old, [(S.SUCCEEDED, None)], False),
        "checked": (RequestStatus.PLANNED, old, [(S.SUCCEEDED, None)], True),
        "ended": (
            RequestStatus.PLANNED,
            old,
            [(S.REJECTED, None), (S.FAILED, None), (S.UNDONE, None), (S.SUGGESTED, None)],
            True,
        ),
    }
    # An outcome check still due needs the real arguments; a finished one does not.
    checks = {"checking": VerifyStatus.PENDING, "checked": VerifyStatus.PASSED}
    for rid, (status, updated, actions, _) in cases.items():
        rows = [_action(rid, i, a, u) for i, (a, u) in enumerate(actions)]
        for row in rows:
            row.verify_status = checks.get(rid)
        _request(db, rid, status, updated, *rows)
        assert store.set_request_pii(rid, f"sealed-{rid}")
    assert not store.set_request_pii("nope", "x")
    assert store.request_pii("done") == "sealed-done"
    assert store.request_pii("nope") is None

    cleared = store.clear_finished_pii(NOW - DAY, now=NOW)
    assert cleared == sum(1 for *_, gone in cases.values() if gone)
    for rid, (*_, gone) in cases.items():
        assert (store.request_pii(rid) is None) == gone, rid
    assert store.clear_finished_pii(NOW - DAY, now=NOW) == 0
    assert store.set_request_pii("waiting", None)
    assert store.request_pii("waiting") is None


# -- schema ----------------------------------------------------------------------------------


def test_migration_0004_downgrades_and_upgrades_again(db: Database) -> None:
    store = Store(db)
    remember(store, "survives nothing", subject="x")
    command.downgrade(db.alembic_config(), "0003")
    with db.engine.connect() as conn:
        insp = inspect(conn)
        assert "fact" not in insp.get_table_names()
        assert "fact_fts" not in insp.get_table_names()
        assert "pii_sealed" not in {c["name"] for c in insp.get_columns("request")}
        assert "request_id" not in {c["name"] for c in insp.get_columns("outbox")}
    db.upgrade()
    fill(store)
    remember(store, "restart web", subject="web")
    assert len(store.search_facts("restart web", [WS], None, NOW, 5)) == 1
