"""Calls from the homeserver to application services (/_matrix/app/v1): transactions, ping,
user/alias queries and third-party lookups.

Every call carries the service's hs_token as `Authorization: Bearer` only: the legacy
`access_token` query parameter is what Synapse sends only when `use_appservice_legacy_authorization`
is set (off by default), and it would put the secret in the service's access logs. Services are
configured by the admin, so their URLs may be on loopback or private networks (no IP blacklist).
"""

import logging
from urllib.parse import quote

import requests

from hs.errors import MatrixError

logger = logging.getLogger(__name__)

PREFIX = "/_matrix/app/v1"
# MSC2409's unstable key, still read by bridges made before Matrix 1.13; the spec's `ephemeral` is sent too.
UNSTABLE_EPHEMERAL = "de.sorunome.msc2409.ephemeral"
UNSTABLE_TO_DEVICE = "de.sorunome.msc2409.to_device"


class AppServiceError(MatrixError):
    """A failed call, carrying the error the client ping endpoint answers with
    (appservice_ping.yaml): M_URL_NOT_SET 400, M_CONNECTION_TIMEOUT 504, M_CONNECTION_FAILED and
    M_BAD_STATUS (with the service's `status` and `body`) 502."""


class AppServiceApi:
    def __init__(self, server_name: str, timeout_s: float = 60.0):
        self.server_name = server_name
        self.timeout_s = timeout_s
        # One pooled session: transactions to one service reuse their connection.
        self._session = requests.Session()

    # --- the raw call ----------------------------------------------------------------------------

    def _call(self, service, method: str, path: str, *, params=None, json=None,
              timeout_s: float | None = None) -> requests.Response:
        """The service's response, whatever its status; AppServiceError when there is none."""
        if not service.url:
            raise AppServiceError(400, "M_URL_NOT_SET", "Application service doesn't have a URL configured")
        url = service.url.rstrip("/") + PREFIX + path
        try:
            return self._session.request(
                method, url, params=params, json=json, timeout=timeout_s or self.timeout_s,
                headers={"Authorization": f"Bearer {service.hs_token}"}, allow_redirects=False)
        except requests.Timeout as e:
            raise AppServiceError(504, "M_CONNECTION_TIMEOUT", "Connection to application service timed out") from e
        except requests.RequestException as e:
            logger.info("application service %s: %s %s failed: %s", service.id, method, path, e)
            raise AppServiceError(502, "M_CONNECTION_FAILED", "Connection to application service failed") from e

    @staticmethod
    def _bad_status(response: requests.Response, what: str) -> AppServiceError:
        error = AppServiceError(502, "M_BAD_STATUS", f"{what} returned status {response.status_code}",
                                body=response.text[:4096])
        # Not a keyword argument: MatrixError's own first parameter is called `status`.
        error.extra["status"] = response.status_code
        return error

    def _json(self, service, path: str, params=None):
        """GET path: its JSON on 200; None on a non-200, a body that is not JSON or a service that
        cannot be reached (as Synapse, a third-party lookup then has no results from it)."""
        try:
            response = self._call(service, "GET", path, params=params)
        except AppServiceError as e:
            logger.info("application service %s: GET %s: %s", service.id, path, e.errcode)
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            logger.info("application service %s: GET %s answered non-JSON", service.id, path)
            return None

    # --- the calls ---------------------------------------------------------------------------------

    def ping(self, service, transaction_id: str | None) -> None:
        body = {} if transaction_id is None else {"transaction_id": transaction_id}
        response = self._call(service, "POST", "/ping", json=body)
        if response.status_code != 200:
            raise self._bad_status(response, "Ping")

    def query_user(self, service, user_id: str) -> bool:
        """Whether the service says it has created ``user_id`` (it answered 200)."""
        return self._query(service, "/users/" + quote(user_id, safe=""))

    def query_alias(self, service, alias: str) -> bool:
        """Whether the service says it has created a room for ``alias`` (it answered 200)."""
        return self._query(service, "/rooms/" + quote(alias, safe=""))

    def _query(self, service, path: str) -> bool:
        try:
            return self._call(service, "GET", path).status_code == 200
        except AppServiceError as e:
            # A query is a best effort on behalf of a client lookup: an unreachable service means "no".
            logger.info("application service %s: query %s: %s", service.id, path, e.errcode)
            return False

    def push_transaction(self, service, txn_id: int, events: list, ephemeral: list, to_device: list = ()) -> bool:
        """True when the service accepted the transaction (any 2xx); False when it must be retried."""
        body = {"events": events}
        if ephemeral:
            body["ephemeral"] = body[UNSTABLE_EPHEMERAL] = ephemeral
        if to_device:
            body[UNSTABLE_TO_DEVICE] = list(to_device)
        try:
            response = self._call(service, "PUT", f"/transactions/{txn_id}", json=body)
        except AppServiceError as e:
            logger.info("application service %s: transaction %s not sent: %s", service.id, txn_id, e.errcode)
            return False
        if 200 <= response.status_code < 300:
            return True
        logger.info("application service %s: transaction %s answered %s", service.id, txn_id,
                    response.status_code)
        return False

    def get_protocol(self, service, protocol: str) -> dict | None:
        result = self._json(service, "/thirdparty/protocol/" + quote(protocol, safe=""))
        return result if isinstance(result, dict) else None

    def query_third_party(self, service, kind: str, protocol: str | None, fields: dict) -> list:
        """kind: "user" or "location". The service's results (a list), or [] when it has none or
        answered something that is not a list."""
        if kind not in ("user", "location"):
            raise ValueError(f"third-party lookup kind {kind!r}")
        path = f"/thirdparty/{kind}" + ("/" + quote(protocol, safe="") if protocol else "")
        result = self._json(service, path, params=fields)
        return result if isinstance(result, list) else []
