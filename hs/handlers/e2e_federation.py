"""End-to-end encryption with other servers' users (server-server API "End-to-End Encryption").

Outbound: our clients' /keys/query and /keys/claim for users of other servers. A query is
answered from the cached device lists (hs/handlers/remote_device_lists.py) for users sharing a
room with ours; everyone else is asked with one POST /user/keys/query per server, all servers at
once, within the client's `timeout`. A server that does not answer is named in `failures`, as
Synapse does. The answer for a user sharing a room, asked for all their devices, is cached.

Inbound: other servers' /user/keys/query, /user/keys/claim and /user/devices/{userId} about our
users, from the same reads and claims our own clients use. Device display names go to other
servers only with allow_device_name_lookup_over_federation (off, as in Synapse).
"""

import logging

from gevent.pool import Pool

from hs.clock import now_ms
from hs.errors import Codes, MatrixError
from hs.federation.http_client import FederationDenied, FederationHttpError, FederationRequestError
from hs.federation.server_name import server_name_of
from hs.handlers.remote_device_lists import (
    MAX_CACHED_DEVICES,
    BadRemoteData,
    checked_cross_signing_key,
    checked_device_keys,
)
from hs.identifiers import user_id_parts
from hs.storage.remote_device_lists import DeviceUpdate

logger = logging.getLogger(__name__)

# As Synapse: at most this many servers asked at once for one request.
PARALLEL_SERVERS = 10
CROSS_SIGNING_SECTIONS = (("master", "master_keys"), ("self_signing", "self_signing_keys"))
QUERY_PATH = "/_matrix/federation/v1/user/keys/query"
CLAIM_PATH = "/_matrix/federation/v1/user/keys/claim"


def failure_of(e: Exception) -> dict:
    """A `failures` entry, in Synapse's shapes."""
    if isinstance(e, FederationHttpError):
        return {"status": e.status, "message": str(e)}
    if isinstance(e, FederationDenied):
        return {"status": 403, "errcode": Codes.FORBIDDEN, "message": str(e)}
    return {"status": 503, "message": str(e) or type(e).__name__}


def _with_name(keys: dict, display_name: str | None) -> dict:
    return {**keys, "unsigned": {} if display_name is None else {"device_display_name": display_name}}


def _bad(message: str, errcode: str = Codes.BAD_JSON) -> MatrixError:
    return MatrixError(400, errcode, message)


class E2eFederation:
    def __init__(self, server_name: str, store, client, keys_reader, keys_handler, devices,
                 allow_device_names: bool):
        self.server_name = server_name
        self.store = store  # RemoteDeviceListStore
        self.client = client
        self.keys_reader = keys_reader
        self.keys_handler = keys_handler
        self.devices = devices
        self.allow_device_names = allow_device_names

    # --- our clients asking about other servers' users ------------------------------------------------

    def query_devices(self, remote: dict[str, list[str]], timeout_s: float) -> dict:
        """{"device_keys", "failures", "master_keys", "self_signing_keys"} for users of other
        servers ({user_id: device IDs, [] for all})."""
        result = {"device_keys": {}, "failures": {}, "master_keys": {}, "self_signing_keys": {}}
        cached = self.store.get_cached(list(remote))
        sharing = self.store.users_sharing_a_room(list(remote))
        # Nothing tells us about the devices of users we no longer share a room with.
        self.store.forget([user_id for user_id in cached if user_id not in sharing])
        to_ask: dict[str, dict[str, list[str]]] = {}
        for user_id, device_ids in remote.items():
            entry = cached.get(user_id) if user_id in sharing else None
            # As Synapse: one cross-signing key without the other means the cache missed an update.
            if entry is None or (entry.master_key is None) != (entry.self_signing_key is None):
                to_ask.setdefault(server_name_of(user_id), {})[user_id] = device_ids
                continue
            result["device_keys"][user_id] = {
                device_id: _with_name(keys, name) for device_id, (keys, name) in entry.devices.items()
                if keys is not None and (not device_ids or device_id in device_ids)}
            for key_type, section in CROSS_SIGNING_SECTIONS:
                key = entry.master_key if key_type == "master" else entry.self_signing_key
                if key is not None:
                    result[section][user_id] = key
        self._fan_out(to_ask, lambda server, query: self._query_server(server, query, sharing, timeout_s, result),
                      result["failures"])
        return result

    def _query_server(self, server: str, query: dict, sharing: set, timeout_s: float, result: dict) -> None:
        body = self.client.post_json(server, QUERY_PATH, {"device_keys": query}, timeout_s=timeout_s)
        if not isinstance(body, dict) or not isinstance(body.get("device_keys", {}), dict):
            raise BadRemoteData("device_keys is not an object")
        for user_id, device_ids in query.items():
            devices = body["device_keys"].get(user_id)
            if not isinstance(devices, dict):
                continue
            answered, kept = {}, []
            for device_id, keys in devices.items():
                checked = checked_device_keys(keys, user_id, device_id)
                if checked is None or (device_ids and device_id not in device_ids):
                    continue
                unsigned = keys.get("unsigned")
                name = unsigned.get("device_display_name") if isinstance(unsigned, dict) else None
                name = name if isinstance(name, str) else None
                answered[device_id] = _with_name(checked, name)
                kept.append(DeviceUpdate(device_id, False, checked, name))
            result["device_keys"][user_id] = answered
            cross_signing = {}
            for key_type, section in CROSS_SIGNING_SECTIONS:
                by_user = body.get(section)
                key = checked_cross_signing_key(by_user.get(user_id) if isinstance(by_user, dict) else None,
                                                user_id, key_type)
                if key is not None:
                    result[section][user_id] = cross_signing[key_type] = key
            if not device_ids and user_id in sharing and len(kept) <= MAX_CACHED_DEVICES:
                self.store.replace(user_id, None, kept, cross_signing.get("master"), cross_signing.get("self_signing"),
                                   now_ms(), only_if_absent=True)

    def claim(self, by_server: dict[str, dict[str, dict[str, str]]], timeout_s: float) -> tuple[dict, dict]:
        """(one_time_keys, failures) for {server: {user_id: {device_id: algorithm}}}."""
        one_time_keys: dict[str, dict] = {}
        failures: dict[str, dict] = {}

        def claim_from(server: str, query: dict) -> None:
            body = self.client.post_json(server, CLAIM_PATH, {"one_time_keys": query}, timeout_s=timeout_s)
            answer = body.get("one_time_keys") if isinstance(body, dict) else None
            if not isinstance(answer, dict):
                raise BadRemoteData("one_time_keys is not an object")
            for user_id, wanted in query.items():
                by_device = answer.get(user_id)
                if isinstance(by_device, dict):
                    one_time_keys[user_id] = {device_id: keys for device_id, keys in by_device.items()
                                              if device_id in wanted and isinstance(keys, dict)}
        self._fan_out(by_server, claim_from, failures)
        return one_time_keys, failures

    @staticmethod
    def _fan_out(by_server: dict, ask, failures: dict) -> None:
        def run(server: str, query: dict) -> None:
            try:
                ask(server, query)
            except (FederationRequestError, BadRemoteData, ValueError) as e:
                logger.info("E2E keys request to %s failed: %s", server, e)
                failures[server] = failure_of(e)
            except Exception as e:  # a bug must not cost the other servers' answers
                logger.exception("E2E keys request to %s failed", server)
                failures[server] = failure_of(e)
        pool = Pool(PARALLEL_SERVERS)
        for server, query in by_server.items():
            pool.spawn(run, server, query)
        pool.join()

    # --- other servers asking about our users ---------------------------------------------------------

    def _check_ours(self, user_id) -> None:
        if user_id_parts(user_id)[1] != self.server_name:
            raise _bad(f"{user_id} is not a user of this server", Codes.INVALID_PARAM)

    def serve_query(self, body: dict) -> dict:
        wanted = body.get("device_keys")
        if not isinstance(wanted, dict):
            raise _bad("device_keys must be an object")
        local = {}
        for user_id, device_ids in wanted.items():
            self._check_ours(user_id)
            if device_ids is not None and (not isinstance(device_ids, list)
                                           or not all(isinstance(d, str) for d in device_ids)):
                raise _bad(f"device_keys.{user_id} must be an array of device IDs")
            local[user_id] = device_ids or None
        response = self.keys_reader.query_local(None, local, self.allow_device_names)
        del response["failures"]
        return response

    def serve_claim(self, body: dict) -> dict:
        wanted_by_user = body.get("one_time_keys")
        if not isinstance(wanted_by_user, dict):
            raise _bad("one_time_keys must be an object")
        wanted = []
        for user_id, by_device in wanted_by_user.items():
            self._check_ours(user_id)
            if not isinstance(by_device, dict) or not all(isinstance(a, str) for a in by_device.values()):
                raise _bad(f"one_time_keys.{user_id} must map device IDs to algorithms")
            wanted.extend((user_id, device_id, algorithm) for device_id, algorithm in by_device.items())
        return {"one_time_keys": self.keys_handler.claim_local(wanted)}

    def serve_user_devices(self, user_id: str) -> dict:
        """GET /user/devices/{userId}: every device (with its keys when it has uploaded them), the
        public cross-signing keys, and the stream_id our next m.device_list_update follows."""
        self._check_ours(user_id)
        stream_id = self.store.get_local_stream_id(user_id)
        queried = self.keys_reader.query_local(None, {user_id: None}, False)
        keys = queried["device_keys"].get(user_id, {})
        devices = []
        for device in self.devices.get_devices(user_id):
            entry = {"device_id": device.device_id}
            if device.device_id in keys:
                entry["keys"] = {k: v for k, v in keys[device.device_id].items() if k != "unsigned"}
            if self.allow_device_names and device.display_name is not None:
                entry["device_display_name"] = device.display_name
            devices.append(entry)
        response = {"user_id": user_id, "stream_id": stream_id, "devices": devices}
        for key_type, section in CROSS_SIGNING_SECTIONS:
            if user_id in queried.get(section, {}):
                response[f"{key_type}_key"] = queried[section][user_id]
        return response
