// matrix-js-sdk running its own sync loop against the homeserver (driven by tests/client/test_js_sdk.py).
//
//   node sync_check.mjs BASE_URL ACCESS_TOKEN USER_ID DEVICE_ID ROOM_ID ROOM_NAME MESSAGE_BODY
//
// Prints one JSON line {"sync_check": "prepared", ...} after the first sync, so the test knows the
// client is past its initial sync before it sends; then {"sync_check": "done", ...} once the room
// carries ROOM_NAME and a live m.room.message with MESSAGE_BODY reached its timeline (exit 0), or
// {"sync_check": "timeout", ...} with what was seen after 30 s (exit 1). The SDK's own logging goes
// to stderr, so stdout holds only these lines.
import { ClientEvent, EventType, RoomEvent, createClient } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const TIMEOUT_MS = 30_000;
const [baseUrl, accessToken, userId, deviceId, roomId, roomName, messageBody] = process.argv.slice(2);
if (!messageBody) {
    console.error("usage: node sync_check.mjs BASE_URL ACCESS_TOKEN USER_ID DEVICE_ID ROOM_ID ROOM_NAME MESSAGE_BODY");
    process.exit(2);
}

logger.setLevel("warn");
for (const method of ["trace", "debug", "info", "log"]) {
    // loglevel's lower levels write to stdout through console.log; keep stdout for the report.
    console[method] = (...args) => console.error(...args);
}

const client = createClient({ baseUrl, accessToken, userId, deviceId });
const seen = { sync_states: [], room_name: null, messages: [] };

function report(kind, extra = {}) {
    process.stdout.write(JSON.stringify({ sync_check: kind, ...seen, ...extra }) + "\n");
}

function finish(kind, code) {
    report(kind);
    client.stopClient();
    process.exit(code);
}

function check() {
    seen.room_name = client.getRoom(roomId)?.name ?? null;
    if (seen.room_name === roomName && seen.messages.some((m) => m.body === messageBody && m.live)) {
        finish("done", 0);
    }
}

client.on(ClientEvent.Sync, (state, prevState) => {
    seen.sync_states.push(state);
    if (state === "PREPARED") {
        seen.room_name = client.getRoom(roomId)?.name ?? null;
        report("prepared", { next_batch: client.store.getSyncToken() });
    }
    if (state === "ERROR") {
        console.error("sync error after", prevState);
    }
    check();
});

client.on(RoomEvent.Timeline, (event, room, toStartOfTimeline, removed, data) => {
    if (room?.roomId !== roomId || event.getType() !== EventType.RoomMessage) return;
    seen.messages.push({
        event_id: event.getId(),
        sender: event.getSender(),
        body: event.getContent().body,
        live: Boolean(data?.liveEvent) && !toStartOfTimeline,
    });
    check();
});

setTimeout(() => finish("timeout", 1), TIMEOUT_MS);
await client.startClient({ initialSyncLimit: 10 });
