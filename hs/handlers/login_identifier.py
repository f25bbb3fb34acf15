"""The user a login or a password stage names: `identifier` (m.id.user) or the legacy `user`."""

from hs.errors import Codes, MatrixError


def user_id_from_identifier(body: dict, server_name: str) -> str | None:
    """The full user ID named, or None when the body names nobody."""
    identifier = body.get("identifier")
    if identifier is not None:
        if not isinstance(identifier, dict):
            raise MatrixError(400, Codes.BAD_JSON, "identifier must be an object")
        kind = identifier.get("type")
        if kind != "m.id.user":
            raise MatrixError(400, Codes.UNKNOWN, f"Unsupported identifier type {kind!r}")
        user = identifier.get("user")
    else:
        user = body.get("user")
        if user is None:
            return None
    if not isinstance(user, str) or not user:
        raise MatrixError(400, Codes.BAD_JSON, "user must be a non-empty string")
    if "\x00" in user:
        # No user ID holds one, and PostgreSQL text cannot carry one into a query.
        raise MatrixError(400, Codes.INVALID_PARAM, "user must not contain NUL")
    if user.startswith("@"):
        return user
    return f"@{user.lower()}:{server_name}"
