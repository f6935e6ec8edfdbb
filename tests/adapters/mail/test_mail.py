"""Outgoing email: what a message holds, SMTP with STARTTLS and a login against a real
server, the log when no server is configured, and retries."""

from __future__ import annotations

import asyncio
import io
import json
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

import pytest

from apiward.adapters import logging as logs
from apiward.adapters.mail import LogTransport, Postbox, SmtpTransport, compose
from apiward.core.models import Notice
from tests.mailbox import html_of, link_in, smtp_server, text_of
from tests.tls import self_signed

LINK = "https://auth.example.test/dashboard/reset?token=awel_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
NOTICE = Notice(
    "reset", "ada@example.test", {"name": "Ada <b>", "link": LINK, "valid_for": "1 hour"}
)


def test_a_message_has_a_subject_both_bodies_and_escapes_html() -> None:
    message = compose(NOTICE, platform="Acme Developers", sender="Acme <no-reply@acme.test>")
    assert message["Subject"] == "Reset your Acme Developers password"
    assert message["To"] == "ada@example.test"
    assert message["From"] == "Acme <no-reply@acme.test>"
    assert message["Message-ID"].endswith("@acme.test>")
    assert message["Auto-Submitted"] == "auto-generated"
    text, html = text_of(message), html_of(message)
    assert "Hello Ada <b>," in text and LINK in text and "1 hour" in text
    assert "Ada &lt;b&gt;" in html and "<b>," not in html
    assert f'href="{LINK}"' in html


def test_every_template_renders() -> None:
    values = {
        "name": "Ada",
        "link": LINK,
        "valid_for": "1 day",
        "sign_in": "https://x.test/dashboard/login",
        "forgot": "https://x.test/dashboard/forgot",
        "project": "Weather",
        "role": "developer",
        "inviter": "Grace",
    }
    for template in ("confirm", "account_exists", "reset", "password_changed", "invite"):
        message = compose(Notice(template, "a@b.test", values), platform="P", sender="p@p.test")
        assert text_of(message).strip() and html_of(message).strip()
    with pytest.raises(ValueError, match="no email template"):
        compose(Notice("nope", "a@b.test", {}), platform="P", sender="p@p.test")


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: the server's context and a client's
    context that trusts it."""
    cert, key, client = self_signed(tmp_path, "127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, client


def test_smtp_with_starttls_and_login(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_tls, client_tls = tls
    with smtp_server(tls_context=server_tls, auth=True) as box:
        transport = SmtpTransport(
            "127.0.0.1",
            box.port,
            security="starttls",
            username="apiward",
            password="mail-password",
            tls_context=client_tls,
        )
        transport.send(compose(NOTICE, platform="P", sender="p@p.test"))
        message = box.next("ada@example.test")
        assert link_in(message) == LINK
        assert box.logins == ["apiward"]
        assert box.envelopes[-1] == ("p@p.test", ["ada@example.test"])


def test_smtp_refuses_a_server_it_cannot_trust(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_tls, _ = tls
    with smtp_server(tls_context=server_tls) as box:
        transport = SmtpTransport("127.0.0.1", box.port, security="starttls")
        with pytest.raises(ssl.SSLCertVerificationError):
            transport.send(compose(NOTICE, platform="P", sender="p@p.test"))
        assert box.nothing_for("ada@example.test", wait=0.2)


def test_without_smtp_the_email_and_its_link_go_to_the_log() -> None:
    stream = io.StringIO()
    logs.configure("info", "json", stream, secret_prefixes=("aw", "awel"))
    try:
        LogTransport().send(compose(NOTICE, platform="P", sender="p@p.test"))
        # Anywhere else, the same link is masked.
        logs.get_logger().info("something", url=LINK)
    finally:
        logs.configure("warning", "json")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    email = next(line for line in lines if line["event"] == "email_not_sent_logged")
    assert email["to"] == "ada@example.test"
    assert email["subject"] == "Reset your P password"
    assert LINK in email["body"]
    other = next(line for line in lines if line["event"] == "something")
    assert "awel_" not in other["url"] and "[REDACTED]" in other["url"]


class Flaky:
    """Fails ``failures`` times, then delivers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        if self.failures:
            self.failures -= 1
            raise smtplib.SMTPServerDisconnected("the server went away")
        self.sent.append(message)


def test_the_postbox_retries_and_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("apiward.adapters.mail.RETRY_DELAYS", (0.01, 0.01))

    async def run(failures: int) -> tuple[Postbox, Flaky]:
        transport = Flaky(failures)
        box = Postbox(transport, platform="P", sender="p@p.test")
        box.post(NOTICE)  # returns at once
        assert transport.sent == [] or failures == 0
        await box.drain()
        return box, transport

    box, transport = asyncio.run(run(2))
    assert (box.sent, box.failed, len(transport.sent)) == (1, 0, 1)
    box, transport = asyncio.run(run(3))
    assert (box.sent, box.failed, len(transport.sent)) == (0, 1, 0)
