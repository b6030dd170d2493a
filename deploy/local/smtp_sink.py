"""A local SMTP sink: accepts every mail on 127.0.0.1:1025 and stores it under var/mail/.

It logs the stored file's name and how many mails it has stored, never an address (logs carry
ids, never an email address): the envelope's recipients are in the file."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import uuid
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller

from shared import logs
from shared.settings import Settings

log = logging.getLogger("smtp_sink")
SUFFIX = ".eml"


def stored(folder: Path, *, headers_only: bool = False) -> list[EmailMessage]:
    """The mails a sink stored in `folder`, oldest first: the one reader of its files, for the
    tests, chaos and the demo. `headers_only` skips the bodies (chaos reads thousands)."""
    parser = (BytesHeaderParser if headers_only else BytesParser)(policy=policy.default)
    return [cast(EmailMessage, parser.parsebytes(path.read_bytes()))
            for path in sorted(folder.glob(f"*{SUFFIX}"))]


class Store:
    """aiosmtpd handler: one .eml file per accepted message, named by time and a random id."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.stored = folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.folder / f"{stamp}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(path)  # readers never see a half-written mail
        self.stored += 1
        log.info("stored mail %d as %s", self.stored, path.name, extra={"outcome": "stored"})
        return "250 Message accepted for delivery"


def main() -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=settings.smtp_host)
    parser.add_argument("--port", type=int, default=settings.smtp_port)
    parser.add_argument("--folder", type=Path, default=settings.var_dir / "mail")
    args = parser.parse_args()
    logs.configure("smtp-sink", settings.log_level)
    # aiosmtpd's own logger logs every command line at INFO (`RCPT TO:<ada@example.com>`, then
    # `sender:` and `recip:` with the addresses); from WARNING on it names only peers, command
    # verbs and exceptions. Pinned here, whatever LOG_LEVEL says.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(Store(args.folder), hostname=args.host, port=args.port)
    controller.start()
    log.info("SMTP sink listening on %s:%d, storing mail in %s", args.host, args.port, args.folder)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
