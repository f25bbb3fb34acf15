"""Fixtures for the federation tests: one test CA per session; per module one Synapse, our
homeserver (`ours`) on the module's database and a second one of ours (`ours_b`) on its own.

Synapse is installed from PyPI on first use (tests/federation_fixture.py). If that fails the tests
fail, in CI too; HS_SKIP_SYNAPSE=1 skips them instead, explicitly.
"""

import os

import pytest

from tests.federation.fake_peer import FakePeer
from tests.federation_fixture import FederatingHomeserver, SynapseProcess, TestCA
from tests.pg import fresh_database


@pytest.fixture(scope="session")
def test_ca():
    ca = TestCA()
    try:
        yield ca
    finally:
        ca.remove()


@pytest.fixture(scope="module")
def synapse(test_ca):
    if os.environ.get("HS_SKIP_SYNAPSE") == "1":
        pytest.skip("HS_SKIP_SYNAPSE=1: the Synapse interop tests are skipped on request")
    server = SynapseProcess(test_ca)
    try:
        yield server.start()
    finally:
        server.stop()


def _running(server):
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ours(db_dsn, test_ca):
    yield from _running(FederatingHomeserver(db_dsn, test_ca))


@pytest.fixture(scope="module")
def db_dsn_b(pg_server_dsn, template_db):
    """A second database for the second of our homeservers in a module."""
    with fresh_database(pg_server_dsn, "hs_test_b", template=template_db) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def ours_b(db_dsn_b, test_ca):
    yield from _running(FederatingHomeserver(db_dsn_b, test_ca))


@pytest.fixture(scope="module")
def peer(test_ca):
    """A remote server played by the test (tests/federation/fake_peer.py)."""
    fake = FakePeer(test_ca)
    try:
        yield fake
    finally:
        fake.stop()
