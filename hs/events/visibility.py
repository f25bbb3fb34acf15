"""Which events a user may see: history visibility and guest access (client-server API,
"Room History Visibility", "Guest Access", "Room Previews").

The rules are the same in every room version. Everything here is pure and cheap, because it
runs over every /messages page, /context, /event and /sync timeline.

What the callers supply, per event, is the room state *before* the event: the
`m.room.history_visibility` value and the user's membership. For any event other than an
`m.room.history_visibility` event or the user's own `m.room.member` event these two values are
the same before and after the event, so a store that keeps "state after each event" can use
that; for those two kinds of event the value before is the one the event replaced
(`unsigned.prev_content`).

One fact cannot be read from the state at an event: spec rule 3's "the user joined the room at
any point after the event was sent". Callers supply it as `is_peeking`, in Synapse's sense:

* `is_peeking=False` — the user has been joined to the room at some point after these events.
  True for a user who is joined now. For a user who has left, it is true of the events up to
  their leave *if they had joined before leaving*, so callers stop at the leave ("After a user
  has left a room, they may see any events which they were allowed to see before they left
  the room, but no events received after they left") and never hand later events here.
* `is_peeking=True` — the user has not been joined since these events: a non-member previewing
  a `world_readable` room, or a user whose only membership was an invite or knock they never
  accepted. Then only `world_readable` history, and events from when they were joined, show.

There is no safe default (False shows `shared` history to non-members, True hides it from
members), so the argument is required.
"""

from collections.abc import Callable, Mapping

__all__ = [
    "Visibility",
    "effective_history_visibility",
    "filter_events_for_user",
    "guest_may_join",
    "guest_may_peek",
    "visible_to_server",
    "visible_to_user",
]


class Visibility:
    """The `history_visibility` values of `m.room.history_visibility`."""
    WORLD_READABLE = "world_readable"
    SHARED = "shared"
    INVITED = "invited"
    JOINED = "joined"


_KNOWN = frozenset({Visibility.WORLD_READABLE, Visibility.SHARED, Visibility.INVITED, Visibility.JOINED})

# Membership transitions that end an invite or knock without a join (rejecting or rescinding an
# invite, withdrawing or refusing a knock, banning an invitee). Not in the spec's rules; see
# `visible_to_user`. Tuples, not sets, so that an unhashable `membership` in malformed content
# cannot raise.
_ENDED_WITHOUT_JOIN = ("leave", "ban")
_PENDING = ("invite", "knock")


def effective_history_visibility(value: object) -> str:
    """The visibility a `history_visibility` content value means.

    "By default if no `history_visibility` is set, or if the value is not understood, the
    visibility is assumed to be `shared`" (Room History Visibility, Server behaviour). A value
    that is not a string (a malformed event) is not understood either.
    """
    if isinstance(value, str) and value in _KNOWN:
        return value
    return Visibility.SHARED


def _allowed(visibility: str, membership: object, is_peeking: bool) -> bool:
    """Spec rules 1-5 (Room History Visibility, Server behaviour), for the state at one event.

    Rule 4 (invited) also needs the user to have joined since, like rule 3: "Events are
    accessible to newly joined members from the point they were invited onwards", and "In all
    cases except `world_readable`, a user needs to join a room to view events in that room".
    """
    if visibility == Visibility.WORLD_READABLE:  # rule 1
        return True
    if membership == "join":  # rule 2
        return True
    if is_peeking:
        return False
    if visibility == Visibility.SHARED:  # rule 3
        return True
    return visibility == Visibility.INVITED and membership == "invite"  # rule 4; else rule 5


def visible_to_user(event_type: str, event_state_key: str | None, *, event_content: Mapping,
                    user_id: str, history_visibility: str | None, membership_at_event: str | None,
                    is_peeking: bool) -> bool:
    """Whether `user_id` may see one event.

    `history_visibility` is the `history_visibility` content value of the room's
    `m.room.history_visibility` state *before* the event (None when there is none; missing or
    unknown values mean `shared`). `membership_at_event` is the user's membership in the state
    before the event (None when they have no `m.room.member` event). `is_peeking`: see the
    module docstring — True when the user has not been joined to the room at any point after
    this event.

    The rules, from the spec's "Room History Visibility" section:

    1. `world_readable` at the event: visible, to anyone, members or not.
    2. The user was joined at the event: visible. This is why a user who left still sees what
       was sent while they were in the room.
    3. `shared`, and the user has joined since (`not is_peeking`): visible — a joined user sees
       `shared` history from before they joined.
    4. `invited`, the user was invited at the event, and has joined since: visible.
    5. Otherwise hidden. So under `joined` a user sees nothing from before their join, and
       under `invited` nothing from before their invite; and after a leave or ban the
       membership at the event is `leave`/`ban`, so later events are hidden unless
       `world_readable` (or, under `shared`, unless the user joined again since).

    Two kinds of event are judged on the state before *or* after them ("the user should be
    allowed to see the event if the `history_visibility` before or after the event would allow
    them to see it", and likewise for the user's own `m.room.member` events):

    * an `m.room.history_visibility` event is visible if rules 1-5 allow it under the old or
      the new value (its content);
    * the user's own `m.room.member` event is visible if rules 1-5 allow it with their old or
      their new membership. So their own join, and any change away from join (leave, kick,
      ban), always show; an invite or knock under `joined` history does not (the user sees
      those through the invite and knock sections of /sync instead).

    One addition to the spec (Synapse makes it for invites ending in `leave`; we take knocks and
    bans too): the user's own event that ends an invite or knock without a join is visible. They saw the
    invite or knock out of band, and /sync's `leave` section must be able to show them that it
    ended; the event tells them nothing else.
    """
    visibility = effective_history_visibility(history_visibility)
    if _allowed(visibility, membership_at_event, is_peeking):
        return True
    if event_state_key is None:
        return False
    if not isinstance(event_content, Mapping):
        event_content = {}
    if event_type == "m.room.history_visibility" and event_state_key == "":
        new_visibility = effective_history_visibility(event_content.get("history_visibility"))
        return _allowed(new_visibility, membership_at_event, is_peeking)
    if event_type == "m.room.member" and event_state_key == user_id:
        new_membership = event_content.get("membership")
        if membership_at_event in _PENDING and new_membership in _ENDED_WITHOUT_JOIN:
            return True
        return _allowed(visibility, new_membership, is_peeking)
    return False


def filter_events_for_user(user_id: str, events: list[dict],
                           state_at_event: Callable[[str], tuple[str | None, str | None]], *,
                           is_peeking: bool) -> list[dict]:
    """The events (client format: `event_id`, `type`, `content`, and `state_key` on state
    events) that `user_id` may see, in the order given.

    `state_at_event(event_id)` returns `(history_visibility, membership)`: the
    `history_visibility` content value and the user's membership in the state *before* that
    event, as `visible_to_user` takes them. `is_peeking` holds for the whole batch, so a
    caller serving a user who left passes only events up to their leave.
    """
    visible = []
    for event in events:
        history_visibility, membership = state_at_event(event["event_id"])
        if visible_to_user(event["type"], event.get("state_key"), event_content=event.get("content", {}),
                           user_id=user_id, history_visibility=history_visibility,
                           membership_at_event=membership, is_peeking=is_peeking):
            visible.append(event)
    return visible


def visible_to_server(history_visibility: str | None, memberships: list) -> bool:
    """Whether another server may see an event unredacted (/event, /backfill,
    /get_missing_events), as Synapse decides it (`filter_events_for_server`): under
    `world_readable` or `shared` history, yes (the server asking is in the room); under
    `invited` or `joined`, only if one of its users was joined at the event, or invited under
    `invited`. `memberships` are that server's users' memberships in the state at the event;
    `history_visibility` the content value there (None when there is none).
    """
    visibility = effective_history_visibility(history_visibility)
    if visibility in (Visibility.WORLD_READABLE, Visibility.SHARED):
        return True
    return "join" in memberships or (visibility == Visibility.INVITED and "invite" in memberships)


def guest_may_join(guest_access: str | None) -> bool:
    """Whether guest users may join, given the room's current `m.room.guest_access` content
    value (None when the room has no such event).

    "Servers MUST only allow guest users to join rooms if the `m.room.guest_access` state event
    is present on the room, and has the `guest_access` value `can_join`" (Guest Access, Server
    behaviour). The same test decides, when the event changes, whether joined guests must be
    made to leave ("If the `m.room.guest_access` event is changed to stop this from being the
    case, the server MUST set those users' `m.room.member` state to `leave`").
    """
    return guest_access == "can_join"


def guest_may_peek(history_visibility: str | None) -> bool:
    """Whether a guest who has not joined may read the room (room previews), given the room's
    current `history_visibility` content value.

    Only `world_readable` rooms can be previewed, and "This includes guest users"
    (`world_readable`, Room History Visibility). `m.room.guest_access` does not enter into it:
    the spec gives it a say over joining only. Which events the guest then sees is
    `visible_to_user` with `is_peeking=True`.
    """
    return effective_history_visibility(history_visibility) == Visibility.WORLD_READABLE
