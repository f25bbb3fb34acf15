-- Replication reads every stream by id range across all users (hs/streams.py Stream.get_rows):
-- the streams whose tables were indexed per user or per room only get an index on the id.
CREATE INDEX account_data_stream ON account_data (stream_id);
CREATE INDEX receipts_stream ON receipts (stream_id);
