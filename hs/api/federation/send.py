"""PUT /_matrix/federation/v1/send/{txnId}: transactions of PDUs and EDUs from other servers."""

from hs.api.federation.base import FederationResource
from hs.api.request import json_body
from hs.errors import Codes, MatrixError

# /server-server-api#transactions: at most 50 PDUs and 100 EDUs in one transaction.
MAX_PDUS, MAX_EDUS = 50, 100


class SendTransactionResource(FederationResource):
    def __init__(self, federation_events):
        self.federation_events = federation_events

    def on_put(self, req, resp, txn_id):
        body = json_body(req)
        pdus, edus = body.get("pdus", []), body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            raise MatrixError(400, Codes.BAD_JSON, "pdus and edus must be lists")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise MatrixError(400, Codes.BAD_JSON, f"At most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs per transaction")
        resp.media = self.federation_events.on_transaction(req.context.origin, txn_id, pdus, edus)


def register(app, hs):
    app.add_route("/_matrix/federation/v1/send/{txn_id}", SendTransactionResource(hs.federation_events))
