"""matrix-js-sdk (the SDK under Element Web) runs its own sync loop against the master: its
initial sync, filter upload and incremental long-polls, parsed by its own room model.

tests/client/js/sync_check.mjs is the client; package-lock.json pins the SDK, and the
`js_client` fixture runs `npm ci` when node_modules is missing (a clean clone on CI).
"""

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from tests.harness import create, new_user, q

JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")
SCRIPT = os.path.join(JS_DIR, "sync_check.mjs")


@pytest.fixture(scope="module")
def js_client():
    """The node binary, with the pinned matrix-js-sdk installed next to the script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm must be installed to run the matrix-js-sdk client tests (tests/client/js)")
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "matrix-js-sdk")):
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"npm ci failed in {JS_DIR}:\n{done.stdout}\n{done.stderr}"
    return node


class JsSyncCheck:
    """sync_check.mjs as a child process; its JSON report lines arrive on `lines`."""

    def __init__(self, node: str, args: list[str]):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([node, SCRIPT, *args], cwd=JS_DIR, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def next_report(self, timeout: float) -> dict:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"no report from sync_check.mjs in {timeout} s:\n{self.stderr_text()}") from None

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()
        self.stderr.close()


def test_js_sdk_sync_loop_receives_the_room_name_and_a_live_message(homeserver, js_client):
    alice, bob = new_user(homeserver, "jsalice"), new_user(homeserver, "jsbob")
    room_id = create(alice, name="before the js client synced", preset="public_chat")
    assert bob.post(f"/join/{q(room_id)}").status_code == 200
    body = f"hello js-sdk {uuid.uuid4().hex[:8]}"

    check = JsSyncCheck(js_client, [homeserver.base_url, alice.access_token, alice.user_id, alice.device_id,
                                    room_id, "renamed while the js client syncs", body])
    try:
        prepared = check.next_report(timeout=20)
        assert prepared["sync_check"] == "prepared", (prepared, check.stderr_text())
        assert prepared["room_name"] == "before the js client synced"
        assert prepared["messages"] == []

        # Both arrive through the SDK's incremental long-poll, not its initial sync.
        renamed = alice.put(f"/rooms/{q(room_id)}/state/m.room.name",
                            {"name": "renamed while the js client syncs"})
        assert renamed.status_code == 200, renamed.text
        sent = bob.put(f"/rooms/{q(room_id)}/send/m.room.message/js{time.time_ns()}",
                       {"msgtype": "m.text", "body": body})
        assert sent.status_code == 200, sent.text

        done = check.next_report(timeout=20)
        assert done["sync_check"] == "done", (done, check.stderr_text())
        assert done["room_name"] == "renamed while the js client syncs"
        assert done["messages"] == [{"event_id": sent.json()["event_id"], "sender": bob.user_id, "body": body,
                                     "live": True}]
        assert "ERROR" not in done["sync_states"]
        assert check.proc.wait(5) == 0
    finally:
        check.stop()
