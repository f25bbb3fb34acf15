"""The stream catalogue and the sync token.

A sync token is `s<room>_<presence>_<typing>_<receipt>_<account_data>_<push_rules>_<to_device>_<device_list>`:
one position per stream. New streams are only ever appended, and missing trailing keys read
as 0, so tokens handed out by an older server stay valid.
"""

import re
from dataclasses import dataclass, fields, replace

from hs.errors import Codes, MatrixError

_TOKEN = re.compile(r"^s\d+(_\d+)*$")


@dataclass(frozen=True)
class StreamToken:
    room: int = 0
    presence: int = 0
    typing: int = 0
    receipt: int = 0
    account_data: int = 0
    push_rules: int = 0
    to_device: int = 0
    device_list: int = 0

    @classmethod
    def parse(cls, token: str) -> "StreamToken":
        if not _TOKEN.match(token):
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid sync token {token!r}")
        parts = [int(p) for p in token[1:].split("_")]
        names = [f.name for f in fields(cls)]
        if len(parts) > len(names):
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid sync token {token!r}")
        # Missing trailing keys read as 0.
        return cls(**dict(zip(names, parts, strict=False)))

    def __str__(self) -> str:
        return "s" + "_".join(str(getattr(self, f.name)) for f in fields(self))


class Streams:
    """Where each stream stands in this process: positions that may be handed out."""

    def __init__(self, event_stream):
        self.event_stream = event_stream
        self.account_data_stream = None  # set by the composition root (hs/server.py)
        self.typing_stream = None  # hs/handlers/typing.py (in memory), set by the composition root
        self.receipt_stream = None  # set by the composition root

    def current_token(self) -> StreamToken:
        # Only the room stream exists so far; the others stay 0 until they are built.
        token = StreamToken(room=self.event_stream.get_current_token())
        if self.account_data_stream is not None:
            token = replace(token, account_data=self.account_data_stream.get_current_token())
        if self.typing_stream is not None:
            token = replace(token, typing=self.typing_stream.get_current_token())
        if self.receipt_stream is not None:
            token = replace(token, receipt=self.receipt_stream.get_current_token())
        return token
