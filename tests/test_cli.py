"""The `warden` command line: eval, audit verify, db upgrade (check is in test_policy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from handlers.cli import main
from tests.conftest import ADMIN, APPROVER, REQUESTER, RecordingChat
from tests.harness import mention, warden
from tests.test_policy import _toml

ROOT = Path(__file__).resolve().parents[1]
DEMO_POLICY = ROOT / "handlers" / "demo" / "warden.toml"


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


def test_audit_verify_and_db_upgrade(
    database_url: str,
    policy: object,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["db", "upgrade"]) == 0
    assert "up to date" in capsys.readouterr().out
    with warden(database_url, policy, RecordingChat()) as w:  # type: ignore[arg-type]
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        w.lifecycle.approvals.approve(action.id, action.revision, APPROVER)
        w.lifecycle.control.pause(ADMIN, "drill")
        assert w.workers.wait_idle(30)
        rows = w.store.audit_rows()
        assert main(["audit", "verify"]) == 0
        assert f"verifies: {len(rows)} rows" in capsys.readouterr().out
        victim = rows[len(rows) // 2]
        with w.db.write() as s:
            s.connection().execute(
                text("UPDATE audit_event SET actor = 'U0MALLORY' WHERE seq = :seq"),
                {"seq": victim.seq},
            )
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert "BROKEN" in err and str(victim.seq) in err


def test_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import policy_data

    data = policy_data(tmp_path)
    data["runbooks"]["warden_ask"] = data["runbooks"]["flush_cache"]
    bad = tmp_path / "warden.toml"
    bad.write_text(_toml(data))
    assert main(["check", "--config", str(bad)]) == 2
    assert "reserved" in capsys.readouterr().err


def test_a_consistently_rewritten_chain_is_caught_by_a_published_anchor(
    database_url: str,
    policy: object,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import re

    from sqlmodel import col, select

    from storage.audit import row_hash
    from storage.models import AuditEvent, AuditHead

    monkeypatch.setenv("DATABASE_URL", database_url)
    chat = RecordingChat()
    with warden(database_url, policy, chat) as w:  # type: ignore[arg-type]
        action = mention(w, "restart web", REQUESTER)
        assert action is not None
        w.lifecycle.approvals.approve(action.id, action.revision, APPROVER)
        assert w.workers.wait_idle(30)
        seq, digest = w.lifecycle.sweeps.publish_audit_anchor()
        assert w.workers.wait_idle(30)
        posted = [
            p["text"] for p in chat.posts if p["channel"] == "C0OPS" and "anchor" in p["text"]
        ]
        anchor = re.search(r"--anchor (\d+:[0-9a-f]{64})", posted[-1]).group(1)  # type: ignore[union-attr]
        assert anchor == f"{seq}:{digest}"
        assert main(["audit", "verify", "--anchor", anchor]) == 0
        # Someone with database access rewrites row 2 and recomputes every hash after it.
        with w.db.write() as s:
            rows = list(s.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all())
            rows[1].actor = "U0MALLORY"
            prev = rows[0].hash
            for row in rows[1:]:
                row.prev_hash = prev
                row.hash = row_hash(row)
                prev = row.hash
                s.add(row)
            head = s.get(AuditHead, 1)
            assert head is not None
            head.hash = prev
            s.add(head)
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0  # the chain alone cannot tell
    assert main(["audit", "verify", "--anchor", anchor]) == 1
    assert f"row {seq}: its hash differs from the published anchor" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        main(["audit", "verify", "--anchor", "12:nothex"])
    assert bad.value.code == 2 and "SEQ:HASH" in capsys.readouterr().err
