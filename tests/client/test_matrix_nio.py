"""A real client library, matrix-nio, against the master: what it sends is what clients in the
wild send, and what it parses (with its own JSON schemas) is what they need back.

nio is asyncio; each test runs its own event loop with asyncio.run and closes every client it
opened (their aiohttp sessions) before the loop ends.
"""

import asyncio
import contextlib
import itertools

import pytest
from nio import (
    AsyncClient,
    DeleteDevicesAuthResponse,
    DeleteDevicesResponse,
    DevicesResponse,
    LoginError,
    LoginResponse,
    LogoutResponse,
    RegisterResponse,
    UpdateDeviceResponse,
    WhoamiError,
    WhoamiResponse,
)

PASSWORD = "nio correct horse battery"
_names = itertools.count()


@pytest.fixture
def username(request):
    return f"nio{next(_names)}_{request.node.name[5:25].lower()}"


def run(homeserver, scenario):
    """Run ``scenario(new_client)``; ``new_client(user=None)`` makes an AsyncClient closed at the end."""

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            def new_client(user: str = "") -> AsyncClient:
                client = AsyncClient(homeserver.base_url, user)
                stack.push_async_callback(client.close)
                return client
            return await scenario(new_client)

    return asyncio.run(main())


async def _register(new_client, username: str, device_name: str = "nio registration") -> AsyncClient:
    client = new_client()
    resp = await client.register(username, PASSWORD, device_name=device_name)
    assert isinstance(resp, RegisterResponse), resp
    return client


async def _login(new_client, username: str, device_name: str) -> tuple[AsyncClient, LoginResponse]:
    client = new_client(username)
    resp = await client.login(PASSWORD, device_name=device_name)
    assert isinstance(resp, LoginResponse), resp
    return client, resp


def test_nio_registers_through_the_dummy_stage_and_is_logged_in(homeserver, username):
    async def scenario(new_client):
        client = new_client()
        resp = await client.register(username, PASSWORD, device_name="nio registration")
        assert isinstance(resp, RegisterResponse), resp
        assert resp.user_id == f"@{username}:{homeserver.server_name}"
        assert resp.device_id and resp.access_token
        # nio adopts the new session: the token it now holds works.
        assert (client.user_id, client.device_id, client.access_token) == (
            resp.user_id, resp.device_id, resp.access_token)
        who = await client.whoami()
        assert isinstance(who, WhoamiResponse), who
        assert (who.user_id, who.device_id, who.is_guest) == (resp.user_id, resp.device_id, False)

    run(homeserver, scenario)


def test_nio_two_logins_are_two_devices_with_their_names(homeserver, username):
    async def scenario(new_client):
        registered = await _register(new_client, username)
        laptop, laptop_login = await _login(new_client, username, "nio laptop")
        phone, phone_login = await _login(new_client, username, "nio phone")
        assert laptop_login.user_id == phone_login.user_id == registered.user_id
        assert len({registered.device_id, laptop_login.device_id, phone_login.device_id}) == 3
        assert laptop_login.access_token != phone_login.access_token

        who = await phone.whoami()
        assert isinstance(who, WhoamiResponse), who
        assert (who.user_id, who.device_id) == (phone_login.user_id, phone_login.device_id)

        listed = await laptop.devices()
        assert isinstance(listed, DevicesResponse), listed
        assert {d.id: d.display_name for d in listed.devices} == {
            registered.device_id: "nio registration",
            laptop_login.device_id: "nio laptop",
            phone_login.device_id: "nio phone",
        }

    run(homeserver, scenario)


def test_nio_renames_another_device_of_the_same_user(homeserver, username):
    async def scenario(new_client):
        laptop = await _register(new_client, username, "nio laptop")
        _, phone_login = await _login(new_client, username, "nio phone")

        resp = await laptop.update_device(phone_login.device_id, {"display_name": "Renamed phone"})
        assert isinstance(resp, UpdateDeviceResponse), resp

        listed = await laptop.devices()
        assert isinstance(listed, DevicesResponse), listed
        assert {d.id: d.display_name for d in listed.devices} == {
            laptop.device_id: "nio laptop", phone_login.device_id: "Renamed phone"}

    run(homeserver, scenario)


def test_nio_deletes_a_device_through_the_password_stage_and_its_token_dies(homeserver, username):
    async def scenario(new_client):
        laptop = await _register(new_client, username, "nio laptop")
        phone, phone_login = await _login(new_client, username, "nio phone")

        challenge = await laptop.delete_devices([phone_login.device_id])
        assert isinstance(challenge, DeleteDevicesAuthResponse), challenge
        assert challenge.session
        assert ["m.login.password"] in [flow["stages"] for flow in challenge.flows]
        assert challenge.transport_response.status == 401
        # The challenge alone deletes nothing.
        still = await phone.whoami()
        assert isinstance(still, WhoamiResponse), still

        resp = await laptop.delete_devices([phone_login.device_id], auth={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": username},
            "password": PASSWORD, "session": challenge.session})
        assert isinstance(resp, DeleteDevicesResponse), resp

        listed = await laptop.devices()
        assert isinstance(listed, DevicesResponse), listed
        assert [d.id for d in listed.devices] == [laptop.device_id]
        dead = await phone.whoami()
        assert isinstance(dead, WhoamiError), dead
        assert dead.status_code == "M_UNKNOWN_TOKEN"
        assert dead.transport_response.status == 401

    run(homeserver, scenario)


def test_nio_logout_kills_its_token_and_only_its_token(homeserver, username):
    async def scenario(new_client):
        laptop = await _register(new_client, username, "nio laptop")
        phone, phone_login = await _login(new_client, username, "nio phone")

        resp = await phone.logout()
        assert isinstance(resp, LogoutResponse), resp
        assert phone.access_token == ""  # nio forgets a token the server accepted to log out

        stale = new_client(username)
        stale.restore_login(phone_login.user_id, phone_login.device_id, phone_login.access_token)
        dead = await stale.whoami()
        assert isinstance(dead, WhoamiError), dead
        assert dead.status_code == "M_UNKNOWN_TOKEN"
        assert dead.soft_logout is False
        assert dead.transport_response.status == 401

        alive = await laptop.whoami()
        assert isinstance(alive, WhoamiResponse), alive
        assert alive.device_id == laptop.device_id
        listed = await laptop.devices()
        assert isinstance(listed, DevicesResponse), listed
        assert [d.id for d in listed.devices] == [laptop.device_id]

    run(homeserver, scenario)


def test_nio_login_with_a_wrong_password_is_a_login_error(homeserver, username):
    async def scenario(new_client):
        await _register(new_client, username)
        client = new_client(username)
        resp = await client.login("not the password", device_name="nio laptop")
        assert isinstance(resp, LoginError), resp
        assert resp.status_code == "M_FORBIDDEN"
        assert resp.transport_response.status == 403
        assert client.access_token == ""

    run(homeserver, scenario)
