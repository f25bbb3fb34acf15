"""The replication protocol: the master's stream server and the workers' client (issue 5)."""
