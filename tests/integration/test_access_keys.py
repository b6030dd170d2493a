"""The issuer's keys over the network: cached, fetched again for an unknown kid at most every
few seconds, and a 503 when they cannot be fetched."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deploy.local.localstack import free_port
from shared.access import Gate
from shared.auth import KeySet, Unauthenticated, Verifier
from tests.support.identity import CLIENT, Signer
from tests.unit.test_access import PROBLEM, get, probe_app


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


def test_keys_that_cannot_be_fetched_are_a_503() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gate = Gate(Verifier(nowhere, [CLIENT], KeySet(nowhere, timeout=1)))
    reply = get(probe_app(gate).test_client(), "/mine/stu-1", Signer().token("stu-1"))
    assert reply.status_code == 503 and reply.mimetype == PROBLEM
    assert reply.headers["Retry-After"]


@pytest.fixture
def jwks_server(signer: Signer) -> Iterator[tuple[str, list[str]]]:
    """A discovery document and a JWKS on loopback, counting each fetch of the keys."""
    fetched: list[str] = []
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.endswith("openid-configuration"):
                body = {"issuer": url, "jwks_uri": f"{url}/jwks.json"}
            else:
                fetched.append(self.path)
                body = {"keys": [signer.jwk()]}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url, fetched
    server.shutdown()
    server.server_close()


def test_keys_are_cached_and_refetched_for_an_unknown_kid_at_most_every_few_seconds(
        jwks_server: tuple[str, list[str]], signer: Signer) -> None:
    url, fetched = jwks_server
    check = Verifier(url, [CLIENT], KeySet(url, refresh_every=60))
    for _ in range(3):
        assert check.verify(signer.token("stu-1", "student", iss=url)).sub == "stu-1"
    assert len(fetched) == 1  # cached
    for _ in range(5):
        with pytest.raises(Unauthenticated, match="does not publish"):
            check.verify(signer.token("stu-1", "student", iss=url, headers={"kid": "made-up"}))
    assert len(fetched) == 2  # one refetch for five unknown kids within a minute
