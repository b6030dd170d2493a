"""The operations console on a stack of all five services and the console, every
process exporting its spans to it as `make up` has them do: conversations in causal order with
who produced and who handled each event, search, `school trace`, the DLQs with their reasons and
redrive (one message, FIFO order kept; all of a standard DLQ), and the page in a real browser,
signed in through the stack's issuer. Every JSON call is an operator's (a bearer token).

Each process exports its own spans on its own schedule, so what a test reads of a conversation
is polled until the outcome it asserts is there (or the deadline passes): a DLQ listing the
message says nothing yet of the worker's dead-letter span."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from shared.auth import ROLES
from shared.settings import CONSOLE, ROOT, SERVICES
from shared.topology import TOPOLOGY, physical
from tests.support import browser
from tests.support.messages import wait_for
from tests.support.school import School

# The request emits the event (for the topic) and the charge (to payment alone, with the token).
CHAIN = ["enrollment.requested", "charge.requested", "payment.succeeded", "enrollment.confirmed"]
# Where the browser test leaves its screenshots (`make screenshots` sets docs/).
SCREENSHOTS = ROOT / (os.environ.get("CONSOLE_SCREENSHOTS") or "var/console")


@pytest.fixture(scope="module")
def stack(sqs, sns, settings, db_kind, tmp_path_factory, mailbox):  # type: ignore[no-untyped-def]
    from tests.conftest import service_stack
    yield from service_stack((*SERVICES, CONSOLE), "con" + uuid.uuid4().hex[:3], sqs, sns,
                             settings, db_kind, tmp_path_factory, {
                                 "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mailbox.port),
                                 "SCHOOL_BACKOFF_BASE": "1", "SCHOOL_BACKOFF_CAP": "2",
                                 "OTEL_BSP_SCHEDULE_DELAY": "200"})


@pytest.fixture(scope="module")
def school(stack) -> School:  # type: ignore[no-untyped-def]
    return School(stack.urls, token=stack.admin())


@dataclass(frozen=True)
class Console:
    """The console's API, called as an operator with a bearer token."""

    url: str
    token: str

    def call(self, method: str, path: str, timeout: float = 60, **params: Any
             ) -> requests.Response:
        return requests.request(method, f"{self.url}{path}", params=params, timeout=timeout,
                                headers={"Authorization": f"Bearer {self.token}"})

    def get(self, path: str, **params: Any) -> Any:
        response = self.call("GET", path, timeout=30, **params)
        assert response.ok, response.text
        return response.json()

    def post(self, path: str) -> requests.Response:
        return self.call("POST", path)


@pytest.fixture(scope="module")
def console(stack) -> Console:  # type: ignore[no-untyped-def]
    return Console(str(stack.urls[CONSOLE]), stack.token("ops-1", "operator"))


def whole(console: Console, correlation_id: str, last: str, timeout: float = 120,
          until: Callable[[dict[str, Any]], bool] = lambda c: True) -> dict[str, Any]:
    """The conversation once `last` is in it, no consumer of any event is still waiting, every
    message sent has its relay's send span, and `until` holds: the spans of each process
    arrive on its own exporter's schedule, in any order."""
    seen: list[dict[str, Any]] = []

    def found() -> dict[str, Any] | None:
        response = console.call("GET", f"/api/conversations/{correlation_id}", timeout=30)
        if response.status_code == 404:
            return None
        assert response.ok, response.text
        c: dict[str, Any] = response.json()
        seen[:] = [c]
        done = all(h["outcome"] != "waiting" for e in c["events"] for h in e["handlings"])
        sent = all(d["published_ms"] is not None for e in c["events"] for d in e["destinations"])
        # every conversation here starts with a request, whose span may come last
        return c if done and sent and c["request"] and last in {
            e["event_type"] for e in c["events"]} and until(c) else None
    try:
        return wait_for(found, timeout, f"conversation {correlation_id} to end with {last}")
    except TimeoutError as exc:
        last_seen = [(e["event_type"], {h["service"]: attempts(h) for h in e["handlings"]})
                     for e in seen[0]["events"]] if seen else "nothing"
        raise AssertionError(f"{exc}; the console shows {last_seen}") from None


def attempts(handling: dict[str, Any] | None) -> list[str]:
    return [a["outcome"] for a in handling["attempts"]] if handling else []


def payment_of(c: dict[str, Any]) -> dict[str, Any] | None:
    """The payment service's handling of the conversation's charge."""
    charge = next(e for e in c["events"] if e["event_type"] == "charge.requested")
    return next((h for h in charge["handlings"] if h["service"] == "payment"), None)


def handled_by(event: dict[str, Any]) -> dict[str, str]:
    return {h["service"]: h["outcome"] for h in event["handlings"]}


def enrolled(school: School, token: str, student: str | None = None) -> tuple[str, str, str]:
    """(student, enrollment id, correlation id) of a new enrollment paid with `token`."""
    student = student or school.student()
    correlation = str(uuid.uuid4())
    enrollment = school.enroll(student, school.course(), token, correlation_id=correlation)
    return student, enrollment["id"], correlation


def test_a_conversation_in_causal_order_with_who_produced_and_handled_each_event(
        school: School, console: Console) -> None:
    student, enrollment_id, correlation = enrolled(school, "tok_ok")
    school.wait_status(enrollment_id, "active")
    c = whole(console, correlation, "enrollment.confirmed")
    assert [e["event_type"] for e in c["events"]] == CHAIN
    assert [e["producer"] for e in c["events"]] == [
        "enrollment", "enrollment", "payment", "enrollment"]
    assert [e["depth"] for e in c["events"]] == [0, 0, 1, 2]  # the charge's effects below it
    assert [e["caused_by"] for e in c["events"]] == [None, None, *CHAIN[1:3]]
    assert [handled_by(e) for e in c["events"]] == [
        {"analytics": "handled"}, {"payment": "handled"},  # the charge is payment's alone
        {"enrollment": "handled", "analytics": "handled"},
        {"notification": "handled", "analytics": "handled"}]
    assert c["request"]["name"] == "POST /enrollments" and c["request"]["status"] == "202"
    assert c["lanes"] == ["client", *SERVICES[:2], *SERVICES[3:]]  # no assignment in it
    published = [d["published_ms"] for e in c["events"] for d in e["destinations"]]
    assert published and all(ms is not None for ms in published)  # the relay's send spans
    times = [e["offset_ms"] for e in c["events"]]
    assert times == sorted(times)

    for text in (enrollment_id, student, correlation):  # search by any of its ids
        found = console.get("/api/conversations", q=text)
        assert correlation in [s["correlation_id"] for s in found], text
    assert console.get("/api/conversations", q="no-such-id") == []
    assert correlation in [s["correlation_id"] for s in console.get("/api/conversations")]

    operator = os.environ | {"SCHOOL_TOKEN": console.token}  # `school` sends SCHOOL_TOKEN
    printed = subprocess.run([sys.executable, "-m", "shared.cli", "trace", correlation,
                              "--console", console.url], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, env=operator)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[-1] == f"4 event(s): {', '.join(sorted(CHAIN))}"
    hops = [line for line in lines if " by " in line]
    assert [h.split()[-3] for h in hops] == CHAIN  # in causal order, as a tree
    assert all(line.lstrip()[0] in "+-" for line in lines[1:-1])  # every hop has its time
    assert sum("handled in" in line for line in lines) == 6

    missing = subprocess.run([sys.executable, "-m", "shared.cli", "trace", "no-such-id",
                              "--console", console.url], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, env=operator)
    assert missing.returncode == 1 and "no event of conversation" in missing.stderr


def test_a_submission_is_found_by_its_id(school: School, console: Console) -> None:
    """The assignment pipeline's conversation, found by the submission's id: received, then
    graded by the assignment worker, the grade mailed and counted."""
    student = school.student()
    task = school.assignment(course_id=school.course(), title="Queues", max_score=10,
                             keywords=["fifo"])
    submission = school.submit(task, student, "FIFO keeps a group in order.")["id"]
    school.graded(task, student, 1)
    [found] = wait_for(lambda: console.get("/api/conversations", q=submission), 30,
                       "the submission's conversation")
    c = whole(console, found["correlation_id"], "submission.graded")
    assert [(e["event_type"], e["producer"]) for e in c["events"]] == [
        ("submission.received", "assignment"), ("submission.graded", "assignment")]
    assert [handled_by(e) for e in c["events"]] == [
        {"assignment": "handled", "analytics": "handled"},
        {"notification": "handled", "analytics": "handled"}]
    assert c["request"]["name"].startswith("POST /assignments/")


def dlq_messages(console: Console, queue: str, count: int, about: str = ""
                 ) -> list[dict[str, Any]]:
    """The DLQ's messages whose body holds `about` (a test's own student), once there are
    `count` of them."""
    def listed() -> list[dict[str, Any]] | None:
        dlq = next(d for d in console.get("/api/dlqs")["dlqs"] if d["queue"] == queue)
        mine = [m for m in dlq["messages"] if about in m["body"]]
        return mine if len(mine) == count else None
    return wait_for(listed, 120, f"{count} message(s) in the DLQ of {queue}")


def test_a_fifo_dlq_redrives_one_message_at_a_time_in_its_groups_order(
        school: School, console: Console) -> None:
    """Two payments of one student (one FIFO group) fail 3 times each: both in the DLQ, with
    why. The second cannot go before the first; the first, then the second, complete."""
    student, first, first_correlation = enrolled(school, "tok_flaky_3")
    _, second, _ = enrolled(school, "tok_flaky_3", student)
    dead = dlq_messages(console, "payment-requests.fifo", 2, student)
    assert [m["event_type"] for m in dead] == ["charge.requested"] * 2
    assert {m["dlq_reason"] for m in dead} == {"retries_exhausted"}
    assert all(m["dlq_error"] and m["source_queue"] for m in dead)
    assert [m["correlation_id"] for m in dead][0] == first_correlation
    assert first in dead[0]["body"] and second in dead[1]["body"]
    assert not any("tok_flaky_3" in json.dumps(m) for m in dead)  # the token masked
    # The DLQ lists the message as soon as SQS moves it; the worker's span of that last
    # attempt is exported on its own schedule, so the conversation is read once it is there.
    dead_lettered = ["retry", "retry", "dead_lettered"]
    c = whole(console, first_correlation, "charge.requested",
              until=lambda c: attempts(payment_of(c)) == dead_lettered)
    payment = payment_of(c)
    assert payment is not None
    assert payment["attempts"][-1]["detail"].startswith("retries_exhausted; ")
    assert "GatewayUnavailable" in payment["attempts"][0]["detail"]  # each retry says why

    base = "/api/dlqs/payment-requests.fifo/messages"
    refused = console.post(f"{base}/{dead[1]['message_id']}/redrive")
    assert refused.status_code == 409, refused.text
    assert dead[0]["message_id"] in refused.json()["detail"]
    for message, enrollment_id in zip(dead, (first, second), strict=True):
        moved = console.post(f"{base}/{message['message_id']}/redrive")
        assert moved.status_code == 200, moved.text
        assert moved.json()["completed"] and moved.json()["moved"] == 1
        school.wait_status(enrollment_id, "active", timeout=120)
    again = console.post(f"{base}/{dead[0]['message_id']}/redrive")
    assert again.status_code == 404, again.text
    # enrollment.confirmed's spans (the enrollment worker's) may come before the payment
    # worker's span of the redriven attempt: wait for the attempt itself
    whole(console, first_correlation, "enrollment.confirmed",
          until=lambda c: attempts(payment_of(c)) == [*dead_lettered, "handled"])


def test_a_standard_dlq_redrives_all_its_messages(sqs, settings, stack, console: Console
                                                 ) -> None:  # type: ignore[no-untyped-def]
    """A message of broken JSON in the analytics queue is dead-lettered at once; Redrive all
    moves it back (and, being poison still, it comes straight back)."""
    env = stack.env["SCHOOL_ENV"]
    url = sqs.get_queue_url(QueueName=physical(env, "analytics"))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{not json")
    [dead] = dlq_messages(console, "analytics", 1)
    assert dead["dlq_reason"] == "broken_json" and dead["source_queue"] == "analytics"
    assert dead["body"] == "{not json" and dead["age"] is not None
    moved = console.post("/api/dlqs/analytics/redrive")
    assert moved.status_code == 200, moved.text
    assert moved.json()["completed"] and moved.json()["moved"] == 1
    assert moved.json()["result"] == "1 message(s) moved to analytics"
    state = console.get("/api/topology")["states"]
    assert set(state) == {n for q in TOPOLOGY.queues for n in (q.name, q.dlq_name)}
    assert console.post("/api/dlqs/nope/redrive").status_code == 404


def test_only_an_operator_and_the_exporters_get_in(stack, console: Console
                                                   ) -> None:  # type: ignore[no-untyped-def]
    """On the real processes: the API refuses an anonymous caller and a student, the page sends
    a stranger to sign in, and the intake (which every process's spans reached, above) refuses
    an export without the exporters' secret."""
    dlqs = f"{console.url}/api/dlqs"
    assert requests.get(dlqs, timeout=30).status_code == 401
    student = {"Authorization": f"Bearer {stack.token('stu-e2e', 'student')}"}
    assert requests.get(dlqs, headers=student, timeout=30).status_code == 403
    page = requests.get(console.url, timeout=30, allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"].endswith("/login")
    export = requests.post(f"{console.url}/v1/traces", data=b"", timeout=30,
                           headers={"Content-Type": "application/x-protobuf",
                                    "Authorization": f"Bearer {console.token}"})
    assert export.status_code == 401


def sign_in(driver: Any, wait: Any, console: str, issuer: str, sub: str) -> None:
    """Open the console as a stranger would: it sends the browser to the issuer's sign-in
    page, where they say who they are and tick the operator group, and back to the page."""
    from selenium.webdriver.common.by import By

    driver.get(console)
    wait.until(lambda d: d.current_url.startswith(f"{issuer}/oauth2/authorize?"))
    field = driver.find_element(By.ID, "sub")
    field.clear()
    field.send_keys(sub)
    for role in ROLES:
        box = driver.find_element(By.ID, f"group-{role}")
        if box.is_selected() != (role == "operator"):
            box.click()
    driver.find_element(By.ID, "sign-in").click()
    wait.until(lambda d: d.current_url == f"{console}/")
    wait.until(lambda d: d.find_element(By.ID, "who").text == f"signed in as {sub}")


def test_the_page_in_a_real_browser(school: School, console: Console,
                                    stack) -> None:  # type: ignore[no-untyped-def]
    """Sign in through the issuer's page, find a demo enrollment's conversation by its id, see
    the chain drawn with its services, redrive a dead-lettered payment with the button until
    its enrollment is confirmed, and sign out."""
    if reason := browser.missing():
        pytest.skip(reason)
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, flaky, flaky_correlation = enrolled(school, "tok_flaky_3")
    _, enrollment_id, correlation = enrolled(school, "tok_ok")
    whole(console, correlation, "enrollment.confirmed")
    url = console.url
    with browser.chromium(window=(1500, 1000)) as driver:
        # The page redraws a view when its data changes: an element read as it is replaced is
        # read again.
        wait = WebDriverWait(driver, 90, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException,))
        sign_in(driver, wait, url, stack.issuer, "ops-browser")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "g[data-dlq]")) == 5)
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').map((e) => e.name)")
        assert loaded and all(r.startswith(url) for r in loaded), loaded  # offline
        box = driver.find_element(By.ID, "search-input")
        box.send_keys(enrollment_id)
        driver.find_element(By.CSS_SELECTOR, "#search button").click()
        wait.until(lambda d: d.current_url.endswith(f"#conversation/{correlation}"))

        def chain(d: Any) -> list[tuple[str, str]] | None:
            rows = d.find_elements(By.CSS_SELECTOR, f'#hops[data-correlation-id="{correlation}"] '
                                                    "tr[data-testid=hop]")
            seen: dict[str, str] = {}
            for row in rows:
                seen.setdefault(row.get_attribute("data-event-type"),
                                row.get_attribute("data-producer"))
            return list(seen.items()) if "enrollment.confirmed" in seen else None
        assert wait.until(chain) == [("enrollment.requested", "enrollment"),
                                     ("charge.requested", "enrollment"),
                                     ("payment.succeeded", "payment"),
                                     ("enrollment.confirmed", "enrollment")]

        def shows(read: Any, expected: Any) -> Any:
            """What the page shows once it is `expected` (it redraws as spans arrive)."""
            seen: list[Any] = []
            try:
                return wait.until(lambda d: seen.append(read(d)) or seen[-1] == expected)
            except TimeoutException:
                raise AssertionError(f"the page shows {seen[-1:]}, not {expected}") from None

        shows(lambda d: [(g.get_attribute("data-event-type"), g.get_attribute("data-producer"),
                          g.get_attribute("data-consumer"))
                         for g in d.find_elements(By.CSS_SELECTOR, "#sequence-svg g.hop")],
              [("enrollment.requested", "enrollment", "analytics"),
               ("charge.requested", "enrollment", "payment"),
               ("payment.succeeded", "payment", "enrollment"),
               ("payment.succeeded", "payment", "analytics"),
               ("enrollment.confirmed", "enrollment", "notification"),
               ("enrollment.confirmed", "enrollment", "analytics")])
        shows(lambda d: [t.text for t in d.find_elements(By.CSS_SELECTOR, "#sequence-svg .lane")],
              ["client", "enrollment", "payment", "notification", "analytics"])
        shows(lambda d: [t.text.split()[0] for t in d.find_elements(
            By.CSS_SELECTOR, "#sequence-svg text.event-type")], ["POST", *CHAIN])

        driver.get(f"{url}/#topology")
        wait.until(lambda d: d.find_elements(
            By.CSS_SELECTOR, 'g.dlq.alert[data-dlq="payment-requests-dlq.fifo"]'))
        browser.screenshot(driver, SCREENSHOTS / "console-topology.png")

        driver.get(f"{url}/#dlqs")

        def dead(d: Any) -> tuple[str, str] | None:
            for r in d.find_elements(By.CSS_SELECTOR, "tr.dlq-message"):
                body = r.find_element(By.TAG_NAME, "pre").get_attribute("textContent") or ""
                if flaky in body:
                    return r.get_attribute("data-message-id"), r.text
            return None
        message_id, shown = wait.until(dead)
        assert "retries_exhausted" in shown and "charge.requested" in shown
        browser.screenshot(driver, SCREENSHOTS / "console-dead-letters.png")
        # found again by its id as it is clicked: the list may have been redrawn since
        wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, f'tr[data-message-id="{message_id}"] '
                             "button[data-action=redrive-one]").click() or True)
        result = wait.until(lambda d: (t := d.find_element(By.ID, "dlq-result").text)
                            .startswith("Redriven") and t)
        assert "moved to payment-requests.fifo" in result
        school.wait_status(flaky, "active", timeout=120)

        driver.get(f"{url}/#conversation/{flaky_correlation}")
        table = f'#hops[data-correlation-id="{flaky_correlation}"]'  # this one, not the last
        wait.until(lambda d: any(r.get_attribute("data-event-type") == "enrollment.confirmed"
                                 for r in d.find_elements(By.CSS_SELECTOR,
                                                          f"{table} tr[data-testid=hop]")))
        # the payment worker's span of the redriven attempt may come after the others'
        shows(lambda d: (row := d.find_element(
            By.CSS_SELECTOR, f'{table} tr[data-consumer="payment"]')).get_attribute(
                "data-outcome") == "handled" and "dead_lettered" in row.text, True)
        browser.screenshot(driver, SCREENSHOTS / "console-conversation.png")

        driver.find_element(By.ID, "sign-out").click()  # and the page is the issuer's again
        wait.until(lambda d: d.current_url.startswith(f"{stack.issuer}/oauth2/authorize?"))
