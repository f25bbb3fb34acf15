"""The client-server API, one module per area."""
