"""The payment service's rules through its handlers and commands: a charge per enrollment, its
result as an event, refunds of succeeded payments only (in-memory SQLite, a fake gateway)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.payment import commands, domain
from services.payment.gateway import GatewayUnavailable, Result
from services.payment.service import SERVICE
from services.payment.tables import payments
from shared.errors import NotFound
from shared.handling import PermanentError
from tests.support.fakes import (
    FakeGateway,
    FakeProducer,
    event,
    handle,
    transaction,
)

CORR = "corr-payment"


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


def requested(enrollment_id: str = "enr-1", token: str = "tok_ok") -> Any:
    return event("charge.requested", {
        "enrollment_id": enrollment_id, "student_id": "stu-1", "course_id": "crs-1",
        "amount_cents": 4990, "currency": "EUR", "payment_token": token}, correlation_id=CORR)


def refund(enrollment_id: str = "enr-1") -> Any:
    return event("refund.requested", {"enrollment_id": enrollment_id, "student_id": "stu-1",
                                      "amount_cents": 4990, "currency": "EUR"},
                 correlation_id=CORR)


def rows(engine: Engine) -> list[Any]:
    with transaction(engine) as session:
        return list(session.execute(select(payments)).all())


def test_a_successful_charge_stores_the_payment_and_emits_payment_succeeded(
        engine: Engine, producer: FakeProducer, gateway: FakeGateway) -> None:
    incoming = requested()
    handle(SERVICE, engine, incoming, producer, gateway)
    assert gateway.calls == [("charge", domain.charge_key("enr-1"), "tok_ok", 4990)]
    [row] = rows(engine)
    assert (row.enrollment_id, row.student_id, row.amount_cents, row.currency, row.status,
            row.failure_reason) == ("enr-1", "stu-1", 4990, "EUR", domain.SUCCEEDED, None)
    succeeded = producer.only("payment.succeeded")
    assert succeeded.data == {"payment_id": row.id, "enrollment_id": "enr-1",
                              "student_id": "stu-1", "amount_cents": 4990, "currency": "EUR"}
    assert (succeeded.correlation_id, succeeded.causation_id) == (CORR, incoming.event_id)


def test_a_declined_charge_stores_the_failure_and_emits_payment_failed(
        engine: Engine, producer: FakeProducer) -> None:
    gateway = FakeGateway(result=Result("declined", "card_declined"))
    handle(SERVICE, engine, requested(token="tok_declined"), producer, gateway)
    [row] = rows(engine)
    assert (row.status, row.failure_reason) == (domain.FAILED, "card_declined")
    assert producer.types == ["payment.failed"]
    assert producer.only("payment.failed").data == {
        "payment_id": row.id, "enrollment_id": "enr-1", "student_id": "stu-1",
        "reason": "card_declined"}


def test_a_second_request_for_the_same_enrollment_does_not_charge_again(
        engine: Engine, producer: FakeProducer, gateway: FakeGateway) -> None:
    handle(SERVICE, engine, requested(), producer, gateway)
    handle(SERVICE, engine, requested(), producer, gateway)  # another event, same enrollment
    assert len(gateway.calls) == 1
    assert len(rows(engine)) == 1
    assert producer.types == ["payment.succeeded"]


def test_each_enrollment_is_charged_once(engine: Engine, producer: FakeProducer,
                                         gateway: FakeGateway) -> None:
    handle(SERVICE, engine, requested("enr-1"), producer, gateway)
    handle(SERVICE, engine, requested("enr-2"), producer, gateway)
    assert [call[1] for call in gateway.calls] == [domain.charge_key("enr-1"),
                                                   domain.charge_key("enr-2")]
    assert sorted(row.enrollment_id for row in rows(engine)) == ["enr-1", "enr-2"]


def test_an_unavailable_gateway_propagates_and_leaves_nothing(
        engine: Engine, producer: FakeProducer) -> None:
    gateway = FakeGateway(unavailable=True)
    with pytest.raises(GatewayUnavailable):
        handle(SERVICE, engine, requested(), producer, gateway)
    assert rows(engine) == []
    assert producer.emitted == []
    gateway.unavailable = False  # the retry, once the gateway is back, charges it
    handle(SERVICE, engine, requested(), producer, gateway)
    assert [row.status for row in rows(engine)] == [domain.SUCCEEDED]
    assert gateway.attempts(domain.charge_key("enr-1")) == 2


def test_a_refund_of_a_succeeded_payment_refunds_it_and_emits_payment_refunded(
        engine: Engine, producer: FakeProducer, gateway: FakeGateway) -> None:
    handle(SERVICE, engine, requested(), producer, gateway)
    incoming = refund()
    handle(SERVICE, engine, incoming, producer, gateway)
    assert gateway.calls[-1] == ("refund", domain.refund_key("enr-1"), None, 4990)
    [row] = rows(engine)
    assert row.status == domain.REFUNDED
    refunded = producer.only("payment.refunded")
    assert refunded.data == {"payment_id": row.id, "enrollment_id": "enr-1",
                             "student_id": "stu-1", "amount_cents": 4990, "currency": "EUR"}
    assert refunded.causation_id == incoming.event_id


@pytest.mark.parametrize("charged", [None, "declined", "refunded"])
def test_a_refund_without_a_succeeded_payment_is_permanent(
        engine: Engine, producer: FakeProducer, gateway: FakeGateway,
        charged: str | None) -> None:
    if charged == "declined":
        gateway.result = Result("declined", "card_declined")
    if charged is not None:
        handle(SERVICE, engine, requested(), producer, gateway)
    if charged == "refunded":
        handle(SERVICE, engine, refund(), producer, gateway)
    before, calls = list(producer.types), len(gateway.calls)
    with pytest.raises(PermanentError, match="enr-1"):
        handle(SERVICE, engine, refund(), producer, gateway)
    assert len(gateway.calls) == calls  # the gateway was not asked
    assert producer.types == before


def test_get_payment_shows_the_gateway_attempts(engine: Engine, producer: FakeProducer,
                                                gateway: FakeGateway) -> None:
    handle(SERVICE, engine, requested(), producer, gateway)
    handle(SERVICE, engine, refund(), producer, gateway)
    [row] = rows(engine)
    with transaction(engine) as session:
        found = commands.get_payment(session, gateway, row.id)
        listed = commands.list_payments(session, gateway, "enr-1")
    assert (found["id"], found["status"], found["gateway_attempts"]) == (
        row.id, domain.REFUNDED, 2)
    assert listed == [found]


def test_an_unknown_payment_is_not_found(engine: Engine, gateway: FakeGateway) -> None:
    with pytest.raises(NotFound, match="no-such-payment"), transaction(engine) as session:
        commands.get_payment(session, gateway, "no-such-payment")
    with transaction(engine) as session:
        assert commands.list_payments(session, gateway, "enr-1") == []
