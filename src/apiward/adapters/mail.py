"""Outgoing email: composed from templates, sent over SMTP or written to the log.

``Postbox`` is the ``Mailer`` the portal posts to. It renders the notice at once (plain
text and HTML, with the platform's name) and sends it in a background task, retrying a
failed attempt twice, so that no answer waits for the mail server. Without
``APIWARD_SMTP_HOST`` (the embedded default) the email is written to the log, link
included, for a developer to copy: the one place a link's token is logged, and only when
no mail server is configured.
"""

from __future__ import annotations

import asyncio
import functools
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Literal, Protocol

import jinja2

from apiward.adapters.logging import UNREDACTED, get_logger
from apiward.core.models import Notice
from apiward.services.background import TaskSet

log = get_logger("apiward.mail")

TEMPLATES = Path(__file__).parent / "mail_templates"
SUBJECTS = {
    "confirm": "Confirm your email address for {platform}",
    "account_exists": "Your {platform} account",
    "reset": "Reset your {platform} password",
    "password_changed": "Your {platform} password was changed",
    "invite": "You are invited to {project} on {platform}",
    "key_expiring": "API key {key_name} expires in {days} day(s)",
    "key_credits_low": "API key {key_name} has spent {percent}% of its credits",
    "key_disabled_unused": "Unused API key {key_name} was disabled",
}
RETRY_DELAYS = (1.0, 5.0)


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Send one message; blocking (called in a worker thread). Raises on failure."""
        ...


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def compose(notice: Notice, *, platform: str, sender: str) -> EmailMessage:
    """The email of a notice: subject, plain-text body and HTML alternative."""
    if notice.template not in SUBJECTS:
        raise ValueError(f"no email template named {notice.template!r}")
    values = {"platform": platform, **notice.values}
    # A header is one line, whatever a name holds.
    one_line = {key: " ".join(str(value).split()) for key, value in values.items()}
    message = EmailMessage()
    message["Subject"] = SUBJECTS[notice.template].format(**one_line)
    message["From"] = sender
    message["To"] = notice.to
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip("> ") or None)
    message["Auto-Submitted"] = "auto-generated"
    env = _templates()
    message.set_content(env.get_template(f"{notice.template}.txt").render(**values))
    message.add_alternative(
        env.get_template(f"{notice.template}.html").render(**values), subtype="html"
    )
    return message


def text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if isinstance(part, EmailMessage) else ""


class SmtpTransport:
    """SMTP with STARTTLS (587), implicit TLS (465) or neither, and optional login."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Literal["starttls", "tls", "none"] = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self._username = username
        self._password = password
        self._timeout = timeout
        self._tls = tls_context or _system_trust()

    def send(self, message: EmailMessage) -> None:
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self._timeout, context=self._tls)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self._timeout)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=self._tls)
            if self._username:
                smtp.login(self._username, self._password or "")
            smtp.send_message(message)


class LogTransport:
    """Writes each email to the log (no SMTP server configured)."""

    def send(self, message: EmailMessage) -> None:
        log.info(
            "email_not_sent_logged",
            note="No SMTP server is configured (APIWARD_SMTP_HOST): this email is logged "
            "instead of sent.",
            to=message["To"],
            subject=message["Subject"],
            body=text_body(message),
            **{UNREDACTED: ("body",)},
        )


class Postbox:
    """The ``Mailer``: composes now, sends in the background, retries, never raises."""

    def __init__(self, transport: Transport, *, platform: str, sender: str) -> None:
        self.transport = transport
        self._platform = platform
        self._sender = sender
        self._pending = TaskSet()
        self.sent = 0
        self.failed = 0

    def post(self, notice: Notice) -> None:
        message = compose(notice, platform=self._platform, sender=self._sender)
        self._pending.start(self._deliver(message, notice.template))

    async def _deliver(self, message: EmailMessage, template: str) -> None:
        for attempt, delay in enumerate((*RETRY_DELAYS, None), start=1):
            try:
                await asyncio.to_thread(self.transport.send, message)
            except (smtplib.SMTPException, OSError) as exc:
                log.warning(
                    "email_failed",
                    template=template,
                    to=message["To"],
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if delay is None:
                    self.failed += 1
                    return
                await asyncio.sleep(delay)
            else:
                self.sent += 1
                log.info("email_sent", template=template, to=message["To"], attempt=attempt)
                return

    async def drain(self) -> None:
        """Wait for every queued email (at shutdown, and for the CLI before it exits)."""
        await self._pending.drain()


@functools.cache
def _system_trust() -> ssl.SSLContext:
    """The system's certificate store, read once per process (tens of milliseconds) and
    shared by every mailer."""
    return ssl.create_default_context()
