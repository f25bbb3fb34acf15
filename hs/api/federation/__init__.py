"""The server-server API: one module per area, each with `register(app, hs)`; requests from other
servers are authenticated by FederationResource (base.py)."""
