"""The auth events as the authorization rules read them, and the error they raise.

Shared by hs/events/auth_rules.py (the entry point) and hs/events/auth_membership.py.
"""

from hs.events.event import Event
from hs.events.power_levels import get_named_level, get_user_power_level

CREATE_KEY = ("m.room.create", "")


class AuthError(Exception):
    """The event is not allowed. `reason` is fit to show a client (M_FORBIDDEN's error)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AuthState:
    """A state map keyed by (type, state_key), plus the room's create event."""

    def __init__(self, auth_events: dict[tuple[str, str], Event], create: Event):
        self._events = auth_events
        self.create = create
        self.power_levels = auth_events.get(("m.room.power_levels", ""))

    def get(self, event_type: str, state_key: str) -> Event | None:
        return self._events.get((event_type, state_key))

    def membership(self, user_id: str) -> str | None:
        """The user's current membership; None if they have no member event."""
        member = self._events.get(("m.room.member", user_id))
        return member.membership if member is not None else None

    def power_level(self, user_id: str) -> int | float:
        return get_user_power_level(user_id, self.power_levels, self.create)

    def named_level(self, name: str) -> int:
        return get_named_level(name, self.power_levels)

    @property
    def join_rule(self) -> str:
        # The spec leaves a room without a join rule undefined. Like Synapse, read it as
        # "invite": the strictest rule that still lets an invited user join, and one that
        # keeps us agreeing with the largest implementation on which joins are valid.
        event = self._events.get(("m.room.join_rules", ""))
        rule = event.content.get("join_rule") if event is not None else None
        return rule if rule is not None else "invite"
