-- Dehydrated devices (MSC3814, hs/storage/dehydrated_devices.py): at most one per user. The
-- device itself is an ordinary row of `devices` (with no access token), so its keys, its inbox
-- and device-list announcements work as for any device; this row marks it and holds the data
-- its owner rehydrates it from. It goes with the device (ON DELETE CASCADE), whichever path
-- deletes it: DELETE /dehydrated_device, DELETE /devices/{id}, logout/all, deactivation.
CREATE TABLE dehydrated_devices (
    user_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_data JSONB NOT NULL,  -- opaque to the server beyond its string `algorithm`
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
