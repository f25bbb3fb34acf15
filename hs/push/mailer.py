"""Sending email over SMTP (config `email:`, Synapse's keys) and building the messages we send:
the 3PID validation email and the notification email, each as plain text and HTML.

smtplib blocks on its socket; under gunicorn's gevent worker sockets are patched, so a send
yields to the hub instead of stalling it. Outside gevent's patching (a plain script), sends go
through gevent's thread pool.
"""

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from html import escape

import gevent
from gevent import monkey

logger = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 30


class MailError(Exception):
    """The SMTP server could not be reached or refused the message."""


class Mailer:
    def __init__(self, email_config):
        self.config = email_config

    def send(self, to: str, subject: str, text: str, html: str, headers: dict | None = None) -> None:
        msg = EmailMessage()
        # Synapse's notif_from may name the app as %(app)s.
        msg["From"] = self.config.notif_from.replace("%(app)s", self.config.app_name)
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain=parseaddr(msg["From"])[1].rpartition("@")[2] or None)
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        if monkey.is_module_patched("socket"):
            self._send(msg)
        else:
            gevent.get_hub().threadpool.apply(self._send, (msg,))

    def _send(self, msg: EmailMessage) -> None:
        c = self.config
        context = ssl.create_default_context()
        try:
            if c.force_tls:
                smtp = smtplib.SMTP_SSL(c.smtp_host, c.smtp_port, timeout=SMTP_TIMEOUT_S, context=context)
            else:
                smtp = smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=SMTP_TIMEOUT_S)
            with smtp:
                smtp.ehlo()
                if not c.force_tls and c.enable_tls and smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                elif not c.force_tls and c.require_transport_security:
                    # Synapse's require_transport_security: never send (nor log in) in the clear.
                    raise MailError(f"{c.smtp_host}:{c.smtp_port} does not offer STARTTLS and "
                                    "email.require_transport_security is set")
                if c.smtp_user is not None:
                    smtp.login(c.smtp_user, c.smtp_pass)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as e:
            raise MailError(f"sending to {c.smtp_host}:{c.smtp_port} failed: {e}") from e


# --- messages ------------------------------------------------------------------------------------

_HTML_PAGE = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>"
              "<body style=\"font-family: sans-serif\">{body}</body></html>")


def html_page(title: str, body_html: str) -> str:
    """A minimal HTML document; `title` is escaped here, `body_html` must already be."""
    return _HTML_PAGE.format(title=escape(title), body=body_html)


def validation_email(app_name: str, link: str) -> tuple[str, str, str]:
    """(subject, text, html) of the email that proves the address is the user's."""
    subject = f"[{app_name}] Validate your email"
    text = (f"A request was made to add this email address to a {app_name} account.\n\n"
            f"To confirm it, open this link:\n\n{link}\n\n"
            "If you did not ask for this, ignore this email: nothing changes unless the link is opened.\n")
    html = html_page(subject,
                     f"<p>A request was made to add this email address to a {escape(app_name)} account.</p>"
                     f"<p><a href=\"{escape(link)}\">Confirm this address</a></p>"
                     "<p>If you did not ask for this, ignore this email: nothing changes unless the link "
                     "is opened.</p>")
    return subject, text, html


def one_line(text: str, limit: int = 200) -> str:
    """User-controlled text (room names, display names, bodies) fit for a line or a header:
    whitespace runs, line breaks included, become one space (no header injection)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def notification_email(app_name: str, user_name: str, rooms: list[dict], unsubscribe_link: str,
                       client_link: str) -> tuple[str, str, str]:
    """(subject, text, html) of one notification email. `rooms`: [{name, link, notifs: [{sender,
    body}]}] in the order to show them; every value is text, escaped here for the HTML part."""
    count = sum(len(room["notifs"]) for room in rooms)
    noun = "message" if count == 1 else "messages"
    if len(rooms) == 1:
        subject = f"[{app_name}] {count} unread {noun} in {rooms[0]['name']}"
    else:
        subject = f"[{app_name}] {count} unread {noun} in {len(rooms)} rooms"
    text_parts = [f"Hi {user_name},", "", "You have unread messages:", ""]
    html_parts = [f"<p>Hi {escape(user_name)},</p><p>You have unread messages:</p>"]
    for room in rooms:
        text_parts.append(f"{room['name']}:")
        html_parts.append(f"<h3><a href=\"{escape(room['link'])}\">{escape(room['name'])}</a></h3><ul>")
        for notif in room["notifs"]:
            text_parts.append(f"  {notif['sender']}: {notif['body']}")
            html_parts.append(f"<li><b>{escape(notif['sender'])}</b>: {escape(notif['body'])}</li>")
        text_parts.append("")
        html_parts.append("</ul>")
    text_parts += [f"Open {app_name}: {client_link}", "",
                   f"You are getting this because email notifications are on. Unsubscribe: {unsubscribe_link}"]
    html_parts.append(f"<p><a href=\"{escape(client_link)}\">Open {escape(app_name)}</a></p>"
                      "<p style=\"font-size: small\">You are getting this because email notifications are on. "
                      f"<a href=\"{escape(unsubscribe_link)}\">Unsubscribe</a></p>")
    return subject, "\n".join(text_parts) + "\n", html_page(subject, "".join(html_parts))

