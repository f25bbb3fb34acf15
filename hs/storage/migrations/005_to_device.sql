-- Send-to-device messages (hs/storage/to_device.py). One row per message and target device,
-- each with its own id of the to_device stream; a row is deleted once the device's /sync
-- acknowledges it (its `since` reaches the id), and with its device (the foreign key), so
-- messages to a deleted device are dropped.
CREATE TABLE device_inbox (
    stream_id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    message JSONB NOT NULL,  -- {"type", "sender", "content"}, as /sync sends it
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX device_inbox_device ON device_inbox (user_id, device_id, stream_id);

-- The highest id the stream has handed out. Delivered messages are deleted, so the inbox alone
-- may not remember it, and a restarted server must never hand out an id a client has already
-- acknowledged (its messages would be deleted unseen).
CREATE TABLE to_device_stream_position (
    lock CHAR(1) PRIMARY KEY DEFAULT 'X' CHECK (lock = 'X'),
    stream_id BIGINT NOT NULL
);
INSERT INTO to_device_stream_position (stream_id) VALUES (0);

-- Transaction IDs of /sendToDevice, per sending device: a retry stores nothing new.
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
