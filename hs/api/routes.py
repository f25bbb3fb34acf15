"""Where the client API lives: each path under every version prefix clients still use."""

CLIENT_PREFIXES = ("/_matrix/client/r0", "/_matrix/client/v3")


def add_client_route(app, path: str, resource, prefixes=CLIENT_PREFIXES) -> None:
    for prefix in prefixes:
        app.add_route(prefix + path, resource)
