"""A bridge-style application service built with mautrix-python (a framework we did not write),
for tests: its aiohttp server and its client calls run on their own asyncio loop in a thread, so
tests drive it with plain calls. It records every event the homeserver sends it and answers alias
queries in its namespace by creating the room."""

import asyncio
import os
import tempfile
import threading

import yaml
from mautrix.appservice import AppService
from mautrix.appservice.state_store import FileASStateStore
from mautrix.types import Event, RoomCreatePreset

from tests.harness import free_port

NAMESPACE_PREFIX = "bridge_"


class MautrixBridge:
    def __init__(self, homeserver_url: str, domain: str, as_token: str = "mautrix-as", hs_token: str = "mautrix-hs",
                 service_id: str = "mautrix-bridge", bot_localpart: str = "bridgebot"):
        self.homeserver_url, self.domain = homeserver_url, domain
        self.as_token, self.hs_token, self.id, self.bot_localpart = as_token, hs_token, service_id, bot_localpart
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="mautrix-bridge-")
        self.events: list[dict] = []
        self.alias_queries: list[str] = []
        self.appservice = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------------

    def registration(self) -> str:
        """The registration file to list in app_service_config_files."""
        path = os.path.join(self.dir, "registration.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({
                "id": self.id, "url": f"http://127.0.0.1:{self.port}", "as_token": self.as_token,
                "hs_token": self.hs_token, "sender_localpart": self.bot_localpart, "rate_limited": False,
                "namespaces": {
                    "users": [{"exclusive": True, "regex": f"@{NAMESPACE_PREFIX}.*:{self.domain}"}],
                    "aliases": [{"exclusive": True, "regex": f"#{NAMESPACE_PREFIX}.*:{self.domain}"}],
                }}, f)
        return path

    def start(self) -> "MautrixBridge":
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        self.appservice = AppService(
            server=self.homeserver_url, domain=self.domain, as_token=self.as_token, hs_token=self.hs_token,
            bot_localpart=self.bot_localpart, id=self.id, loop=self._loop,
            state_store=FileASStateStore(os.path.join(self.dir, "state.json"), binary=False),
            query_alias=self._query_alias)
        self.appservice.matrix_event_handler(self._on_event)
        await self.appservice.start("127.0.0.1", self.port)
        self.appservice.ready = True

    def stop(self) -> None:
        if self.appservice is not None and self._thread.is_alive():
            self.run(self.appservice.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def run(self, coroutine, timeout: float = 60.0):
        """Runs a coroutine on the bridge's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # --- what the homeserver calls -------------------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        self.events.append(event.serialize())

    async def _query_alias(self, alias: str):
        """As a bridge does for a portal alias: create the room with that alias, then answer."""
        self.alias_queries.append(alias)
        localpart = alias[1:].split(":", 1)[0]
        if not localpart.startswith(NAMESPACE_PREFIX):
            return None
        await self.appservice.intent.create_room(alias_localpart=localpart, preset=RoomCreatePreset.PUBLIC,
                                                 name=f"Portal {localpart}")
        return {"created": True}  # mautrix answers 404 for an empty dict

    # --- for tests -------------------------------------------------------------------------------------

    def ghost(self, localpart: str):
        """The intent of a namespace user (a "puppet" of a remote user), registered."""
        intent = self.appservice.intent.user(f"@{NAMESPACE_PREFIX}{localpart}:{self.domain}")
        self.run(intent.ensure_registered())
        return intent

    def event_ids(self, room_id: str) -> list[str]:
        return [e["event_id"] for e in list(self.events) if e.get("room_id") == room_id]
