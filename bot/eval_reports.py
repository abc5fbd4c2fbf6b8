"""Evaluation reports: JSON and JUnit, baselines and thresholds (what fails a run), and the
policy review (which cases' decisions change between two policies). See bot/evaluation.py."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from pydantic import ValidationError
from pydantic_evals.reporting import EvaluationReport, EvaluationReportAdapter

from bot.errors import ConfigError
from bot.eval_cases import REPORT_VERSION
from bot.evaluation import CaseResult, SuiteResult


def report_json(results: Sequence[SuiteResult]) -> dict[str, Any]:
    return {"warden_eval": REPORT_VERSION, "suites": [r.to_json() for r in results]}


def junit_xml(results: Sequence[SuiteResult]) -> bytes:
    """JUnit XML: one testsuite per suite, one testcase per case, the reason as the
    failure's message."""
    root = ElementTree.Element("testsuites", name="warden eval")
    for result in results:
        errors = sum(c.error is not None for c in result.cases)
        failures = sum(not c.passed and c.error is None for c in result.cases)
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=result.suite.name,
            tests=str(len(result.cases)),
            failures=str(failures),
            errors=str(errors),
        )
        props = ElementTree.SubElement(suite, "properties")
        for key in ("policy_version", "prompt_hash", "model"):
            ElementTree.SubElement(props, "property", name=key, value=str(getattr(result, key)))
        durations = {c.name: c.task_duration for c in result.report.cases}
        for case in result.cases:
            node = ElementTree.SubElement(
                suite,
                "testcase",
                classname=result.suite.name,
                name=case.name,
                time=f"{durations.get(case.name, 0.0):.3f}",
            )
            if case.passed:
                continue
            message = "; ".join(case.reasons)
            kind = "error" if case.error is not None else "failure"
            failure = ElementTree.SubElement(node, kind, message=message)
            failure.text = "\n".join(case.reasons)
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))


# -- baselines and thresholds ----------------------------------------------------------------


def load_thresholds(path: Path, *, required: bool = False) -> dict[str, float]:
    """`[suite.NAME] min_pass_rate = 0.9` per suite; `[default] min_pass_rate`. A file
    named on the command line (`required`) must exist; the default one may not."""
    if not path.is_file():
        if required:
            raise ConfigError(f"{path}: no such thresholds file")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None

    def rate(value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ConfigError(f"{path}: {key} must be a number from 0 to 1, not {value!r}")
        return float(value)

    unknown = set(data) - {"default", "suite"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys: {', '.join(sorted(unknown))}")
    default, suites = data.get("default", {}), data.get("suite", {})
    if not isinstance(default, dict) or not isinstance(suites, dict):
        raise ConfigError(f"{path}: [default] and [suite.NAME] must be tables")
    out: dict[str, float] = {}
    if "min_pass_rate" in default:
        out["*"] = rate(default["min_pass_rate"], "default.min_pass_rate")
    for name, table in suites.items():
        if not isinstance(table, dict) or "min_pass_rate" not in table:
            raise ConfigError(f"{path}: suite.{name} needs min_pass_rate")
        out[str(name)] = rate(table["min_pass_rate"], f"suite.{name}.min_pass_rate")
    return out


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the baseline: {exc}") from None
    suites = data.get("suites") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("warden_eval") != REPORT_VERSION
        or not isinstance(suites, list)
        or not all(
            isinstance(s, dict)
            and isinstance(s.get("cases"), list)
            and all(isinstance(c, dict) for c in s["cases"])
            for s in suites
        )
    ):
        raise ConfigError(f"{path}: not a `warden eval --json` report")
    return data


def baseline_report(
    baseline: Mapping[str, Any], suite: str
) -> EvaluationReport[Any, Any, Any] | None:
    """The baseline's pydantic-evals report of `suite`, for the report's diff columns."""
    for entry in baseline.get("suites", []):
        if entry.get("name") == suite and entry.get("report"):
            try:
                return EvaluationReportAdapter.validate_python(entry["report"])
            except ValidationError:
                return None
    return None


def regressions(
    results: Sequence[SuiteResult],
    baseline: Mapping[str, Any] | None,
    thresholds: Mapping[str, float],
) -> list[str]:
    """Why this run must fail: cases that passed in the baseline and fail now, and suites
    whose pass rate is below their threshold (1.0 when none is set)."""
    problems: list[str] = []
    before: dict[tuple[str, str], bool] = {}
    for entry in (baseline or {}).get("suites", []):
        for case in entry.get("cases", []):
            before[(str(entry.get("name")), str(case.get("name")))] = bool(case.get("passed"))
    for result in results:
        name = result.suite.name
        if baseline is not None:
            for case in result.cases:
                if before.get((name, case.name)) and not case.passed:
                    problems.append(
                        f"{name} / {case.name}: passed in the baseline, fails now: "
                        + "; ".join(case.reasons)
                    )
        floor = thresholds.get(name, thresholds.get("*", 1.0))
        if result.pass_rate < floor:
            problems.append(
                f"{name}: pass rate {result.pass_rate:.1%} is below its threshold {floor:.1%}"
            )
    return problems


# -- policy review ---------------------------------------------------------------------------


@dataclass(kw_only=True, frozen=True)
class Change:
    suite: str
    case: str
    old: dict[str, Any]
    new: dict[str, Any]


def _decision_of(case: CaseResult) -> dict[str, Any]:
    if case.observed is None:
        return {"outcome": "error"}
    return case.observed.decision()


def decision_changes(old: Sequence[SuiteResult], new: Sequence[SuiteResult]) -> list[Change]:
    """The cases whose decision (outcome, tool, tier, approvers, approvals) differs."""
    changes: list[Change] = []
    for before, after in zip(old, new, strict=True):
        then = {c.name: c for c in before.cases}
        for case in after.cases:
            a, b = _decision_of(then[case.name]), _decision_of(case)
            if a != b:
                changes.append(Change(suite=after.suite.name, case=case.name, old=a, new=b))
    return changes


def describe_decision(decision: Mapping[str, Any]) -> str:
    outcome = str(decision.get("outcome"))
    if not decision.get("tool"):
        return outcome
    text = f"{outcome} {decision['tool']}"
    if decision.get("tier"):
        text += f" ({decision['tier']})"
    if outcome == "card":
        text += f", {decision.get('approvals')} of {', '.join(decision.get('approvers') or [])}"
    return text
