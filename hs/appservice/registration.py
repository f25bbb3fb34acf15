"""Application service registration files (`app_service_config_files`): reading them, validating
them with errors that name the file and key, and answering "whose namespace is this?".

Namespaces match as Synapse matches them, with `re.match`: anchored at the start, not at the
end, so bridges' existing registrations keep meaning what they meant there.
"""

import hmac
import re
from dataclasses import dataclass, field

from hs.config import ConfigError, _Section, read_yaml

NAMESPACE_KINDS = ("users", "aliases", "rooms")
_LOCALPART = re.compile(r"[a-z0-9._=/+-]+")
# MSC2409's unstable name, still written by bridges made before Matrix 1.13.
_UNSTABLE_RECEIVE_EPHEMERAL = "de.sorunome.msc2409.push_ephemeral"


@dataclass(frozen=True)
class Namespace:
    regex: re.Pattern
    exclusive: bool


@dataclass
class ApplicationService:
    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender: str
    namespaces: dict = field(default_factory=dict)  # kind -> [Namespace]
    rate_limited: bool = True
    protocols: tuple = ()
    receive_ephemeral: bool = False
    config_path: str = ""

    def _match(self, kind: str, value: str) -> Namespace | None:
        return next((ns for ns in self.namespaces[kind] if ns.regex.match(value)), None)

    def is_interested_in_user(self, user_id: str) -> bool:
        return user_id == self.sender or self._match("users", user_id) is not None

    def is_interested_in_alias(self, alias: str) -> bool:
        return self._match("aliases", alias) is not None

    def is_interested_in_room(self, room_id: str) -> bool:
        return self._match("rooms", room_id) is not None

    def is_exclusive(self, kind: str, value: str) -> bool:
        return any(ns.exclusive and ns.regex.match(value) for ns in self.namespaces[kind])

    def can_act_as(self, user_id: str) -> bool:
        """Whether this service may masquerade as (or register) ``user_id``: its sender, or a user
        in its users namespace."""
        return self.is_interested_in_user(user_id)


class AppServiceRegistry:
    """Every configured application service, with the lookups requests need."""

    def __init__(self, services: list):
        self.services = list(services)

    def by_as_token(self, token: str) -> ApplicationService | None:
        # Compared against every token, in constant time each, so timing says nothing about a guess.
        found = None
        for service in self.services:
            if hmac.compare_digest(service.as_token.encode(), token.encode()):
                found = service
        return found

    def by_id(self, service_id: str) -> ApplicationService | None:
        return next((s for s in self.services if s.id == service_id), None)

    def exclusive_owners(self, kind: str, value: str) -> list:
        """The services holding ``value`` (a user ID, alias or room ID) in an exclusive namespace."""
        return [s for s in self.services if s.is_exclusive(kind, value)]

    def is_reserved_for_others(self, kind: str, value: str, service: ApplicationService | None) -> bool:
        """True when some service other than ``service`` (None: an ordinary user) holds ``value``
        exclusively: the caller must be refused with M_EXCLUSIVE."""
        return any(s is not service for s in self.exclusive_owners(kind, value))


def load_app_services(server_name: str, paths: list) -> AppServiceRegistry:
    services = [read_registration(server_name, path) for path in paths]
    for attr in ("id", "as_token"):
        seen = {}
        for service in services:
            value = getattr(service, attr)
            if value in seen:
                what = "id" if attr == "id" else "as_token (each service needs its own secret)"
                raise ConfigError(f"{service.config_path}: {attr}: the same {what} as {seen[value]}")
            seen[value] = service.config_path
    senders = {}
    for service in services:
        if service.sender in senders:
            raise ConfigError(f"{service.config_path}: sender_localpart: the same as {senders[service.sender]}")
        senders[service.sender] = service.config_path
    return AppServiceRegistry(services)


def read_registration(server_name: str, path: str) -> ApplicationService:
    top = _Section(path, read_yaml(path, "no such file (listed in app_service_config_files)"))
    service_id = top.get("id", str)
    if not service_id:
        top.fail("id", "a non-empty string", service_id)
    url = _required_nullable(top, "url")
    if url is not None and (not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url)):
        top.fail("url", "an http:// or https:// URL, or null for a service that wants no traffic", url)
    as_token = top.get("as_token", str)
    hs_token = top.get("hs_token", str)
    for key, value in (("as_token", as_token), ("hs_token", hs_token)):
        if not value:
            top.fail(key, "a non-empty string", value)
    localpart = top.get("sender_localpart", str)
    if not _LOCALPART.fullmatch(localpart):
        top.fail("sender_localpart", "a user ID localpart (a-z, 0-9, ._=-/+)", localpart)
    namespaces_section = top.section("namespaces")
    if "namespaces" not in top.data:
        top.get("namespaces", dict)  # the spec requires the key, even when it is empty
    namespaces = {kind: _read_namespaces(namespaces_section, kind) for kind in NAMESPACE_KINDS}
    protocols = top.get("protocols", list, [])
    for i, protocol in enumerate(protocols):
        if not isinstance(protocol, str) or not protocol:
            top.fail(f"protocols[{i}]", "a protocol name such as irc", protocol)
    receive_ephemeral = top.get("receive_ephemeral", bool, None)
    if receive_ephemeral is None:
        receive_ephemeral = top.get(_UNSTABLE_RECEIVE_EPHEMERAL, bool, False)
    return ApplicationService(
        id=service_id, url=url, as_token=as_token, hs_token=hs_token, sender=f"@{localpart}:{server_name}",
        namespaces=namespaces, rate_limited=top.get("rate_limited", bool, True), protocols=tuple(protocols),
        receive_ephemeral=receive_ephemeral, config_path=path)


def _required_nullable(top: _Section, key: str):
    if key not in top.data:
        raise ConfigError(f"{top.path}: {key}: this key is required (null if the service wants no traffic)")
    return top.data[key]


def _read_namespaces(section: _Section, kind: str) -> list:
    entries = section.get(kind, list, [])
    namespaces = []
    for i, entry in enumerate(entries):
        item = _Section(section.path, entry, f"{section._key(kind)}[{i}]")
        pattern = item.get("regex", str)
        try:
            regex = re.compile(pattern)
        except re.error as e:
            item.fail("regex", f"a regular expression ({e})", pattern)
        namespaces.append(Namespace(regex, item.get("exclusive", bool)))
    return namespaces
