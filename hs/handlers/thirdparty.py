"""Third-party lookups (/thirdparty/*): the client asks, the application services that declare
the protocol answer, and their answers are merged as Synapse merges them. A service that fails
or answers nonsense is left out; it never fails the lookup."""

import gevent

from hs.errors import Codes, MatrixError

# The field each kind of result must name (Synapse's _is_valid_3pe_result): a user's Matrix ID,
# a location's room alias.
_ID_FIELD = {"user": "userid", "location": "alias"}


class ThirdPartyHandler:
    def __init__(self, registry, api):
        self.registry = registry
        self.api = api

    def _declaring(self, protocol: str) -> list:
        return [s for s in self.registry.services if protocol in s.protocols and s.url]

    def protocols(self, only: str | None = None) -> dict:
        """protocol -> metadata, the `instances` of every service that answered merged into the
        first answer (whose other fields win, as in Synapse)."""
        asked = [(s, p) for s in self.registry.services if s.url for p in s.protocols if only in (None, p)]
        answers = _in_parallel([(self.api.get_protocol, service, protocol) for service, protocol in asked])
        merged = {}
        for (service, protocol), info in zip(asked, answers, strict=True):
            if not isinstance(info, dict) or not isinstance(info.get("instances"), list):
                continue
            instances = [_with_instance_id(service, i) for i in info["instances"] if isinstance(i, dict)]
            if protocol in merged:
                merged[protocol]["instances"] += instances
            else:
                merged[protocol] = {**info, "instances": instances}
        return merged

    def protocol(self, protocol: str) -> dict:
        found = self.protocols(only=protocol).get(protocol)
        if found is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown protocol")
        return found

    def lookup(self, kind: str, protocol: str | None, fields: dict) -> list:
        """GET /thirdparty/{kind}/{protocol} (fields: the query parameters), or without a
        protocol the reverse lookup by Matrix ID (`userid=` / `alias=`), sent to the services
        whose namespace holds that ID. 404 when nothing is found, as the spec says."""
        id_field = _ID_FIELD[kind]
        if protocol is not None:
            if not any(protocol in s.protocols for s in self.registry.services):
                raise MatrixError(404, Codes.NOT_FOUND, "Unknown protocol")
            services = self._declaring(protocol)
        else:
            matrix_id = fields.get(id_field)
            if not isinstance(matrix_id, str) or not matrix_id:
                raise MatrixError(400, Codes.MISSING_PARAM, f"Missing parameter: {id_field}")
            fields = {id_field: matrix_id}
            interested = (lambda s: s.is_interested_in_user(matrix_id)) if kind == "user" else \
                (lambda s: s.is_interested_in_alias(matrix_id))
            services = [s for s in self.registry.services if s.url and interested(s)]
        answers = _in_parallel([(self.api.query_third_party, s, kind, protocol, fields) for s in services])
        results = [r for answer in answers if isinstance(answer, list) for r in answer if _valid_result(r, id_field)]
        if not results:
            raise MatrixError(404, Codes.NOT_FOUND, f"No third-party {kind}s found")
        return results


def _in_parallel(calls: list) -> list:
    """Each call's result, or None where it raised: one slow service does not delay the others
    beyond its own timeout, and one broken service does not fail the lookup."""
    greenlets = [gevent.spawn(call[0], *call[1:]) for call in calls]
    gevent.joinall(greenlets)
    return [g.value if g.successful() else None for g in greenlets]


def _with_instance_id(service, instance: dict) -> dict:
    """Synapse's instance IDs, "{appservice_id}|{network_id}": what /publicRooms'
    third_party_instance_id names to list that service's rooms for that network."""
    network_id = instance.get("network_id")
    if isinstance(network_id, str):
        return {**instance, "instance_id": f"{service.id}|{network_id}"}
    return instance


def _valid_result(result, id_field: str) -> bool:
    return (isinstance(result, dict) and isinstance(result.get(id_field), str)
            and isinstance(result.get("protocol"), str) and isinstance(result.get("fields"), dict))
