"""State resolution for room version 1 (spec: /rooms/v1 "State resolution").

Deprecated and known to reset state, but still needed to take part in v1 rooms. Where the spec
text leaves a choice open this follows Synapse, the implementation v1 rooms were built by:
* conflicts are resolved by category (power levels, then join rules, then memberships, then
  everything else), and events of one category are checked against R as it stood before that
  category, so the result does not depend on the order in which keys are visited;
* if no candidate of an ordinary (non-auth) conflict passes the auth rules, the one with the
  lowest depth (the last candidate tried) is taken.
"""

import hashlib

from hs.events.event import Event
from hs.events.room_versions import RoomVersion
from hs.events.state_res import MissingEventError, StateMap

__all__ = ["resolve_state_v1"]

_POWER_LEVELS = ("m.room.power_levels", "")


def resolve_state_v1(
    room_version: RoomVersion, state_sets: list[StateMap], event_map: dict[str, Event], *, auth_check=None
) -> StateMap:
    from hs.events import auth_rules

    auth_check = auth_check or auth_rules.check_auth_rules

    # A key that only some state sets have is not a conflict in v1: "a conflict occurs between
    # states where those states have different event_ids for the same key".
    candidates: dict[tuple[str, str], set[str]] = {}
    for state in state_sets:
        for key, event_id in state.items():
            candidates.setdefault(key, set()).add(event_id)
    resolved = {key: ids.pop() for key, ids in candidates.items() if len(ids) == 1}
    conflicted = {key: ids for key, ids in candidates.items() if key not in resolved}
    if not conflicted:
        return resolved

    needed = {eid for ids in conflicted.values() for eid in ids}
    missing = needed - event_map.keys()
    if missing:
        raise MissingEventError(missing)
    needed_state = {
        resolved[key]
        for eid in needed
        for key in _auth_types(auth_rules, event_map[eid])
        if key in resolved
    }
    missing = needed_state - event_map.keys()
    if missing:
        raise MissingEventError(missing)

    def allowed(event: Event, state: StateMap) -> bool:
        auth_events = {k: event_map[state[k]] for k in _auth_types(auth_rules, event) if k in state}
        create_id = state.get(("m.room.create", ""))
        try:
            auth_check(event, auth_events, create_event=event_map.get(create_id) if create_id else None)
        except auth_rules.AuthError:
            return False
        return True

    categories = [
        [key for key in conflicted if key == _POWER_LEVELS],
        [key for key in conflicted if key[0] == "m.room.join_rules"],
        [key for key in conflicted if key[0] == "m.room.member"],
    ]
    for keys in categories:
        before = dict(resolved)
        for key in keys:
            resolved[key] = _resolve_auth_conflict([event_map[e] for e in conflicted[key]], before, allowed)
    before = dict(resolved)
    for key in conflicted.keys() - {k for keys in categories for k in keys}:
        resolved[key] = _resolve_other_conflict([event_map[e] for e in conflicted[key]], before, allowed)
    return resolved


def _auth_types(auth_rules, event: Event) -> set[tuple[str, str]]:
    return auth_rules.auth_types_for_event(event.room_version, event.type, event.state_key, event.sender, event.content)


def _sha1(event: Event) -> str:
    return hashlib.sha1(event.event_id.encode("utf-8")).hexdigest()


def _resolve_auth_conflict(events: list[Event], state: StateMap, allowed) -> str:
    """Ascending depth, then descending sha1(event_id): take the first, then each next one
    that the auth rules allow on top of the previous, until one is not allowed."""
    ordered = sorted(events, key=lambda e: (-e.depth, _sha1(e)), reverse=True)
    state = dict(state)
    chosen = ordered[0]
    for event in ordered[1:]:
        state[chosen.state_key_tuple] = chosen.event_id
        if not allowed(event, state):
            break
        chosen = event
    return chosen.event_id


def _resolve_other_conflict(events: list[Event], state: StateMap, allowed) -> str:
    """The highest depth, then lowest sha1(event_id), that the auth rules allow."""
    ordered = sorted(events, key=lambda e: (-e.depth, _sha1(e)))
    for event in ordered:
        if allowed(event, state):
            return event.event_id
    return ordered[-1].event_id
