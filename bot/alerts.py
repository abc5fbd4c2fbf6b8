"""Alerts (`[alerts]`): what an operations team is paged for, posted to the admin channel.

Evaluated each minute by a once-per-deployment job (`bot/jobs.py` `evaluate_alerts`), at
`core.clock()`, from the rates `bot/metrics.py` defines (nothing is computed here):

| rule              | watches                                         | volume                   |
|-------------------|-------------------------------------------------|--------------------------|
| `confidence_drop` | the planner's median confidence, `below`        | proposals not refused    |
| `override_spike`  | the override rate (edits + rejections), `above` | cards people decided     |
| `tool_error_rate` | each tool's failure rate, `above` (one per tool)| that tool's outcomes     |
| `daily_cost`      | the model's cost since midnight UTC, `above_usd`| —                        |

A crossed threshold with at least `min_volume` behind it fires unless the same alert (rule and
subject) fired within its `cooldown`. The cool-down is kept in storage (`Store.fire_alert`, one
conditional upsert on `alert_state`), which writes the `alert.fired` audit row and the admin
channel's message in the same transaction: two replicas evaluating at once post one alert.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core import Core
from bot.gate_text import span_text
from bot.metrics import Report, report

log = logging.getLogger(__name__)


@dataclass(kw_only=True, frozen=True)
class Crossing:
    """A threshold crossed with enough volume: an alert to fire unless it is cooling down."""

    rule: str
    subject: str  # "" (everything) or a tool's name
    value: float
    threshold: float
    window: str  # "1h", "since midnight UTC"
    volume: int
    cooldown: timedelta
    text: str

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.subject}" if self.subject else self.rule


class Alerts:
    def __init__(self, core: Core) -> None:
        self.core = core

    def crossings(self, now: datetime) -> list[Crossing]:
        """Every enabled alert whose threshold is crossed at `now` with enough volume."""
        core = self.core
        policy = core.policy.alerts
        reports: dict[timedelta, Report] = {}

        def over(span: timedelta) -> Report:
            if span not in reports:
                reports[span] = report(core.store, now, span)
            return reports[span]

        out: list[Crossing] = []
        drop = policy.confidence_drop
        if drop.enabled:
            stats = over(drop.window).overall
            volume = stats.proposed - stats.refused
            median = stats.confidence_median
            if median is not None and volume >= drop.min_volume and median < drop.below:
                window = span_text(drop.window)
                out.append(
                    Crossing(
                        rule="confidence_drop",
                        subject="",
                        value=median,
                        threshold=drop.below,
                        window=window,
                        volume=volume,
                        cooldown=drop.cooldown,
                        text=(
                            f":chart_with_downwards_trend: *Confidence drop*: the planner's "
                            f"median confidence was {median:.0%} over the last {window} "
                            f"({volume} proposals), below the {drop.below:.0%} threshold. "
                            f"Look at `/warden stats` for the tools behind it, and at what "
                            "people asked: vague requests or a policy change?"
                        ),
                    )
                )
        spike = policy.override_spike
        if spike.enabled:
            stats = over(spike.window).overall
            rate = stats.override_rate
            if rate is not None and stats.decided_cards >= spike.min_volume and rate > spike.above:
                window = span_text(spike.window)
                out.append(
                    Crossing(
                        rule="override_spike",
                        subject="",
                        value=rate,
                        threshold=spike.above,
                        window=window,
                        volume=stats.decided_cards,
                        cooldown=spike.cooldown,
                        text=(
                            f":rotating_light: *Override spike*: people edited or rejected "
                            f"{rate:.0%} of the cards they decided over the last {window} "
                            f"({stats.overrides} of {stats.decided_cards}), above the "
                            f"{spike.above:.0%} threshold. Look at `/warden stats` for the "
                            "tools behind it, and at the reasons given on rejected cards."
                        ),
                    )
                )
        errors = policy.tool_error_rate
        if errors.enabled:
            window = span_text(errors.window)
            for tool, stats in over(errors.window).tools.items():
                rate = stats.failure_rate
                if rate is None or stats.outcomes < errors.min_volume or rate <= errors.above:
                    continue
                failed = round(rate * stats.outcomes)
                out.append(
                    Crossing(
                        rule="tool_error_rate",
                        subject=tool,
                        value=rate,
                        threshold=errors.above,
                        window=window,
                        volume=stats.outcomes,
                        cooldown=errors.cooldown,
                        text=(
                            f":rotating_light: *Tool error rate*: `{tool}` failed {failed} of "
                            f"its {stats.outcomes} runs ({rate:.0%}) over the last {window}, "
                            f"above the {errors.above:.0%} threshold. Look at "
                            f"`/warden stats {tool}` and at its failed cards."
                        ),
                    )
                )
        cost = policy.daily_cost
        if cost.enabled:
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            usage = core.store.usage_between(midnight, now)
            if usage.cost_usd > cost.above_usd:
                out.append(
                    Crossing(
                        rule="daily_cost",
                        subject="",
                        value=usage.cost_usd,
                        threshold=cost.above_usd,
                        window="since midnight UTC",
                        volume=usage.requests,
                        cooldown=cost.cooldown,
                        text=(
                            f":moneybag: *Daily cost*: the model has cost "
                            f"${usage.cost_usd:,.2f} since midnight UTC ({usage.requests} "
                            f"requests), above the ${cost.above_usd:,.2f} threshold. Look at "
                            "`/warden stats 24h` (cost per successful task, cache share)."
                        ),
                    )
                )
        return out

    def evaluate(self) -> list[str]:
        """Fire every crossed alert that is not cooling down; the keys this call fired."""
        core = self.core
        now = core.clock()
        fired: list[str] = []
        for crossing in self.crossings(now):
            if core.store.fire_alert(
                crossing.key,
                crossing.value,
                now,
                crossing.cooldown,
                policy_version=core.policy.version,
                data={
                    "rule": crossing.rule,
                    "subject": crossing.subject,
                    "value": round(crossing.value, 6),
                    "threshold": crossing.threshold,
                    "window": crossing.window,
                    "volume": crossing.volume,
                },
                notices=[core.to_admins(crossing.text)],
            ):
                log.warning("alert %s fired: %s", crossing.key, crossing.value)
                fired.append(crossing.key)
        if fired:
            core.kick()
        return fired
