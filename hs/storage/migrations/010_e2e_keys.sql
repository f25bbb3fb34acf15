-- End-to-end encryption keys of devices (hs/storage/e2e_keys.py). Every row goes with its device
-- (ON DELETE CASCADE), whichever path deletes it: logout, device deletion, deactivation.

-- A device's identity keys, as the device signed them (without `unsigned`). Written once: a
-- different key for the same device is refused, so others' verification of it stays valid.
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json JSONB NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Unclaimed one-time keys; a claim deletes the row it hands out.
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json JSONB NOT NULL,  -- a string (the bare key) or a signed object
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- At most one fallback key per device and algorithm; a claim hands it out when no one-time key
-- is left and marks it used (never deletes it), until the device uploads a new one.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json JSONB NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
