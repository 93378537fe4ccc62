"""A Workload's ``spec.shutdown``: its defaults, what it becomes in the model, its errors,
and that it changes no proxy's config."""

from __future__ import annotations

import pytest
from one_workload import FILE, load, web, workload

from gossamer.model import MeshState, place, sequential_ports
from gossamer.translate import translate


def test_defaults_are_five_seconds_each() -> None:
    w = web()
    assert (w.drain_timeout_ms, w.grace_period_ms) == (5000, 5000)
    assert web("shutdown", "{}") == w


@pytest.mark.parametrize(
    ("shutdown", "drain_ms", "grace_ms"),
    [
        ("{drainTimeout: 30s, gracePeriod: 1m}", 30_000, 60_000),
        ("{drainTimeout: 250ms}", 250, 5000),
        ("{gracePeriod: 1m30s}", 5000, 90_000),
        ("{drainTimeout: 0s, gracePeriod: 0s}", 0, 0),
        ("{drainTimeout: 10m, gracePeriod: 10m}", 600_000, 600_000),
    ],
)
def test_durations_become_milliseconds(shutdown: str, drain_ms: int, grace_ms: int) -> None:
    w = web("shutdown", shutdown)
    assert (w.drain_timeout_ms, w.grace_period_ms) == (drain_ms, grace_ms)


@pytest.mark.parametrize(
    ("shutdown", "field", "message"),
    [
        (
            "{drainTimeout: 5x}",
            "spec.shutdown.drainTimeout",
            "`5x` is not a duration; expected forms like 10s, 1m30s or 250ms (units h, m, s, ms)",
        ),
        (
            "{gracePeriod: -1s}",
            "spec.shutdown.gracePeriod",
            "`-1s` is not a duration; expected forms like 10s, 1m30s or 250ms (units h, m, s, ms)",
        ),
        (
            "{drainTimeout: 1h}",
            "spec.shutdown.drainTimeout",
            "drainTimeout must be at most 10m, not 1h",
        ),
        (
            "{gracePeriod: 10m1s}",
            "spec.shutdown.gracePeriod",
            "gracePeriod must be at most 10m, not 10m1s",
        ),
        ("{drainTimeout: 5}", "spec.shutdown.drainTimeout", "Input should be a valid string"),
    ],
)
def test_invalid_values_name_the_field(shutdown: str, field: str, message: str) -> None:
    config, problems = load(workload("shutdown", shutdown))
    assert config is None
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.code, problem.file, problem.resource, problem.field) == (
        "GSM0005",
        FILE,
        "Workload/web",
        field,
    )
    assert problem.message.startswith(message), problem.message


def test_unknown_field_is_an_error_with_the_allowed_ones() -> None:
    config, problems = load(workload("shutdown", "{drain: 5s}"))
    assert config is None
    assert [(p.field, p.message, p.hint) for p in problems] == [
        (
            "spec.shutdown.drain",
            "unknown field `drain`",
            "allowed fields here: drainTimeout, gracePeriod",
        )
    ]


def test_shutdown_settings_change_no_proxy_config() -> None:
    """They only tell `gossamer up` how to stop an instance: Envoy never sees them."""

    def snapshot(shutdown: str) -> str:
        config, problems = load(workload("shutdown", shutdown))
        assert config is not None, problems
        state = MeshState(config, place(config, None, sequential_ports(20000)))
        return translate(state, "web-0").version

    assert snapshot("") == snapshot("{drainTimeout: 1m, gracePeriod: 0s}")
