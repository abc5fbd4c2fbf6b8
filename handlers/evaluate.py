"""`warden eval CASES…`: evaluation suites through the production path (bot/evaluation.py).

    warden eval [--policy FILE]... [--model alias|replay|live] [--record]
                [--baseline FILE] [--json FILE] [--junit FILE] [--thresholds FILE] CASES...

CASES are TOML suites (`evals/*.toml`) or Python modules whose `cases()` returns cases
(`evals/injections.py`). One `--policy` runs every suite under that policy instead of its
own `[suite] policy`; two (`--policy OLD --policy NEW`) is a policy review: every case runs
under both and only the cases whose decision changes are printed.

Exit status: 0 when every suite meets its threshold (`evals/thresholds.toml`, else every case
must pass) and, with `--baseline`, no case that passed there fails now; 1 otherwise; a policy
review exits 1 only when a case could not be evaluated.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bot.errors import ConfigError
from bot.eval_cases import load_suite
from bot.eval_reports import (
    baseline_report,
    decision_changes,
    describe_decision,
    junit_xml,
    load_baseline,
    load_thresholds,
    regressions,
    report_json,
)
from bot.evaluation import SuiteResult, run_suite
from bot.settings import Settings

DEFAULT_THRESHOLDS = Path("evals/thresholds.toml")


def run_eval(
    settings: Settings,
    cases: Sequence[str],
    *,
    policies: Sequence[str] = (),
    model: str = "alias",
    record: bool = False,
    baseline: str | None = None,
    json_path: str | None = None,
    junit_path: str | None = None,
    thresholds: str | None = None,
    concurrency: int = 4,
    console: Console | None = None,
) -> int:
    console = console or Console()
    if len(policies) > 2:
        raise ConfigError("--policy: give one policy, or two (OLD NEW) to review a change")
    if len(policies) == 2 and (record or baseline or json_path or junit_path or thresholds):
        raise ConfigError(
            "a policy review (--policy OLD --policy NEW) prints the decisions that change; "
            "--record, --baseline, --json, --junit and --thresholds apply to a normal run"
        )
    for option, target in (("--json", json_path), ("--junit", junit_path)):
        if target and not Path(target).resolve().parent.is_dir():
            raise ConfigError(f"{option} {target}: its directory does not exist")
    # Read what the run will be judged by before running anything, so a typo costs nothing.
    limits = load_thresholds(
        Path(thresholds) if thresholds else DEFAULT_THRESHOLDS, required=thresholds is not None
    )
    before = load_baseline(Path(baseline)) if baseline else None
    suites = [load_suite(c) for c in cases]
    if len(policies) == 2:
        return _review(settings, suites, policies, model, concurrency, console)
    policy = policies[0] if policies else None
    results = [
        run_suite(
            s, settings, policy_file=policy, model=model, record=record, concurrency=concurrency
        )
        for s in suites
    ]
    for result in results:
        _print_suite(result, console, before)
    if json_path:
        Path(json_path).write_text(json.dumps(report_json(results), indent=1) + "\n")
    if junit_path:
        Path(junit_path).write_bytes(junit_xml(results))
    problems = regressions(results, before, limits)
    passed = sum(r.passed for r in results)
    total = sum(len(r.cases) for r in results)
    console.print(f"{passed} of {total} cases passed", highlight=False)
    if problems:
        console.print("[bold red]Regressions:[/]")
        for problem in problems:
            console.print(f"  {problem}", markup=False, highlight=False)
        return 1
    return 0


def _print_suite(result: SuiteResult, console: Console, before: dict[str, object] | None) -> None:
    stamp = (
        f"suite {result.suite.name} · policy {result.policy_version} ({result.policy_file}) · "
        f"prompt {result.prompt_hash} · model {result.model}"
    )
    console.print(stamp, style="bold", markup=False, highlight=False)
    old = baseline_report(before, result.suite.name) if before else None
    result.report.print(console=console, baseline=old, include_durations=False)
    table = Table(title=f"{result.suite.name}: {result.passed} of {len(result.cases)} passed")
    for column in ("case", "result", "observed", "why"):
        table.add_column(column, overflow="fold")
    for case in result.cases:
        out = case.observed
        seen = describe_decision(out.decision()) if out else "error"
        table.add_row(
            case.name,
            "[green]PASS[/]" if case.passed else "[red]FAIL[/]",
            seen,
            "; ".join(case.reasons),
        )
    console.print(table)


def _review(
    settings: Settings,
    suites: Sequence[object],
    policies: Sequence[str],
    model: str,
    concurrency: int,
    console: Console,
) -> int:
    old_file, new_file = policies
    runs: list[list[SuiteResult]] = []
    for policy in (old_file, new_file):
        runs.append(
            [
                run_suite(s, settings, policy_file=policy, model=model, concurrency=concurrency)  # type: ignore[arg-type]
                for s in suites
            ]
        )
    old, new = runs
    versions = f"{old[0].policy_version} → {new[0].policy_version}" if old else ""
    changes = decision_changes(old, new)
    total = sum(len(r.cases) for r in new)
    table = Table(title=f"Policy review {old_file} → {new_file} ({versions})")
    for column in ("suite", "case", "old", "new"):
        table.add_column(column, overflow="fold")
    for change in changes:
        table.add_row(
            change.suite,
            change.case,
            describe_decision(change.old),
            describe_decision(change.new),
        )
    if changes:
        console.print(table)
    console.print(
        f"{len(changes)} of {total} cases change their decision", markup=False, highlight=False
    )
    errors = [
        f"{r.suite.name} / {c.name}: {c.error}"
        for run in runs
        for r in run
        for c in r.cases
        if c.error is not None
    ]
    for error in errors:
        print(f"warden: case could not be evaluated: {error}", file=sys.stderr)
    return 1 if errors else 0
