"""The project's SMTP sink (deploy/local/smtp_sink.py) as a real process on a free port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

from deploy.local import smtp_sink
from shared.settings import ROOT
from tests.support.messages import wait_for


class Mailbox:
    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.folder.parent / f"smtp-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.local.smtp_sink", "--host", "127.0.0.1",
             "--port", str(self.port), "--folder", str(self.folder)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.listening, 20, f"the SMTP sink on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        wait_for(lambda: not self.listening(), 10, "the SMTP sink to close its port")

    def listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def messages(self) -> list[EmailMessage]:
        return smtp_sink.stored(self.folder)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages() if address in str(m["To"])]

    def for_event(self, event_id: str) -> list[EmailMessage]:
        return [m for m in self.messages() if m["X-Event-ID"] == event_id]
