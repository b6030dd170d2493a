"""The topology as the contract's table (DESIGN section 3), and the settings."""

from __future__ import annotations

import pytest

from shared.settings import ConfigError, Settings
from shared.topology import TOPOLOGY, physical


def test_queues_match_the_contract() -> None:
    table = {q.name: (q.fifo, q.max_receive_count, q.visibility_timeout, q.dlq_name)
             for q in TOPOLOGY.queues}
    assert table == {
        "notifications": (False, 5, 30, "notifications-dlq"),
        "analytics": (False, 5, 30, "analytics-dlq"),
        "payment-requests.fifo": (True, 3, 60, "payment-requests-dlq.fifo"),
        "enrollment-payment-results.fifo": (True, 5, 60, "enrollment-payment-results-dlq.fifo"),
        "assignment-submissions.fifo": (True, 5, 300, "assignment-submissions-dlq.fifo"),
    }
    assert TOPOLOGY.topic.name == "school-events"
    assert physical("dev", "notifications") == "dev-notifications"


def test_group_ids_come_from_the_event_data() -> None:
    data = {"student_id": "s1", "enrollment_id": "e1", "assignment_id": "a1"}
    groups = {q.name: q.group_id(data) for q in TOPOLOGY.queues}
    assert groups == {"notifications": None, "analytics": None,
                      "payment-requests.fifo": "s1", "enrollment-payment-results.fifo": "e1",
                      "assignment-submissions.fifo": "a1:s1"}


def test_subscriptions_and_routes() -> None:
    notifications, analytics = TOPOLOGY.queue("notifications"), TOPOLOGY.queue("analytics")
    assert notifications.subscribed and analytics.subscribed and analytics.filter_events is None
    assert set(notifications.filter_events or ()) == {
        "student.registered", "enrollment.confirmed", "enrollment.cancelled",
        "payment.refunded", "submission.graded"}
    routes = {e: [q.name for q in TOPOLOGY.direct_destinations(e)]
              for e in ("enrollment.requested", "refund.requested", "payment.failed",
                        "submission.received", "course.created")}
    assert routes == {"enrollment.requested": ["payment-requests.fifo"],
                      "refund.requested": ["payment-requests.fifo"],
                      "payment.failed": ["enrollment-payment-results.fifo"],
                      "submission.received": ["assignment-submissions.fifo"],
                      "course.created": []}


def test_a_dlq_name_finds_its_queue_and_an_unknown_name_is_explained() -> None:
    assert TOPOLOGY.queue("payment-requests-dlq.fifo").name == "payment-requests.fifo"
    with pytest.raises(KeyError, match="known queues: notifications"):
        TOPOLOGY.queue("nope")


def test_settings_defaults_and_bad_values() -> None:
    settings = Settings.from_env({})
    assert (settings.school_env, settings.db, settings.smtp_port) == ("dev", "sqlite", 1025)
    with pytest.raises(ConfigError, match="DB must be"):
        Settings.from_env({"DB": "mysql"})
    with pytest.raises(ConfigError, match="SCHOOL_BACKOFF_BASE must be a number"):
        Settings.from_env({"SCHOOL_BACKOFF_BASE": "soon"})
    with pytest.raises(ConfigError, match="SCHOOL_ENV"):
        Settings.from_env({"SCHOOL_ENV": "has spaces"})
