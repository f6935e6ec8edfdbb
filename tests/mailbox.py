"""A real SMTP server (aiosmtpd) on a loopback port that keeps what it receives."""

from __future__ import annotations

import email
import email.policy
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.live import free_port

_LINK = re.compile(r"https?://\S+?token=[A-Za-z0-9_%\-]+")


class Mailbox:
    """Messages received, in order; each test reads them by recipient."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[str] = []
        self._read: set[int] = set()
        self._changed = threading.Condition()
        self.port = 0

    # aiosmtpd handler hooks
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._changed:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"mail-password"
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    # reading
    def next(self, to: str, timeout: float = 15.0) -> EmailMessage:
        """The first unread message to ``to``, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for i, message in enumerate(self.messages):
                    if i not in self._read and message["To"] == to:
                        self._read.add(i)
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no email to {to} within {timeout} s")
                self._changed.wait(left)

    def nothing_for(self, to: str, wait: float = 1.0) -> bool:
        """Whether no unread message to ``to`` arrives within ``wait`` seconds."""
        try:
            self.next(to, timeout=wait)
        except AssertionError:
            return True
        return False

    def link(self, to: str, timeout: float = 15.0) -> str:
        """The link in the next message to ``to``."""
        return link_in(self.next(to, timeout))


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    content: str = part.get_content()
    return content


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert isinstance(part, EmailMessage)
    content: str = part.get_content()
    return content


def link_in(message: EmailMessage) -> str:
    match = _LINK.search(text_of(message))
    assert match, f"no link in the email {message['Subject']!r}"
    return match.group(0)


@contextmanager
def smtp_server(
    *, tls_context: ssl.SSLContext | None = None, auth: bool = False
) -> Iterator[Mailbox]:
    """An SMTP server on 127.0.0.1 (STARTTLS when ``tls_context`` is given)."""
    mailbox = Mailbox()
    kwargs: dict[str, Any] = {}
    if tls_context is not None:
        kwargs.update(tls_context=tls_context, require_starttls=True)
    if auth:
        kwargs.update(authenticator=mailbox.authenticate, auth_require_tls=tls_context is not None)
    else:
        kwargs.update(auth_require_tls=False)
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    mailbox.port = port
    try:
        yield mailbox
    finally:
        controller.stop()
