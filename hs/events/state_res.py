"""State resolution v2 (rooms v2-v11) and v2.1 (room v12).

Spec: /rooms/v2 "State resolution" (the v2-state-res fragment) and /rooms/v12 "State
resolution". v2.1 (MSC4297) changes two things, both switched by `room_version.state_res`:
the full conflicted set also holds the *conflicted state subgraph*, and the first pass of
iterative auth checks starts from an empty state map instead of the unconflicted state map.

Pure: every event the algorithm may look at (the events of the state sets and their full auth
chains) must be in `event_map`; if one is not, MissingEventError names the IDs to fetch.

Room version 1 uses an older algorithm, in state_res_v1.
"""

import heapq
import math
from collections.abc import Callable, Iterable

from hs.events.event import Event
from hs.events.power_levels import get_user_power_level
from hs.events.room_versions import RoomVersion, StateRes

__all__ = ["MissingEventError", "StateMap", "auth_chain_ids", "resolve_state"]

StateMap = dict[tuple[str, str], str]

_POWER_LEVELS = ("m.room.power_levels", "")


class MissingEventError(Exception):
    """Events the resolution needs are not in the event map: fetch them and try again."""

    def __init__(self, event_ids: Iterable[str]):
        self.event_ids = frozenset(event_ids)
        super().__init__(f"events needed for state resolution are missing: {', '.join(sorted(self.event_ids))}")


def resolve_state(
    room_version: RoomVersion,
    state_sets: list[StateMap],
    event_map: dict[str, Event],
    *,
    auth_check: Callable | None = None,
) -> StateMap:
    """The resolution of `state_sets` (each (type, state_key) -> event ID).

    `auth_check(event, auth_events, *, create_event)` applies the authorization rules and
    raises auth_rules.AuthError to reject; it defaults to auth_rules.check_auth_rules.
    """
    if room_version.state_res == StateRes.V1:
        from hs.events.state_res_v1 import resolve_state_v1

        return resolve_state_v1(room_version, state_sets, event_map, auth_check=auth_check)

    unconflicted, conflicted = _split_state_sets(state_sets)
    if not conflicted:
        return unconflicted

    _require_events(room_version, (eid for state in state_sets for eid in state.values()), event_map)
    ctx = _Context(room_version, event_map, _find_create_event(room_version, state_sets, event_map), auth_check)

    # Auth difference: what some state sets' full auth chains hold and others lack.
    chains = [auth_chain_ids(state.values(), event_map) for state in state_sets]
    full_conflicted = conflicted | (set.union(*chains) - set.intersection(*chains))
    if room_version.state_res == StateRes.V2_1:
        full_conflicted |= _conflicted_subgraph(conflicted, event_map)

    # Step 1: the power events and the parts of their auth chains that are in conflict.
    power_events = {eid for eid in full_conflicted if _is_power_event(event_map[eid])}
    power_events |= auth_chain_ids(power_events, event_map) & full_conflicted
    sorted_power_events = _reverse_topological_power_order(ctx, power_events)

    # Step 2. v2.1 starts from nothing so that the auth events of the replayed events, not
    # whatever the state sets happened to agree on, decide what authorises them (MSC4297
    # "Problem A").
    initial_state = {} if room_version.state_res == StateRes.V2_1 else unconflicted
    partial_state = _iterative_auth_checks(ctx, sorted_power_events, initial_state)

    # Steps 3 and 4: everything else, ordered along the resolved power levels' mainline.
    others = _mainline_order(ctx, full_conflicted - power_events, partial_state.get(_POWER_LEVELS))
    resolved = _iterative_auth_checks(ctx, others, partial_state)

    # Step 5: what every state set agrees on always wins.
    resolved.update(unconflicted)
    return resolved


def auth_chain_ids(event_ids: Iterable[str], event_map: dict[str, Event]) -> set[str]:
    """The union of the auth chains of the events: every event reachable from them through one
    or more `auth_events` links (so one of the given events is in it only if another one's
    auth chain holds it)."""
    chain: set[str] = set()
    missing: set[str] = set()
    stack = []
    for event_id in event_ids:
        event = event_map.get(event_id)
        if event is None:
            missing.add(event_id)
        else:
            stack.extend(event.auth_event_ids)
    while stack:
        event_id = stack.pop()
        if event_id in chain:
            continue
        chain.add(event_id)
        event = event_map.get(event_id)
        if event is None:
            missing.add(event_id)
        else:
            stack.extend(a for a in event.auth_event_ids if a not in chain)
    if missing:
        raise MissingEventError(missing)
    return chain


def _split_state_sets(state_sets: list[StateMap]) -> tuple[StateMap, set[str]]:
    """The unconflicted state map and the conflicted state set. A key missing from one state
    set is conflicted even if every other set has the same event for it."""
    unconflicted: StateMap = {}
    conflicted: set[str] = set()
    for key in set().union(*state_sets):
        values = {state.get(key) for state in state_sets}
        if len(values) == 1 and None not in values:
            unconflicted[key] = values.pop()
        else:
            conflicted.update(v for v in values if v is not None)
    return unconflicted, conflicted


def _require_events(room_version: RoomVersion, event_ids: Iterable[str], event_map: dict[str, Event]) -> None:
    """Raise MissingEventError unless the events, their full auth chains and (v12) the create
    events their room IDs name are all in the map."""
    seeds = set(event_ids)
    missing = seeds - event_map.keys()
    if room_version.room_id_from_create_event:
        seeds |= {_create_event_id(event_map[eid]) for eid in seeds - missing if event_map[eid].room_id}
        missing = seeds - event_map.keys()
    try:
        auth_chain_ids(seeds - missing, event_map)
    except MissingEventError as e:
        missing |= e.event_ids
    if missing:
        raise MissingEventError(missing)


def _create_event_id(event: Event) -> str:
    # v12: the room ID is the create event's ID with '!' for '$' (/appendices#room-ids).
    return "$" + event.room_id[1:]


def _find_create_event(room_version: RoomVersion, state_sets: list[StateMap], event_map: dict[str, Event]) -> Event:
    """The room's create event. A valid room has exactly one, and every state holds it; in
    v12 the create event is no auth event and is named by the room ID instead."""
    for state in state_sets:
        for event_id in state.values():
            event = event_map[event_id]
            if room_version.room_id_from_create_event and event.room_id:
                return event_map[_create_event_id(event)]
            if _is(event, ("m.room.create", "")):
                return event
    raise ValueError("no state set holds the room's m.room.create event")


def _is_power_event(event: Event) -> bool:
    """Events that might take an ability away: power levels, join rules, kicks and bans."""
    if not event.is_state():
        return False
    if event.type in ("m.room.power_levels", "m.room.join_rules"):
        return True
    return event.type == "m.room.member" and event.membership in ("leave", "ban") and event.sender != event.state_key


def _conflicted_subgraph(conflicted: set[str], event_map: dict[str, Event]) -> set[str]:
    """v2.1: every event on an auth_events path from one conflicted event to another,
    endpoints included: those reachable from a conflicted event that can reach one."""
    below = auth_chain_ids(conflicted, event_map) | conflicted
    cited_by: dict[str, list[str]] = {}
    for event_id in below:
        for auth_id in event_map[event_id].auth_event_ids:
            cited_by.setdefault(auth_id, []).append(event_id)
    reaches_conflicted = set(conflicted)
    stack = list(conflicted)
    while stack:
        for citing in cited_by.get(stack.pop(), ()):
            if citing not in reaches_conflicted:
                reaches_conflicted.add(citing)
                stack.append(citing)
    return reaches_conflicted


class _Context:
    """What the orderings and the auth checks share during one resolution."""

    def __init__(self, room_version: RoomVersion, event_map: dict[str, Event], create_event: Event, auth_check):
        from hs.events import auth_rules

        self.room_version = room_version
        self.events = event_map
        self.create_event = create_event
        self.auth_check = auth_check or auth_rules.check_auth_rules
        self.auth_types_for_event = auth_rules.auth_types_for_event
        self.auth_error = auth_rules.AuthError
        self._power_levels_parent: dict[str, str | None] = {}

    def power_levels_auth_event(self, event_id: str) -> str | None:
        """The m.room.power_levels event among the event's auth events, if any."""
        if event_id not in self._power_levels_parent:
            self._power_levels_parent[event_id] = next(
                (a for a in self.events[event_id].auth_event_ids if _is(self.events[a], _POWER_LEVELS)), None
            )
        return self._power_levels_parent[event_id]

    def sender_power_level(self, event: Event) -> int | float:
        """The sender's level by the power levels among the event's own auth events."""
        power_levels_id = self.power_levels_auth_event(event.event_id)
        power_levels = self.events[power_levels_id] if power_levels_id else None
        return get_user_power_level(event.sender, power_levels, self.create_event)


def _is(event: Event, key: tuple[str, str]) -> bool:
    return (event.type, event.state_key) == key


def _reverse_topological_power_order(ctx: _Context, event_ids: set[str]) -> list[str]:
    """Kahn's algorithm over the auth DAG, taking at each step the smallest ready event by
    (sender's power level descending, origin_server_ts, event_id)."""
    # Edges are the auth_events links between members of the set only, as Synapse and Ruma
    # build them. The spec's "DAG formed by auth events" can also be read to follow paths
    # through events outside the set; the two differ only when a state set is stale in rooms
    # before v12, and there the servers that hold most rooms must agree with us.
    parents = {eid: {a for a in ctx.events[eid].auth_event_ids if a in event_ids} for eid in event_ids}
    waiting_on = {eid: len(parents[eid]) for eid in event_ids}
    children: dict[str, list[str]] = {}
    for eid, eid_parents in parents.items():
        for parent in eid_parents:
            children.setdefault(parent, []).append(eid)

    def order_key(eid: str) -> tuple:
        event = ctx.events[eid]
        return -ctx.sender_power_level(event), event.origin_server_ts, eid

    ready = [(order_key(eid), eid) for eid, count in waiting_on.items() if count == 0]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _, eid = heapq.heappop(ready)
        ordered.append(eid)
        for child in children.get(eid, ()):
            waiting_on[child] -= 1
            if waiting_on[child] == 0:
                heapq.heappush(ready, (order_key(child), child))
    return ordered


def _iterative_auth_checks(ctx: _Context, event_ids: list[str], state: StateMap) -> StateMap:
    """Apply each event in turn on top of `state` if the auth rules allow it there.

    A key the rules need that the state lacks comes from the event's own auth events, unless
    that auth event was rejected. Events already rejected are checked like any other: the spec
    re-authorises them here (/rooms/v2 "Rejected events")."""
    state = dict(state)
    for event_id in event_ids:
        event = ctx.events[event_id]
        own_auth_events = {}
        for auth_id in event.auth_event_ids:
            auth_event = ctx.events[auth_id]
            if auth_event.rejected_reason is None and auth_event.is_state():
                own_auth_events[auth_event.state_key_tuple] = auth_event
        auth_events = {}
        for key in ctx.auth_types_for_event(ctx.room_version, event.type, event.state_key, event.sender, event.content):
            if key in state:
                auth_events[key] = ctx.events[state[key]]
            elif key in own_auth_events:
                auth_events[key] = own_auth_events[key]
        try:
            ctx.auth_check(event, auth_events, create_event=ctx.create_event)
        except ctx.auth_error:
            continue
        state[event.state_key_tuple] = event_id
    return state


def _mainline_order(ctx: _Context, event_ids: set[str], power_levels_id: str | None) -> list[str]:
    """Order by mainline position (older power levels first), origin_server_ts, event_id.

    The mainline of P is P, the power levels event in P's auth events, and so on. An event's
    position is the index on it of the first event of its own chain of power levels auth
    events (itself excluded); infinite, so first, if that chain never meets the mainline."""
    mainline_index: dict[str, int] = {}
    pl = power_levels_id
    while pl is not None:
        mainline_index[pl] = len(mainline_index)
        pl = ctx.power_levels_auth_event(pl)

    # first_on_mainline[p]: the mainline index where p's own chain (p included) meets it.
    first_on_mainline: dict[str, float] = dict(mainline_index)

    def position(event_id: str) -> float:
        path = []
        pl = ctx.power_levels_auth_event(event_id)
        while pl is not None and pl not in first_on_mainline:
            path.append(pl)
            pl = ctx.power_levels_auth_event(pl)
        found = math.inf if pl is None else first_on_mainline[pl]
        for p in path:
            first_on_mainline[p] = found
        return found

    def order_key(event_id: str) -> tuple:
        return -position(event_id), ctx.events[event_id].origin_server_ts, event_id

    return sorted(event_ids, key=order_key)
