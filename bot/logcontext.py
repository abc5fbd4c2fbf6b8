"""Which request, action and trace a log line is about.

The ids live in a context variable, set where a request or an action is being handled:
intake of an event, a planner's work on one request, the executor's run, undo or dry run,
the delivery of an outbox row, a click on a card. `handlers/logs.py` adds them to every
line (`ids()`); nothing here configures logging.

    with bound(request_id=req.id, trace_id=req.trace_id, owner=core.owner):
        ...                       # every line logged here carries those ids

A function that learns an id part-way (a planner only knows the trace once it has claimed
the request) runs in a `scoped` block and calls `bind` when it knows more; the block puts
everything back as it was when it ends, so nothing leaks to the next task a pool thread runs.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import ParamSpec, TypeVar

FIELDS = ("trace_id", "request_id", "action_id", "owner")
"""The ids a log line may carry, in the order text lines show them."""

_EMPTY: Mapping[str, str] = MappingProxyType({})
# None: no `bound` / `scoped` block is active on this thread (then `bind` changes nothing).
_IDS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "warden_log_ids", default=None
)

P = ParamSpec("P")
R = TypeVar("R")


def ids() -> Mapping[str, str]:
    """The ids known where this is called (empty outside any bound block)."""
    return _IDS.get() or _EMPTY


def _merged(values: Mapping[str, str | None]) -> Mapping[str, str]:
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    merged = dict(ids())
    merged.update({k: str(v) for k, v in values.items() if v})
    return MappingProxyType(merged)


@contextmanager
def bound(
    *,
    trace_id: str | None = None,
    request_id: str | None = None,
    action_id: str | None = None,
    owner: str | None = None,
) -> Iterator[None]:
    """Add ids for the duration of the block (None leaves an id as it was)."""
    token = _IDS.set(
        _merged(
            {"trace_id": trace_id, "request_id": request_id, "action_id": action_id, "owner": owner}
        )
    )
    try:
        yield
    finally:
        _IDS.reset(token)


def bind(
    *,
    trace_id: str | None = None,
    request_id: str | None = None,
    action_id: str | None = None,
    owner: str | None = None,
) -> None:
    """Add ids until the enclosing `bound` / `scoped` block ends; outside one, do nothing
    (an id set for good would be carried by unrelated work on the same thread)."""
    if _IDS.get() is None:
        return
    _IDS.set(
        _merged(
            {"trace_id": trace_id, "request_id": request_id, "action_id": action_id, "owner": owner}
        )
    )


def scoped(func: Callable[P, R]) -> Callable[P, R]:
    """Run `func` in its own block: ids it `bind`s are gone when it returns."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with bound():
            return func(*args, **kwargs)

    return wrapper
