"""Federation: server names and discovery, signed requests between servers, remote server keys,
and (hs/federation/sender.py) the outbound transaction queues."""
