"""The one exception type that carries a Matrix error to the client."""


class Codes:
    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNKNOWN = "M_UNKNOWN"
    NOT_JSON = "M_NOT_JSON"
    BAD_JSON = "M_BAD_JSON"
    MISSING_PARAM = "M_MISSING_PARAM"
    INVALID_PARAM = "M_INVALID_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    NOT_YET_UPLOADED = "M_NOT_YET_UPLOADED"
    CANNOT_OVERWRITE_MEDIA = "M_CANNOT_OVERWRITE_MEDIA"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    FORBIDDEN = "M_FORBIDDEN"
    NOT_FOUND = "M_NOT_FOUND"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    USER_IN_USE = "M_USER_IN_USE"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    EXCLUSIVE = "M_EXCLUSIVE"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    USER_DEACTIVATED = "M_USER_DEACTIVATED"
    WEAK_PASSWORD = "M_WEAK_PASSWORD"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    UNSUPPORTED_ROOM_VERSION = "M_UNSUPPORTED_ROOM_VERSION"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"
    ROOM_IN_USE = "M_ROOM_IN_USE"
    BAD_ALIAS = "M_BAD_ALIAS"
    INVALID_ROOM_STATE = "M_INVALID_ROOM_STATE"


class MatrixError(Exception):
    """A failure the client is told about: HTTP status, errcode, message and extra fields."""

    def __init__(self, status: int, errcode: str, message: str = "", headers=None, **extra):
        super().__init__(f"{status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode
        self.message = message or errcode
        self.headers = headers or {}
        self.extra = extra

    def to_json(self) -> dict:
        body = {"errcode": self.errcode, "error": self.message}
        body.update(self.extra)
        return body


class InteractiveAuthRequired(Exception):
    """User-interactive auth must go on: the 401 body lists flows, params, session, completed."""

    def __init__(self, body: dict):
        super().__init__("interactive auth required")
        self.body = body
