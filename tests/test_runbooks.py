"""Runbooks: argv only, validated parameters, timeouts, bounded output."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ToolArgumentsError
from bot.policy_runbooks import Runbook
from bot.runbooks import OUTPUT_KEEP, runbook_tool
from bot.tools import ToolContext

CTX = ToolContext(action_id="act123", trace_id="tr", requester="U0REQ")


def tool(**kw: object) -> object:
    return runbook_tool("rb", Runbook.model_validate({"description": "d", **kw}))


def test_parameters_are_single_argv_elements_never_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {
                "description": "d",
                "command": ["printf", "%s|", "{a}", "x{a}y"],
                "params": {"a": {"pattern": ".+"}},
            }
        ),
    )
    payload = f"$(touch {marker});`touch {marker}`&&touch {marker}"[:200]
    result = t.run(t.validate({"a": payload}), CTX)
    assert result.ok
    assert result.output == f"{payload}|x{payload}y|"
    assert not marker.exists()


def test_validation_before_substitution() -> None:
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {
                "description": "d",
                "command": ["echo", "{svc}", "{env}"],
                "params": {"svc": {"pattern": "^[a-z]+$"}, "env": {"choices": ["a", "b"]}},
            }
        ),
    )
    for bad in (
        {"svc": "ABC", "env": "a"},
        {"svc": "abc", "env": "c"},
        {"svc": "--help", "env": "a"},
        {"svc": "abc"},
        {"svc": "a\nb", "env": "a"},
        {"svc": "abc", "env": "a", "more": "x"},
    ):
        with pytest.raises(ToolArgumentsError):
            t.validate(bad)
    assert t.run(t.validate({"svc": "abc", "env": "b"}), CTX).output.strip() == "abc b"


def test_idempotency_key_reaches_the_command() -> None:
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {"description": "d", "command": ["sh", "-c", "echo $WARDEN_ACTION_ID"]}
        ),
    )
    assert t.run(t.validate({}), CTX).output.strip() == "act123"


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    import os

    pidfile = tmp_path / "child.pid"
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {
                "description": "d",
                "timeout": "500ms",
                "command": ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"],
            }
        ),
    )
    result = t.run(t.validate({}), CTX)
    assert not result.ok and "timed out" in result.output
    child = int(pidfile.read_text())
    # The background grandchild was in the killed process group: it is gone (or a zombie
    # about to be reaped by init), not sleeping on.
    try:
        os.kill(child, 0)
        state = Path(f"/proc/{child}/stat").read_text().split()[2]
        assert state == "Z"
    except (ProcessLookupError, FileNotFoundError):
        pass


def test_failure_and_missing_binary() -> None:
    t = runbook_tool(
        "rb",
        Runbook.model_validate({"description": "d", "command": ["sh", "-c", "echo no; exit 3"]}),
    )
    result = t.run(t.validate({}), CTX)
    assert not result.ok and result.output.startswith("exit status 3")
    t2 = runbook_tool(
        "rb", Runbook.model_validate({"description": "d", "command": ["/no/such/binary"]})
    )
    assert "could not start" in t2.run(t2.validate({}), CTX).output


def test_huge_output_is_bounded() -> None:
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {
                "description": "d",
                "command": ["sh", "-c", "echo START; yes line | head -c 5000000; echo; echo END"],
            }
        ),
    )
    result = t.run(t.validate({}), CTX)
    assert (
        result.ok and result.output.startswith("START") and result.output.rstrip().endswith("END")
    )
    assert len(result.output) < 2 * OUTPUT_KEEP + 200


SECRETS = {
    "SLACK_SIGNING_SECRET": "signing-secret-value",
    "SLACK_BOT_TOKEN": "xoxb-not-a-real-token",
    "ANTHROPIC_API_KEY": "sk-ant-not-a-real-key",
    "DATABASE_URL": "postgresql://warden:hunter2@db/warden",
}


def _env_of(result_output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result_output.split("\0") if "=" in line)


def test_runbooks_never_see_wardens_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/config")
    monkeypatch.setenv("UNRELATED", "x")
    monkeypatch.setenv("LANG", "C.UTF-8")
    t = runbook_tool(
        "rb",
        Runbook.model_validate(
            {
                "description": "d",
                "command": ["env", "-0"],
                "dry_run": ["env", "-0"],
                "undo": ["env", "-0"],
                "env": {"REGION": "eu-west-1", "PATH": "/opt/tools/bin:/usr/bin:/bin"},
                "pass_env": ["KUBECONFIG", "NOT_SET_ANYWHERE"],
            }
        ),
    )
    args = t.validate({})
    result = t.run(args, CTX)
    assert result.ok
    env = _env_of(result.output)
    for name, value in SECRETS.items():
        assert name not in env
        assert value not in result.output
    assert "UNRELATED" not in env and "NOT_SET_ANYWHERE" not in env
    assert env["KUBECONFIG"] == "/etc/kube/config"
    assert env["REGION"] == "eu-west-1" and env["PATH"] == "/opt/tools/bin:/usr/bin:/bin"
    assert env["LANG"] == "C.UTF-8"
    assert env["WARDEN_ACTION_ID"] == "act123" and env["WARDEN_REQUESTER"] == "U0REQ"
    assert set(env) <= {*SAFE_NAMES, "KUBECONFIG", "REGION", "WARDEN_TRACE_ID"}
    assert t.undo is not None and t.dry_run is not None
    undo_env = _env_of(t.undo(args, CTX, {}).output)
    assert undo_env["WARDEN_UNDO"] == "1" and "SLACK_SIGNING_SECRET" not in undo_env
    dry_env = _env_of(t.dry_run(args, CTX))
    assert dry_env["WARDEN_DRY_RUN"] == "1" and "SLACK_SIGNING_SECRET" not in dry_env


SAFE_NAMES = {
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "WARDEN_ACTION_ID",
    "WARDEN_REQUESTER",
    "WARDEN_UNDO",
    "WARDEN_DRY_RUN",
}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"env": {"BAD-NAME": "x"}}, "runbooks.rb.env.BAD-NAME: not an environment variable"),
        ({"env": {"WARDEN_ACTION_ID": "x"}}, "runbooks.rb.env.WARDEN_ACTION_ID: names starting"),
        ({"env": {"N": 3}}, "runbooks.rb.env.N: Input should be a valid string"),
        ({"pass_env": ["1X"]}, "runbooks.rb.pass_env[0]: '1X' is not an environment variable"),
        (
            {"pass_env": ["KUBECONFIG", "SLACK_SIGNING_SECRET"]},
            "runbooks.rb.pass_env[1]: SLACK_SIGNING_SECRET is one of Warden's own credentials",
        ),
        ({"pass_env": ["DATABASE_URL"]}, "DATABASE_URL is one of Warden's own credentials"),
        ({"pass_env": ["ANTHROPIC_API_KEY"]}, "ANTHROPIC_API_KEY is one of Warden's own"),
        ({"pass_env": ["WARDEN_CONFIG"]}, "runbooks.rb.pass_env[0]: WARDEN_CONFIG: names"),
        ({"pass_env": ["K"], "env": {"K": "v"}}, "runbooks.rb.env.K: also listed in pass_env"),
    ],
)
def test_runbook_env_is_validated(extra: dict[str, object], expected: str) -> None:
    from bot.errors import ConfigError
    from bot.policy import parse_policy

    data = {
        "access": {"admin_channel": "C0OPS"},
        "runbooks": {"rb": {"description": "d", "command": ["true"], **extra}},
    }
    with pytest.raises(ConfigError) as info:
        parse_policy(data)
    assert expected in str(info.value)
