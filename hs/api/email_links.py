"""The links we put in emails: validating an address (GET from the email; POST from a client
given `submit_url`) and unsubscribing from notification emails (GET from the email, POST for
one-click List-Unsubscribe, RFC 8058, and the form the GET shows). Neither carries an access token: each holds a random
token only the email's recipient has."""

from html import escape
from urllib.parse import quote

import falcon

from hs.api.app import Resource
from hs.api.request import json_body
from hs.errors import MatrixError
from hs.handlers.threepids import SUBMIT_TOKEN_PATH
from hs.push.email_pusher import UNSUBSCRIBE_PATH
from hs.push.mailer import html_page


def _page(resp, status: int, title: str, message: str) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_HTML
    resp.text = html_page(title, f"<p>{escape(message)}</p>")


class SubmitTokenResource(Resource):
    public = frozenset({"GET", "POST"})

    def __init__(self, threepids):
        self.threepids = threepids

    def on_get(self, req, resp):
        try:
            next_link = self.threepids.submit_token(req.get_param("sid"), req.get_param("client_secret"),
                                                    req.get_param("token"))
        except MatrixError as e:
            _page(resp, e.status, "Validation failed", f"This link did not work: {e.message}.")
            return
        if next_link:
            raise falcon.HTTPFound(next_link)
        _page(resp, 200, "Email validated", "Your email address is validated. You can go back to your app.")

    def on_post(self, req, resp):
        body = json_body(req)
        self.threepids.submit_token(body.get("sid"), body.get("client_secret"), body.get("token"))
        resp.media = {"success": True}


class UnsubscribeResource(Resource):
    public = frozenset({"GET", "POST"})

    def __init__(self, unsubscriber):
        self.unsubscriber = unsubscriber

    def on_get(self, req, resp):
        # Mail scanners open every link in a message: opening this one only asks. The form
        # posts back here, as a mail client's one-click (RFC 8058) POST does.
        token = req.get_param("token") or ""
        if not self.unsubscriber.is_known(token):
            _unknown(resp)
            return
        resp.content_type = falcon.MEDIA_HTML
        resp.text = html_page("Unsubscribe", "<p>Stop notification emails to this address?</p>"
                              f"<form method=\"post\" action=\"?token={quote(token)}\">"
                              "<button type=\"submit\">Unsubscribe</button></form>")

    def on_post(self, req, resp):
        if self.unsubscriber.unsubscribe(req.get_param("token") or ""):
            _page(resp, 200, "Unsubscribed", "You will get no more notification emails at this address.")
        else:
            _unknown(resp)


def _unknown(resp) -> None:
    _page(resp, 404, "Unknown link", "This unsubscribe link is unknown, or you already unsubscribed.")


def register(app, hs):
    app.add_route(SUBMIT_TOKEN_PATH, SubmitTokenResource(hs.threepids))
    app.add_route(UNSUBSCRIBE_PATH, UnsubscribeResource(hs.email_unsubscriber))
