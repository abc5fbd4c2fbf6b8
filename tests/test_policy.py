"""warden.toml validation: every problem is a clear error naming the key (fail closed)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.policy import load_policy, parse_policy
from bot.policy_types import parse_duration
from tests.conftest import APPROVER, APPROVER2, policy_data


def error_for(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        from bot.app import build_registry

        build_registry(parse_policy(data))
    return str(info.value)


def test_product_example_is_valid(tmp_path: Path) -> None:
    text = """
[access]
admins = ["U012ADMIN"]
approvers = ["U034APPR", "U056APPR"]
admin_channel = "C0OPS"

[gate]
min_confidence = 0.8
clarify_below = 0.5
approval_ttl = "24h"
undo_window = "1h"

[tools.post_message]
autonomy = "auto"

[runbooks.restart_service]
description = "Restart a service with systemd"
command = ["systemctl", "restart", "{service}"]
undo = ["systemctl", "start", "{service}"]
dry_run = ["systemctl", "status", "{service}"]
risk = "high"
timeout = "60s"
params.service = { pattern = "^[a-z0-9-]{1,40}$" }

[aliases]
"restart {service}" = { runbook = "restart_service" }
"""
    path = tmp_path / "warden.toml"
    path.write_text(text)
    policy = load_policy(path)
    assert policy.gate.approval_ttl.total_seconds() == 86400
    assert policy.runbooks["restart_service"].timeout.total_seconds() == 60
    assert policy.version.startswith("pv-") and len(policy.version) == 15


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["access"].update(bogus=1), "access.bogus: unknown key"),
        (lambda d: d.update(extra_section={}), "extra_section: unknown key"),
        (lambda d: d["gate"].update(approval_ttl="3 weeks"), "gate.approval_ttl: bad duration"),
        (lambda d: d["gate"].update(undo_window="-5m"), "gate.undo_window: bad duration"),
        (
            lambda d: d["runbooks"]["restart_service"]["params"]["service"].update(pattern="(["),
            "runbooks.restart_service.params.service.pattern: bad regular expression",
        ),
        (
            lambda d: d["aliases"].update({"bounce {service}": {"runbook": "nope"}}),
            "unknown runbook 'nope'",
        ),
        (
            lambda d: d["runbooks"]["restart_service"].update(command=["x", "{svc}"]),
            "params.svc is not declared",
        ),
        (lambda d: d["access"].update(approvers=["not-a-user"]), "is not a Slack user id"),
        (lambda d: d["access"].update(admin_channel="ops"), "is not a Slack channel id"),
        (lambda d: d["gate"].update(clarify_below=0.9), "clarify_below must not be greater"),
        (
            lambda d: d["runbooks"]["restart_service"].update(risk="extreme"),
            "runbooks.restart_service.risk",
        ),
        (
            lambda d: d["runbooks"]["restart_service"].update(command=[]),
            "runbooks.restart_service.command",
        ),
        (lambda d: d["access"].pop("admin_channel"), "access.admin_channel: required key"),
    ],
)
def test_invalid_policies_name_the_key(tmp_path: Path, mutate: Any, expected: str) -> None:
    data = copy.deepcopy(policy_data(tmp_path))
    mutate(data)
    assert expected in error_for(data)


def test_empty_approvers_for_a_tool_that_needs_approval(tmp_path: Path) -> None:
    data = policy_data(tmp_path)
    data["access"]["approvers"] = []
    message = error_for(data)
    assert "access.approvers" in message and "nobody may approve" in message


def test_auto_autonomy_only_for_low_risk(tmp_path: Path) -> None:
    data = policy_data(tmp_path)
    data["tools"]["restart_service"] = {"autonomy": "auto"}
    assert "only allowed for low-risk tools" in error_for(data)


def test_tools_section_must_name_a_real_tool(tmp_path: Path) -> None:
    data = policy_data(tmp_path)
    data["tools"]["rm_rf"] = {"autonomy": "suggest"}
    assert "tools.rm_rf: no such tool" in error_for(data)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[access\nadmins = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(bad)
    with pytest.raises(ConfigError, match="policy file not found"):
        load_policy(tmp_path / "missing.toml")


def test_version_is_stable_and_changes_with_any_rule(tmp_path: Path) -> None:
    a = parse_policy(policy_data(tmp_path))
    b = parse_policy(policy_data(tmp_path))
    assert a.version == b.version
    data = policy_data(tmp_path)
    data["gate"]["min_confidence"] = 0.81
    assert parse_policy(data).version != a.version
    data = policy_data(tmp_path)
    data["gate"]["approval_ttl"] = "60m"  # same duration written differently
    assert parse_policy(data).version == a.version


def test_durations() -> None:
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_duration("500ms").total_seconds() == 0.5
    assert parse_duration(90).total_seconds() == 90
    for bad in ["", "10", "h", "1h 30m", "0s", True]:
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_warden_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib  # noqa: F401  (the CLI reads TOML with the standard library)

    from handlers.cli import main

    good = tmp_path / "warden.toml"
    good.write_text(_toml(policy_data(tmp_path)))
    assert main(["check", "--config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "policy version: pv-" in out
    bad_data = policy_data(tmp_path)
    bad_data["gate"]["approval_ttl"] = "soon"
    bad = tmp_path / "bad.toml"
    bad.write_text(_toml(bad_data))
    assert main(["check", "--config", str(bad)]) == 2
    assert "gate.approval_ttl" in capsys.readouterr().err


def _toml(data: dict[str, Any]) -> str:
    """A tiny TOML writer for the nested dicts/lists/strings these tests use."""
    import json

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        return json.dumps(v)

    lines: list[str] = []

    def table(prefix: str, d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict) or prefix.count(".") >= 1}
        nested = {k: v for k, v in d.items() if k not in scalars}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{json.dumps(k)} = {value(v)}")
        for k, v in nested.items():
            table(f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k), v)

    table("", data)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("param", "key"),
    [
        ({"choices": ["prod", "staging"], "risk_if": {"production": "critical"}}, "production"),
        ({"pattern": "^[a-z]+$", "risk_if": {"Prod": "high"}}, "Prod"),
        ({"pattern": "[a-z]+", "risk_if": {"prod-1": "high"}}, "prod-1"),  # full match
        ({"pattern": ".+", "risk_if": {"-f": "high"}}, "-f"),  # never a valid argument
    ],
)
def test_risk_if_keys_must_be_values_an_argument_can_take(
    tmp_path: Path, param: dict[str, Any], key: str
) -> None:
    data = policy_data(tmp_path)
    data["runbooks"]["flush_cache"]["params"]["name"] = param
    message = error_for(data)
    assert f"runbooks.flush_cache.params.name.risk_if.{key}: " in message


def test_risk_if_keys_that_match_are_accepted(tmp_path: Path) -> None:
    data = policy_data(tmp_path)
    data["runbooks"]["flush_cache"]["params"]["name"] = {
        "pattern": "^[a-z]+$",
        "risk_if": {"sessions": "high"},
    }
    parse_policy(data)  # and the shared fixture's choices-based risk_if is valid too


@pytest.mark.parametrize(
    ("alias", "target", "expected"),
    [
        (
            "say {msg}",
            {"tool": "post_message"},
            "aliases.'say {msg}': {msg} is not an argument of tool 'post_message'",
        ),
        (
            "say {text}",
            {"tool": "post_message", "args": {"chanel": "C0GENERAL"}},
            "aliases.'say {text}'.args.chanel: not an argument of tool 'post_message'",
        ),
        (
            "bounce {service}",
            {"runbook": "restart_service", "args": {"force": "yes"}},
            "aliases.'bounce {service}'.args.force: not a parameter of runbook 'restart_service'",
        ),
    ],
)
def test_alias_placeholders_and_fixed_args_must_exist(
    tmp_path: Path, alias: str, target: dict[str, Any], expected: str
) -> None:
    data = policy_data(tmp_path)
    data["aliases"][alias] = target
    assert expected in error_for(data)


def test_valid_tool_alias_with_fixed_args_is_accepted(tmp_path: Path) -> None:
    from bot.app import build_registry

    data = policy_data(tmp_path)
    data["aliases"]["tell ops {text}"] = {"tool": "post_message", "args": {"channel": "C0OPS"}}
    build_registry(parse_policy(data))


def test_a_tool_that_can_reach_critical_needs_two_approvers(tmp_path: Path) -> None:
    from bot.app import build_registry

    # `scale` reaches critical through risk_if (env=prod); one approver could never run it.
    data = policy_data(tmp_path)
    data["tools"]["scale"] = {"approvers": [APPROVER]}
    message = error_for(data)
    assert "tools.scale.approvers:" in message and "critical" in message
    # A runbook whose own tier is critical, approvers from [access].
    data = policy_data(tmp_path)
    data["access"]["approvers"] = [APPROVER]
    data["runbooks"]["scale"]["params"]["env"]["risk_if"] = {}
    data["runbooks"]["flush_cache"]["risk"] = "critical"
    message = error_for(data)
    assert "access.approvers:" in message and "'flush_cache'" in message
    # Two approvers, or autonomy "suggest", are fine; high still needs only one.
    data["tools"]["flush_cache"] = {"approvers": [APPROVER, APPROVER2]}
    build_registry(parse_policy(data))
    data["tools"]["flush_cache"] = {"autonomy": "suggest"}
    build_registry(parse_policy(data))
