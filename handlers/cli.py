"""The `warden` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from bot.errors import ConfigError
from bot.settings import Settings, describe_settings_error, load_settings
from handlers.logs import configure as configure_logging

log = logging.getLogger("warden")


def _settings(config: str | None = None) -> Settings:
    settings = load_settings()
    if config:
        settings = settings.model_copy(update={"warden_config": config})
    return settings


def cmd_check(args: argparse.Namespace) -> int:
    from bot.app import check

    settings = _settings(args.config)
    policy, registry = check(settings)
    print(f"policy OK: {settings.warden_config}")
    print(f"policy version: {policy.version}")
    print(f"tools: {', '.join(registry.names())}")
    print(
        f"aliases: {len(policy.aliases)} · approvers: {len(policy.access.approvers)} · "
        f"admins: {len(policy.access.admins)}"
    )
    _check_prompt_cache(settings, policy, registry)
    return 0


def _check_prompt_cache(settings: Settings, policy: Any, registry: Any) -> None:
    """A prefix too short to be cached is a warning, not a failure: Warden works, at full
    price for every call."""
    from bot.prompt_cache import measure

    size = measure(settings, policy, registry)
    print(size.describe())
    warning = size.warning()
    if warning:
        print(f"warden: {warning}", file=sys.stderr)


def cmd_audit(args: argparse.Namespace) -> int:
    from storage.db import Database
    from storage.repo import Store

    db = Database(_settings().database_url)
    try:
        store = Store(db)
        count, problems = store.verify_audit(args.anchor or ())
        tip = store.audit_tip()
    finally:
        db.dispose()
    if problems:
        print(f"audit chain BROKEN ({count} rows checked):", file=sys.stderr)
        for p in problems:
            print(f"  {p.message}", file=sys.stderr)
        return 1
    anchored = f", {len(args.anchor)} anchor(s) match" if args.anchor else ""
    print(f"audit chain verifies: {count} rows{anchored}; tip: row {tip[0]}, hash {tip[1]}")
    return 0


def _anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise argparse.ArgumentTypeError(f"{text!r} is not SEQ:HASH (a row number and 64 hex)")
    return int(seq), digest


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from storage.db import Database

    db = Database(_settings().database_url)
    try:
        db.upgrade()
    finally:
        db.dispose()
    print("database schema is up to date")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    if args.socket_mode or args.single_process or args.worker:
        from handlers.runtime import serve

        return serve(settings, socket_mode=args.socket_mode, worker=args.worker)
    from handlers import front

    return front.serve(settings, config=args.config, verbose=args.verbose)


def cmd_dev(args: argparse.Namespace) -> int:
    from handlers.dev import run_dev

    port = args.port if args.port is not None else _settings().port
    return run_dev(port=port, config=args.config, open_browser=not args.no_browser)


def cmd_eval(args: argparse.Namespace) -> int:
    from handlers.evaluate import run_eval

    if not args.verbose:  # the report is the output; the bot's own log lines are noise here
        logging.getLogger().setLevel(logging.WARNING)
    return run_eval(
        _settings(args.config),
        args.cases,
        policies=args.policy or (),
        model=args.model,
        record=args.record,
        baseline=args.baseline,
        json_path=args.json,
        junit_path=args.junit,
        thresholds=args.thresholds,
        concurrency=args.concurrency,
    )


def cmd_tools(args: argparse.Namespace) -> int:
    from handlers.tools_cli import list_tools, show_tool

    if not args.verbose:  # the listing or card is the output; start-up log lines are noise
        logging.getLogger().setLevel(logging.WARNING)
    settings = _settings(args.config)
    if args.tools_command != "show":
        return list_tools(settings, as_json=args.json)
    return show_tool(
        settings,
        args.name,
        args_json=args.args,
        says=args.says,
        requester=args.requester,
        channel=args.channel,
        confidence=args.confidence,
        as_json=args.json,
        dry_run=not args.no_dry_run,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="warden", description="A Slack bot that asks before it acts.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run in production (HTTP mode, or --socket-mode)")
    s.add_argument("--socket-mode", action="store_true", help="connect with SLACK_APP_TOKEN")
    s.add_argument("--config", help="policy file (default: WARDEN_CONFIG or warden.toml)")
    s.add_argument(
        "--single-process",
        action="store_true",
        help="acks and Warden's work in one process (default: a front process for acks)",
    )
    s.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # the front's child
    s.set_defaults(func=cmd_serve)
    d = sub.add_parser("dev", help="the whole bot locally, with a Slack-like page")
    d.add_argument("--port", type=int, help="the workspace page's port (default: PORT or 3000)")
    d.add_argument("--config", help="use this policy instead of the bundled demo")
    d.add_argument("--no-browser", action="store_true", help="do not open a browser")
    d.set_defaults(func=cmd_dev)
    c = sub.add_parser("check", help="validate config and policy; print the policy version")
    c.add_argument("--config", help="policy file (default: WARDEN_CONFIG or warden.toml)")
    c.set_defaults(func=cmd_check)
    a = sub.add_parser("audit", help="audit trail tools")
    a_sub = a.add_subparsers(dest="audit_command", required=True)
    v = a_sub.add_parser("verify", help="verify the hash chain")
    v.add_argument(
        "--anchor",
        action="append",
        type=_anchor,
        metavar="SEQ:HASH",
        help="an audit anchor posted to the admin channel; repeatable",
    )
    v.set_defaults(func=cmd_audit)
    db = sub.add_parser("db", help="database tools")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)
    e = sub.add_parser("eval", help="run evaluation suites through the production path")
    e.add_argument("cases", nargs="+", help="suites: TOML case files or case modules (.py)")
    e.add_argument("--config", help="policy file for suites that name none")
    e.add_argument(
        "--policy",
        action="append",
        metavar="FILE",
        help="run every suite under this policy; twice (OLD, NEW): review what changes",
    )
    e.add_argument("--model", choices=["alias", "replay", "live"], default="alias")
    e.add_argument("--record", action="store_true", help="with --model live: write cassettes")
    e.add_argument("--baseline", metavar="FILE", help="an earlier --json report to compare")
    e.add_argument("--json", metavar="FILE", help="write the report as JSON")
    e.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    e.add_argument("--thresholds", metavar="FILE", help="default: evals/thresholds.toml")
    e.add_argument("--concurrency", type=int, default=4, help="cases run at once")
    e.set_defaults(func=cmd_eval)
    t = sub.add_parser("tools", help="list every tool; render one call's card offline")
    t.add_argument("--config", help="policy file (default: WARDEN_CONFIG or warden.toml)")
    t.add_argument("--json", action="store_true", help="the list as JSON")
    t.set_defaults(func=cmd_tools, tools_command=None)
    t_sub = t.add_subparsers(dest="tools_command")
    ts = t_sub.add_parser(
        "show",
        help="validate a call, show its tier, the gate's answer, its dry run and its card",
    )
    ts.add_argument("name", nargs="?", help="the tool (optional with --says)")
    ts.add_argument("--args", metavar="JSON", help="the call's arguments, a JSON object")
    ts.add_argument("--says", metavar="TEXT", help="what a person types: the aliases make the call")
    # Given before or after `show`: SUPPRESS keeps the subcommand's unset default from
    # overwriting what `warden tools --config F show` already parsed.
    ts.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="policy file (default: WARDEN_CONFIG or warden.toml)",
    )
    ts.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the card as Block Kit JSON",
    )
    ts.add_argument("--no-dry-run", action="store_true", help="do not run the tool's dry run")
    ts.add_argument("--requester", default="U0REQUESTER", help="who asks (Slack user id)")
    ts.add_argument("--channel", help="where it is asked (default: a stand-in channel)")
    ts.add_argument("--confidence", type=float, default=1.0, help="the planner's (default 1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        # Every command: a bad environment value (WARDEN_LOG_FORMAT too) is a clear error,
        # not a traceback; then every log line goes through Warden's handler (handlers/logs.py).
        configure_logging(_settings().warden_log_format, verbose=args.verbose)
        return int(args.func(args))
    except ConfigError as exc:
        sep = "\n" if "\n" in str(exc) else " "
        print(f"warden: configuration error:{sep}{exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        print(f"warden: configuration error: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
