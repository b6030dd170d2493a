"""Who may do what, against the five services as real processes.

The route x role matrix sends every route of every service (read from each app's URL map, so a
new route without a row here fails the test) as each persona: anonymous, the student who owns
the records, another student, the instructor who created the assignment, another instructor, an
admin and an operator. The status each must get follows from the route's declared rule; the
table says only what a request looks like and what a non-owner is answered."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from deploy.local.client import Client
from shared import bootstrap
from shared.access import _WIDTH, RULE, Rule
from shared.settings import SERVICES, Settings
from tests.support.messages import wait_for

pytestmark = pytest.mark.e2e


@dataclass
class Persona:
    name: str
    sub: str | None
    groups: tuple[str, ...]
    client: Client = field(repr=False, default=None)  # type: ignore[assignment]


@dataclass
class World:
    """The records of the matrix: Ada's, made by Ada, the instructor and the admin."""

    stack: Any
    people: dict[str, Persona]
    course: str = ""
    student: str = ""
    enrollment: str = ""
    payment: str = ""
    assignment: str = ""

    def new_course(self) -> str:
        return str(self.people["instructor"].client.create_course("Matrix", 50, 1000)["id"])

    def fresh_student(self) -> Client:
        sub = f"new-{uuid.uuid4().hex[:10]}"
        return self.people["admin"].client.as_(self.stack.token(sub, "student"))


@pytest.fixture(scope="module")
def world(school_stack: Any) -> World:
    base = Client(school_stack.urls, timeout=30)
    tag = uuid.uuid4().hex[:8]
    people = {name: Persona(name, f"{name}-{tag}" if groups else None, groups) for name, groups
              in [("anonymous", ()), ("owner", ("student",)), ("other", ("student",)),
                  ("instructor", ("instructor",)), ("other_instructor", ("instructor",)),
                  ("admin", ("admin",)), ("operator", ("operator",))]}
    for persona in people.values():
        persona.client = base.as_(school_stack.token(persona.sub, *persona.groups)
                                  if persona.sub else None)
    w = World(school_stack, people)
    ada, bob = people["owner"].client, people["other"].client
    w.student = str(ada.register("Ada Lovelace", f"ada-{tag}@example.com")["id"])
    bob.register("Bob Byte", f"bob-{tag}@example.com")
    w.course = w.new_course()
    w.enrollment = str(ada.enroll(w.student, w.course)["id"])
    wait_for(lambda: ada.enrollment(w.enrollment)["status"] == "active", 60, "Ada's enrollment")
    w.payment = str(ada.payments(w.enrollment)[0]["id"])
    w.assignment = str(people["instructor"].client.create_assignment(
        course_id=w.course, title="Queues", max_score=10, keywords=["fifo"])["id"])
    ada.submit(w.assignment, w.student, "fifo queues keep order")
    return w


def test_a_student_s_id_is_their_subject_and_registering_again_is_409(world: World) -> None:
    ada = world.people["owner"]
    assert world.student == ada.sub
    again = ada.client.send("POST", "enrollment", "/students",
                            {"name": "Ada", "email": "ada@example.com"})
    assert again.status_code == 409


@dataclass(frozen=True)
class Case:
    """One route: how to call it as a persona, what success is, and what a non-owner (another
    student, another instructor) gets instead."""

    build: Callable[[World, str], tuple[str, Any]]  # (path, JSON body or query) for a persona
    ok: tuple[int, ...] = (200,)
    other: int | None = None  # another student's answer, when not the success
    other_instructor: int | None = None
    newcomer: bool = False  # the owner is a student not yet registered (POST /students)


def body(path: str, json: Any = None) -> Callable[[World, str], tuple[str, Any]]:
    return lambda w, who: (path.format(w=w), json(w, who) if callable(json) else json)


def enroll_body(w: World, who: str) -> dict[str, Any]:
    return {"student_id": w.student, "course_id": w.new_course(), "payment_token": "tok_ok"}


PLATFORM = {("GET", path): Case(body(path)) for path in (
    "/healthz", "/readyz", "/openapi.json", "/docs")} | {
    ("GET", "/docs/static/<path:name>"): Case(body("/docs/static/swagger-ui.css"))}
CASES: dict[str, dict[tuple[str, str], Case]] = {
    "enrollment": {
        ("POST", "/students"): Case(lambda w, who: ("/students", {
            "name": "New One", "email": "new@example.com"} | (
                {"id": w.student} if who == "other" else {})), ok=(201,), other=403,
            newcomer=True),
        ("GET", "/students/<id:student_id>"): Case(body("/students/{w.student}"), other=404),
        ("POST", "/courses"): Case(body("/courses", {
            "title": "Matrix", "price_cents": 100, "capacity": 3}), ok=(201,)),
        ("GET", "/courses/<id:course_id>"): Case(body("/courses/{w.course}")),
        ("POST", "/enrollments"): Case(body("/enrollments", enroll_body), ok=(202,),
                                       other=403),
        ("GET", "/enrollments"): Case(body("/enrollments?student_id={w.student}"), other=403),
        ("GET", "/enrollments/<id:enrollment_id>"): Case(
            body("/enrollments/{w.enrollment}"), other=404),
        # Ada's enrollment is active: cancelled once (202), then no longer cancellable (409).
        ("POST", "/enrollments/<id:enrollment_id>/cancel"): Case(
            body("/enrollments/{w.enrollment}/cancel"), ok=(202, 409), other=404),
    },
    "payment": {
        ("GET", "/payments"): Case(body("/payments?enrollment_id={w.enrollment}")),
        ("GET", "/payments/<id:payment_id>"): Case(body("/payments/{w.payment}"), other=404),
        ("GET", "/simulator/gateway"): Case(body("/simulator/gateway")),
        ("PUT", "/simulator/gateway"): Case(body("/simulator/gateway", {"outage": False})),
    },
    "assignment": {
        ("POST", "/assignments"): Case(lambda w, who: ("/assignments", {
            "course_id": w.course, "title": "Matrix", "max_score": 5}), ok=(201,)),
        ("GET", "/assignments/<id:assignment_id>"): Case(body("/assignments/{w.assignment}")),
        ("POST", "/assignments/<id:assignment_id>/submissions"): Case(
            lambda w, who: (f"/assignments/{w.assignment}/submissions",
                            {"student_id": w.student, "content": "fifo"}), ok=(202,),
            other=403),
        ("GET", "/assignments/<id:assignment_id>/submissions"): Case(
            body("/assignments/{w.assignment}/submissions?student_id={w.student}"),
            other=403, other_instructor=404),
        ("PUT", "/simulator/grader"): Case(body("/simulator/grader", {"student_ids": []})),
    },
    "notification": {
        ("GET", "/notifications"): Case(body("/notifications?student_id={w.student}"),
                                        other=403),
    },
    "analytics": {("GET", "/analytics/summary"): Case(body("/analytics/summary"))},
}


def routes(service: str, tmp_path: Path, stack: Any) -> dict[tuple[str, str], Rule]:
    settings = Settings(var_dir=tmp_path, simulator_controls=True,
                        oidc_issuer=stack.issuer, oidc_client_ids=("school-cli",))
    app = bootstrap.api(service, settings)
    return {(method, r.rule): getattr(app.view_functions[r.endpoint], RULE)
            for r in app.url_map.iter_rules()
            for method in (r.methods or set()) - {"HEAD", "OPTIONS"}}


def expected(rule: Rule, case: Case, persona: Persona) -> tuple[int, ...]:
    if rule.public:
        return case.ok
    if persona.sub is None:
        return (401,)
    reaches = [rule.grants[g] for g in persona.groups if g in rule.grants]
    if not reaches:
        return (403,)
    if persona.name == "other" and case.other is not None:
        return (case.other,)
    if persona.name == "other_instructor" and case.other_instructor is not None:
        return (case.other_instructor,)
    assert max(reaches, key=_WIDTH.__getitem__)
    return case.ok


def call(client: Client, service: str, method: str, path: str, payload: Any) -> Any:
    if method == "GET":
        return client.send("GET", service, path)
    return client.send(method, service, path, payload)


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_answers_each_persona_as_its_rule_says(
        world: World, service: str, tmp_path: Path) -> None:
    declared = routes(service, tmp_path, world.stack)
    table = CASES[service] | PLATFORM
    assert set(declared) == set(table), f"routes without a matrix row: {set(declared) - set(table)}"
    wrong = []
    for route, case in table.items():
        for persona in world.people.values():
            path, payload = case.build(world, persona.name)
            client = (world.fresh_student() if case.newcomer and persona.name == "owner"
                      else persona.client)
            reply = call(client, service, route[0], path, payload)
            want = expected(declared[route], case, persona)
            if reply.status_code not in want:
                wrong.append(f"{route[0]} {path} as {persona.name}: {reply.status_code}, "
                             f"expected {want}: {reply.text[:120]}")
            elif reply.status_code >= 400:
                assert reply.headers["Content-Type"] == "application/problem+json"
    assert not wrong, "\n".join(wrong)


def test_a_student_sees_only_their_own_payments_and_no_grading_key(world: World) -> None:
    bob, ada = world.people["other"].client, world.people["owner"].client
    assert bob.payments(world.enrollment) == []
    assert [p["id"] for p in ada.payments(world.enrollment)] == [world.payment]
    assert "keywords" not in ada.call("GET", "assignment", f"/assignments/{world.assignment}")
    mine = world.people["instructor"].client.call("GET", "assignment",
                                                  f"/assignments/{world.assignment}")
    assert mine["keywords"] == ["fifo"] and mine["created_by"] == world.people["instructor"].sub
    theirs = world.people["other_instructor"].client.call(
        "GET", "assignment", f"/assignments/{world.assignment}")
    assert "keywords" not in theirs


def test_an_instructor_sees_every_submission_of_their_own_assignment(world: World) -> None:
    rows = world.people["instructor"].client.submissions(world.assignment)
    assert {row["student_id"] for row in rows} >= {world.student}
    refused = world.people["other_instructor"].client.send(
        "GET", "assignment", f"/assignments/{world.assignment}/submissions")
    assert refused.status_code == 404


def test_another_student_s_record_is_not_found_and_acting_as_them_is_forbidden(
        world: World) -> None:
    bob = world.people["other"].client
    for service, path in [("enrollment", f"/enrollments/{world.enrollment}"),
                          ("enrollment", f"/students/{world.student}"),
                          ("payment", f"/payments/{world.payment}")]:
        assert bob.send("GET", service, path).status_code == 404
    assert bob.send("POST", "enrollment", f"/enrollments/{world.enrollment}/cancel"
                    ).status_code == 404
    acting = bob.send("POST", "enrollment", "/enrollments", {
        "student_id": world.student, "course_id": world.course, "payment_token": "tok_ok"})
    assert acting.status_code == 403
    assert bob.send("GET", "notification", "/notifications",
                    params={"student_id": world.student}).status_code == 403


def outbox(stack: Any, service: str) -> list[dict[str, Any]]:
    """Every event the service has written to its outbox."""
    engine = create_engine(stack.databases[service])
    try:
        with engine.connect() as conn:
            return [json.loads(body) for body in
                    conn.execute(text("SELECT body FROM outbox")).scalars()]
    finally:
        engine.dispose()


def test_events_name_the_person_whose_request_caused_them(world: World,
                                                          school_stack: Any) -> None:
    events = outbox(school_stack, "enrollment")
    requested = [e for e in events if e["event_type"] == "enrollment.requested"
                 and e["data"]["enrollment_id"] == world.enrollment]
    assert requested and requested[0]["actor"] == world.student
    created = [e for e in events if e["event_type"] == "course.created"
               and e["data"]["course_id"] == world.course]
    assert created[0]["actor"] == world.people["instructor"].sub
    # ... and the events caused by handling those carry it on
    paid = [e for e in outbox(school_stack, "payment") if e["event_type"] == "payment.succeeded"
            and e["data"]["enrollment_id"] == world.enrollment]
    assert paid and paid[0]["actor"] == world.student


def test_no_token_is_written_into_a_log_an_event_or_an_answer(world: World,
                                                              school_stack: Any) -> None:
    """Tokens were sent by every persona above; plant two more (a valid one and a forged one
    that looks like a JWT), then search every process's output and every outbox for them."""
    planted = school_stack.token(f"plant-{uuid.uuid4().hex}", "student", "admin")
    forged = planted.rsplit(".", 1)[0] + ".c2lnbmF0dXJlLW9mLW5vYm9keQ"
    base = world.people["admin"].client
    for token in (planted, forged):
        as_planter = base.as_(token)
        answers = [as_planter.send("GET", "enrollment", f"/enrollments/{world.enrollment}"),
                   as_planter.send("POST", "enrollment", "/students",
                                   {"name": "Plant", "email": "plant@example.com"}),
                   as_planter.send("GET", "analytics", "/analytics/summary")]
        assert all(token not in reply.text for reply in answers)
    # a query string can carry a one-time secret (a sign-in callback's code): the access log
    # keeps only the path
    code = f"code-{uuid.uuid4().hex}"
    base.send("GET", "enrollment", "/healthz", params={"code": code})
    tokens = [planted, forged] + [p.client.token for p in world.people.values() if p.sub]
    logs = {path.name: path.read_text(errors="replace")
            for path in Path(school_stack.folder).glob("*.log")}
    assert len(logs) >= 11  # the issuer and each API and worker
    for name, text_ in logs.items():
        assert code not in text_, f"a query string's secret is in {name}"
        for token in tokens:
            assert token not in text_, f"a token is in {name}"
            assert token.split(".")[2] not in text_, f"a token's signature is in {name}"
    for service in ("enrollment", "assignment", "payment"):
        bodies = json.dumps(outbox(school_stack, service))
        assert not any(token.split(".")[2] in bodies for token in tokens)


def test_an_idempotency_key_is_the_caller_s_own(world: World) -> None:
    ada, bob = world.people["owner"], world.people["other"]
    key = f"same-{uuid.uuid4().hex}"
    course = world.new_course()
    first = ada.client.enroll(ada.sub or "", course, key=key)
    assert ada.client.enroll(ada.sub or "", course, key=key) == first  # a retry: replayed
    # Bob's request with the same key is his own: neither Ada's answer nor a reused-key 422.
    theirs = bob.client.enroll(bob.sub or "", course, key=key)
    assert theirs["id"] != first["id"]
    assert bob.client.enrollment(theirs["id"])["student_id"] == bob.sub


@pytest.mark.parametrize("header", [
    b"Basic dXNlcjpwYXNz", b"", b"Bearer", b"Bearer a.b.c d.e.f", b"Bearer " + b"x" * 10_240,
    "Bearer a.b.cé".encode(), b"Bearer \xff\xfe.a.b",
])
def test_a_malformed_authorization_header_is_a_401_through_gunicorn(
        world: World, header: bytes) -> None:
    """As sent on the wire, to the real server: never a 500, never gunicorn's own page."""
    reply = Client(world.stack.urls, timeout=10).send(
        "GET", "enrollment", f"/enrollments/{world.enrollment}",
        headers={"Authorization": header})
    assert reply.status_code == 401, reply.text
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_swagger_ui_authorizes_with_a_pasted_token_offline(world: World, tmp_path: Path) -> None:
    """In a real browser: /docs (served from the service itself, no CDN), Authorize, paste
    Ada's token, then try GET /students/{student_id}: the call carries it and answers 200."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.support import browser
    browser.require()
    ada = world.people["owner"]
    with browser.chromium() as driver:
        wait = WebDriverWait(driver, 30)
        driver.get(f"{world.stack.urls['enrollment']}/docs")

        def click(css: str) -> None:
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, css).is_displayed())
            driver.find_element(By.CSS_SELECTOR, css).click()

        click("button.authorize")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".auth-container input"))
        driver.find_element(By.CSS_SELECTOR, ".auth-container input").send_keys(
            ada.client.token)
        click(".auth-btn-wrapper button.authorize")
        click(".auth-btn-wrapper button.btn-done")
        summary = driver.find_element(
            By.CSS_SELECTOR, ".opblock-get [data-path='/students/{student_id}']")
        summary.click()
        click(".opblock.is-open button.try-out__btn")
        field = driver.find_element(By.CSS_SELECTOR, ".opblock.is-open input[type=text]")
        field.send_keys(world.student)
        click(".opblock.is-open button.execute")
        answered = ".opblock.is-open .live-responses-table tr.response td.response-col_status"
        status = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, answered))
        browser.screenshot(driver, tmp_path / "swagger.png")
        curl = driver.find_element(By.CSS_SELECTOR, ".opblock.is-open .curl").text
        assert "Authorization: Bearer" in curl
        assert status[0].text.strip().startswith("200"), status[0].text
        sources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(url.startswith(world.stack.urls["enrollment"]) for url in sources), sources
