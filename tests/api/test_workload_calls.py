"""A Workload's ``spec.calls``: absent is None (every service), present (even empty) is
the tuple of names, and its schema errors name the field."""

from __future__ import annotations

import pytest
from one_workload import load, web, workload


def test_absent_means_every_service() -> None:
    w = web()
    assert w.calls is None
    assert w.may_call("anything")


def test_empty_means_none() -> None:
    w = web("calls", "[]")
    assert w.calls == ()
    assert not w.may_call("web")


PAYMENTS = (
    "---\n"
    "apiVersion: gossamer.dev/v1alpha1\n"
    "kind: ExternalService\n"
    "metadata: {name: payments}\n"
    "spec:\n"
    "  hosts: [payments.example.com]\n"
    "  ports: [{port: 80, protocol: http}]\n"
)


def test_services_and_external_services_are_kept_in_order() -> None:
    config, problems = load(workload("calls", "[payments, web]") + PAYMENTS)
    assert config is not None, problems
    w = config.workload("web")
    assert w is not None
    assert w.calls == ("payments", "web")
    assert w.may_call("payments")
    assert not w.may_call("stock")


def test_an_unknown_name_is_gsm0130_with_a_hint() -> None:
    config, problems = load(workload("calls", "[paymnets]") + PAYMENTS)
    assert config is None
    assert [(p.code, p.field, p.hint) for p in problems] == [
        ("GSM0130", "spec.calls[0]", "did you mean `payments`?")
    ]


@pytest.mark.parametrize(
    ("calls", "field", "message"),
    [
        ("[Orders]", "spec.calls[0]", "String should match pattern"),
        ("[web, web]", "spec.calls", "listed more than once: web"),
        ("orders", "spec.calls", "Input should be a valid list"),
    ],
)
def test_invalid_values_name_the_field(calls: str, field: str, message: str) -> None:
    config, problems = load(workload("calls", calls))
    assert config is None
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.code, problem.resource, problem.field) == ("GSM0005", "Workload/web", field)
    assert message in problem.message, problem.message
