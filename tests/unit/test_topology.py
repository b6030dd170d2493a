"""The topology as the contract's table of queues, and the settings."""

from __future__ import annotations

import string

import pytest

from shared.events import CATALOGUE
from shared.settings import ConfigError, Settings
from shared.topology import TOPOLOGY, physical, safe_group_id

QUEUES = {  # name -> (fifo, maxReceiveCount, visibility, DLQ), as the contract has them
    "notifications": (False, 5, 30, "notifications-dlq"),
    "analytics": (False, 5, 30, "analytics-dlq"),
    "payment-requests.fifo": (True, 3, 60, "payment-requests-dlq.fifo"),
    "enrollment-payment-results.fifo": (True, 5, 60, "enrollment-payment-results-dlq.fifo"),
    "assignment-submissions.fifo": (True, 5, 300, "assignment-submissions-dlq.fifo"),
}
NOTIFYING = {"student.registered", "enrollment.confirmed", "enrollment.cancelled",
             "payment.refunded", "submission.graded"}
DATA = {"student_id": "s1", "enrollment_id": "e1", "assignment_id": "a1"}


@pytest.mark.parametrize(("env", "name", "expected"), [
    ("dev", "notifications", "dev-notifications"),
    ("t1a2b", "school-events", "t1a2b-school-events"),
    ("ci-7", "payment-requests-dlq.fifo", "ci-7-payment-requests-dlq.fifo"),
])
def test_physical_names_are_env_dash_name(env: str, name: str, expected: str) -> None:
    assert physical(env, name) == expected


def test_the_topic_is_school_events() -> None:
    assert TOPOLOGY.topic.name == "school-events"


def test_queues_match_the_contract() -> None:
    table = {q.name: (q.fifo, q.max_receive_count, q.visibility_timeout, q.dlq_name)
             for q in TOPOLOGY.queues}
    assert table == QUEUES


@pytest.mark.parametrize(("queue", "group"), [
    ("payment-requests.fifo", "s1"),
    ("enrollment-payment-results.fifo", "e1"),
    ("assignment-submissions.fifo", "a1:s1"),
    ("notifications", None),
    ("analytics", None),
])
def test_group_ids_come_from_the_event_data(queue: str, group: str | None) -> None:
    assert TOPOLOGY.queue(queue).group_id(DATA) == group


def test_a_students_submissions_to_two_assignments_are_different_groups() -> None:
    submissions = TOPOLOGY.queue("assignment-submissions.fifo")
    first = submissions.group_id({"assignment_id": "a1", "student_id": "s1"})
    other = submissions.group_id({"assignment_id": "a2", "student_id": "s1"})
    assert first != other


def test_notifications_are_filtered_to_the_events_that_notify() -> None:
    notifications = TOPOLOGY.queue("notifications")
    assert notifications.subscribed and not notifications.fifo
    assert set(notifications.filter_events or ()) == NOTIFYING


def test_analytics_receives_every_event() -> None:
    analytics = TOPOLOGY.queue("analytics")
    assert analytics.subscribed and analytics.filter_events is None


def test_fifo_queues_are_not_subscribed_to_the_topic() -> None:
    assert [q.name for q in TOPOLOGY.queues if q.subscribed] == ["notifications", "analytics"]


def test_direct_destinations_route_events_to_their_fifo_queue() -> None:
    routes = {e: [q.name for q in TOPOLOGY.direct_destinations(e)]
              for e in CATALOGUE.event_types()}
    assert {e: r for e, r in routes.items() if r} == {
        "charge.requested": ["payment-requests.fifo"],
        "contact.recorded": ["notifications"],
        "refund.requested": ["payment-requests.fifo"],
        "payment.succeeded": ["enrollment-payment-results.fifo"],
        "payment.failed": ["enrollment-payment-results.fifo"],
        "payment.refunded": ["enrollment-payment-results.fifo"],
        "submission.received": ["assignment-submissions.fifo"],
    }


def test_what_carries_a_token_or_a_contact_is_private_to_its_queue() -> None:
    """Data protection: the topic, and so the analytics queue, sees neither."""
    private = {e for e in CATALOGUE.event_types() if not TOPOLOGY.published(e)}
    assert private == {"charge.requested", "contact.recorded"}
    assert TOPOLOGY.queue("payment-requests.fifo").private == ("charge.requested",)
    assert TOPOLOGY.queue("notifications").private == ("contact.recorded",)
    assert set(TOPOLOGY.on_topic(CATALOGUE.event_types())) == set(
        CATALOGUE.event_types()) - private


def test_each_queue_is_consumed_by_its_service() -> None:
    consumers = {s: [q.name for q in TOPOLOGY.consumed_by(s)]
                 for s in ("enrollment", "payment", "assignment", "notification", "analytics")}
    assert consumers == {"enrollment": ["enrollment-payment-results.fifo"],
                         "payment": ["payment-requests.fifo"],
                         "assignment": ["assignment-submissions.fifo"],
                         "notification": ["notifications"], "analytics": ["analytics"]}


@pytest.mark.parametrize(("name", "queue"), [(dlq, q) for q, (_, _, _, dlq) in QUEUES.items()])
def test_a_dlq_name_finds_its_queue(name: str, queue: str) -> None:
    assert TOPOLOGY.queue(name).name == queue


def test_an_unknown_queue_is_a_key_error_listing_the_known_ones() -> None:
    with pytest.raises(KeyError) as caught:
        TOPOLOGY.queue("nope")
    assert "'nope'" in str(caught.value)
    assert all(name in str(caught.value) for name in QUEUES)


def test_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.school_env, settings.db, settings.aws_region) == ("dev", "sqlite",
                                                                       "us-east-1")
    assert (settings.pg_host, settings.pg_port, settings.smtp_port) == ("127.0.0.1", 5432, 1025)
    assert (settings.backoff_base, settings.consumer_concurrency) == (2.0, None)
    assert settings.aws_endpoint_url is None and settings.log_level == "INFO"


def test_settings_read_the_environment() -> None:
    settings = Settings.from_env({"DB": "postgres", "SCHOOL_ENV": "ci-7", "PGPORT": "6543",
                                  "SCHOOL_BACKOFF_BASE": "0.5", "LOG_LEVEL": "debug"})
    assert (settings.db, settings.school_env, settings.pg_port) == ("postgres", "ci-7", 6543)
    assert (settings.backoff_base, settings.log_level) == (0.5, "DEBUG")


@pytest.mark.parametrize("db", ["mysql", "SQLite", "postgresql"])
def test_settings_refuse_an_unknown_database(db: str) -> None:
    with pytest.raises(ConfigError, match="DB must be"):
        Settings.from_env({"DB": db})


@pytest.mark.parametrize(("name", "value"), [
    ("SCHOOL_BACKOFF_BASE", "soon"), ("SCHOOL_BACKOFF_CAP", "-1"), ("PGPORT", "five"),
    ("SMTP_PORT", "-25"), ("SCHOOL_SHUTDOWN_DEADLINE", "20s"),
])
def test_settings_refuse_a_bad_number(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(("name", "value"), [
    ("SCHOOL_BACKOFF_BASE", "nan"), ("PGPORT", "nan"), ("PGPORT", "inf"),
])
def test_settings_refuse_a_number_that_is_not_finite(name: str, value: str) -> None:
    """BUG (shared/settings.py _number): float() accepts 'nan' and 'inf'; NaN passes the
    negative check, and int() of either raises a bare ValueError / OverflowError."""
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("env", ["has spaces", "a_b", "x" * 21, "dév"])
def test_settings_refuse_an_env_that_cannot_name_a_queue(env: str) -> None:
    """'dév' is a BUG (shared/settings.py from_env): str.isalnum() accepts non-ASCII letters,
    which SQS and SNS names do not allow."""
    with pytest.raises(ConfigError, match="SCHOOL_ENV"):
        Settings.from_env({"SCHOOL_ENV": env})


@pytest.mark.parametrize("raw", ["Jane Doe", "élève", "a\tb", "", "x" * 129, "a%20b c",
                                 "a:" + "é" * 200])
def test_every_group_id_is_valid_by_construction(raw: str) -> None:
    """A regression: a student_id such as `Jane Doe` became a MessageGroupId SQS always refuses."""
    group = safe_group_id(raw)
    assert 1 <= len(group) <= 128
    assert all(c.isascii() and (c.isalnum() or c in string.punctuation) for c in group), group
    assert safe_group_id(raw) == group  # stable: the same student always in the same group


def test_a_valid_group_id_is_kept_as_it_is() -> None:
    assert safe_group_id("a1b2:stu-9") == "a1b2:stu-9"
    spec = TOPOLOGY.queue("assignment-submissions.fifo")
    assert spec.group_id({"assignment_id": "a1", "student_id": "Jane Doe"}) == "a1:Jane%20Doe"
    assert safe_group_id("x" * 200) != safe_group_id("x" * 199 + "y")  # the digest tells apart
