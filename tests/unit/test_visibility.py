"""History visibility and guest access (client-server API: "Room History Visibility", "Guest
Access", "Room Previews"). Spec quotations are from v1.19; the rules do not vary by room version.
"""

import pytest

from hs.events.visibility import (
    Visibility,
    effective_history_visibility,
    filter_events_for_user,
    guest_may_join,
    guest_may_peek,
    visible_to_user,
)

ALICE = "@alice:hs.example"
BOB = "@bob:hs.example"

WR, SHARED, INVITED, JOINED = "world_readable", "shared", "invited", "joined"
MEMBERSHIPS = [None, "join", "invite", "knock", "leave", "ban"]


def message_visible(history_visibility, membership, *, is_peeking):
    return visible_to_user("m.room.message", None, event_content={"body": "hi"}, user_id=ALICE,
                           history_visibility=history_visibility, membership_at_event=membership,
                           is_peeking=is_peeking)


def own_member_visible(history_visibility, before, after, *, is_peeking=False):
    return visible_to_user("m.room.member", ALICE, event_content={"membership": after}, user_id=ALICE,
                           history_visibility=history_visibility, membership_at_event=before,
                           is_peeking=is_peeking)


def history_visibility_event_visible(before, after, membership, *, is_peeking):
    return visible_to_user("m.room.history_visibility", "", event_content={"history_visibility": after},
                           user_id=ALICE, history_visibility=before, membership_at_event=membership,
                           is_peeking=is_peeking)


# "Server behaviour", rules 1-5, for an ordinary event. Per visibility: membership at the event ->
# (visible when the user has joined since the event, visible when they have not: is_peeking).
#   1. "If the history_visibility was set to world_readable, allow."
#   2. "If the user's membership was join, allow."
#   3. "If history_visibility was set to shared, and the user joined the room at any point after
#      the event was sent, allow."
#   4. "If the user's membership was invite, and the history_visibility was set to invited, allow."
#      (with "Events are accessible to newly joined members from the point they were invited
#      onwards": the user must have joined since, as for rule 3)
#   5. "Otherwise, deny."
RULES_TABLE = {
    WR: {None: (True, True), "join": (True, True), "invite": (True, True), "knock": (True, True),
         "leave": (True, True), "ban": (True, True)},
    SHARED: {None: (True, False), "join": (True, True), "invite": (True, False), "knock": (True, False),
             "leave": (True, False), "ban": (True, False)},
    INVITED: {None: (False, False), "join": (True, True), "invite": (True, False), "knock": (False, False),
              "leave": (False, False), "ban": (False, False)},
    JOINED: {None: (False, False), "join": (True, True), "invite": (False, False), "knock": (False, False),
             "leave": (False, False), "ban": (False, False)},
}
RULE_CASES = [(hv, m, peeking, RULES_TABLE[hv][m][peeking])
              for hv in RULES_TABLE for m in MEMBERSHIPS for peeking in (False, True)]


@pytest.mark.parametrize("history_visibility, membership, is_peeking, expected", RULE_CASES)
def test_rules_for_an_ordinary_event(history_visibility, membership, is_peeking, expected):
    assert message_visible(history_visibility, membership, is_peeking=is_peeking) is expected


# "By default if no history_visibility is set, or if the value is not understood, the visibility
# is assumed to be shared."
@pytest.mark.parametrize("value", [None, "", "Shared", "WORLD_READABLE", "public", 1, ["joined"], {}])
@pytest.mark.parametrize("membership", MEMBERSHIPS)
@pytest.mark.parametrize("is_peeking", [False, True])
def test_missing_or_unknown_history_visibility_behaves_as_shared(value, membership, is_peeking):
    assert effective_history_visibility(value) == Visibility.SHARED
    expected = RULES_TABLE[SHARED][membership][is_peeking]
    assert message_visible(value, membership, is_peeking=is_peeking) is expected


def test_constants_are_the_spec_values():
    assert (Visibility.WORLD_READABLE, Visibility.SHARED, Visibility.INVITED, Visibility.JOINED) == (
        "world_readable", "shared", "invited", "joined")
    for value in (WR, SHARED, INVITED, JOINED):
        assert effective_history_visibility(value) == value


# shared: "Previous events are always accessible to newly joined members. All events in the room
# are accessible, even those sent when the member was not a part of the room."
def test_joined_user_sees_shared_history_from_before_they_joined():
    assert message_visible(SHARED, None, is_peeking=False)


# invited: "Events are accessible to newly joined members from the point they were invited
# onwards."
def test_invited_visibility_shows_events_from_the_invite_on():
    assert not message_visible(INVITED, None, is_peeking=False)
    assert message_visible(INVITED, "invite", is_peeking=False)
    assert message_visible(INVITED, "join", is_peeking=False)


# invited: "Events stop being accessible when the member's state changes to something other than
# invite or join."
@pytest.mark.parametrize("membership", ["leave", "ban", "knock"])
def test_invited_visibility_hides_events_once_membership_is_neither_invite_nor_join(membership):
    assert not message_visible(INVITED, membership, is_peeking=False)


# joined: "Events are accessible to newly joined members from the point they joined the room
# onwards."
@pytest.mark.parametrize("membership", [None, "invite", "knock", "leave"])
def test_joined_visibility_hides_events_from_before_the_join(membership):
    assert not message_visible(JOINED, membership, is_peeking=False)
    assert message_visible(JOINED, "join", is_peeking=False)


# "After a user has left a room, they may see any events which they were allowed to see before
# they left the room, but no events received after they left." After the leave, the membership at
# the event is leave, and (not having rejoined) the user has not joined since: is_peeking.
@pytest.mark.parametrize("history_visibility", [SHARED, INVITED, JOINED, None])
@pytest.mark.parametrize("membership_after_leaving", ["leave", "ban"])
def test_user_who_left_cannot_see_events_after_their_leave(history_visibility, membership_after_leaving):
    assert not message_visible(history_visibility, membership_after_leaving, is_peeking=True)


# ... and for invited/joined the membership alone hides them, even if a caller does not bound
# the history at the leave.
@pytest.mark.parametrize("history_visibility", [INVITED, JOINED])
def test_events_after_a_leave_are_hidden_by_membership_under_invited_and_joined(history_visibility):
    assert not message_visible(history_visibility, "leave", is_peeking=False)


@pytest.mark.parametrize("history_visibility", [SHARED, INVITED, JOINED])
def test_user_who_left_still_sees_what_was_sent_while_they_were_joined(history_visibility):
    # Rule 2: "If the user's membership was join, allow."
    assert message_visible(history_visibility, "join", is_peeking=True)


# world_readable: "All events while this is the m.room.history_visibility value may be shared by
# any participating homeserver with any authenticated user, regardless of whether they have ever
# joined the room."
@pytest.mark.parametrize("membership", MEMBERSHIPS)
def test_world_readable_events_are_visible_to_non_members_and_peekers(membership):
    assert message_visible(WR, membership, is_peeking=True)
    assert message_visible(WR, membership, is_peeking=False)


# "In all cases except world_readable, a user needs to join a room to view events in that room."
# Room previews: "servers are required to only return events where the room state at the event
# had ... history_visibility value world_readable."
@pytest.mark.parametrize("history_visibility", [SHARED, INVITED, JOINED, None])
@pytest.mark.parametrize("membership", [None, "invite", "knock", "leave"])
def test_peeker_who_never_joined_sees_only_world_readable_events(history_visibility, membership):
    assert not message_visible(history_visibility, membership, is_peeking=True)


def test_banned_user_sees_neither_events_while_banned_nor_later_ones():
    for history_visibility in (INVITED, JOINED):
        assert not message_visible(history_visibility, "ban", is_peeking=False)
    assert not message_visible(SHARED, "ban", is_peeking=True)
    assert message_visible(WR, "ban", is_peeking=True)


# "For example, a user can always see m.room.member events which set their membership to join, or
# which change their membership from join to any other value, even if history_visibility is
# joined."
@pytest.mark.parametrize("history_visibility", [WR, SHARED, INVITED, JOINED])
@pytest.mark.parametrize("is_peeking", [False, True])
@pytest.mark.parametrize("before, after", [
    (None, "join"), ("invite", "join"), ("knock", "join"), ("leave", "join"), ("join", "join"),
    ("join", "leave"), ("join", "ban"),
])
def test_own_join_and_changes_away_from_join_are_always_visible(history_visibility, is_peeking,
                                                                before, after):
    assert own_member_visible(history_visibility, before, after, is_peeking=is_peeking)


# "for the user's own m.room.member events, the user should be allowed to see the event if their
# membership before or after the event would allow them to see it." Neither an invite nor a knock
# lets a user see joined history, nor a ban of someone who was not in the room.
@pytest.mark.parametrize("before, after", [
    (None, "invite"), ("leave", "invite"), (None, "knock"), ("leave", "knock"), (None, "ban"),
    ("leave", "ban"), ("ban", "leave"),
])
def test_own_membership_event_is_hidden_when_neither_side_allows_it_under_joined(before, after):
    assert not own_member_visible(JOINED, before, after)


# Before or after: an invite under invited visibility is allowed by the membership it sets.
def test_own_invite_is_visible_under_invited_history_once_joined_since():
    assert own_member_visible(INVITED, None, "invite", is_peeking=False)
    assert not own_member_visible(INVITED, None, "invite", is_peeking=True)


# Not in the spec (as Synapse): the event that ends an invite or knock without a join. The user
# held the invite or knock out of band (/sync's invite and knock sections) and must see it end;
# they never joined, so is_peeking.
@pytest.mark.parametrize("history_visibility", [SHARED, INVITED, JOINED])
@pytest.mark.parametrize("before, after", [("invite", "leave"), ("knock", "leave"), ("invite", "ban"),
                                           ("knock", "ban")])
def test_own_event_ending_an_invite_or_knock_is_visible(history_visibility, before, after):
    assert own_member_visible(history_visibility, before, after, is_peeking=True)


# The before/after rule is for "the user's own m.room.member events" only.
def test_another_users_membership_event_is_judged_on_the_state_before_it():
    def bob_event_visible(after):
        return visible_to_user("m.room.member", BOB, event_content={"membership": after}, user_id=ALICE,
                               history_visibility=JOINED, membership_at_event=None, is_peeking=False)
    assert not bob_event_visible("join")
    assert not bob_event_visible("leave")


# "For m.room.history_visibility events themselves, the user should be allowed to see the event if
# the history_visibility before or after the event would allow them to see it. (For example, a
# user should be able to see m.room.history_visibility events which change the
# history_visibility from world_readable to joined or from joined to world_readable, even if that
# user was not a member of the room.)"
@pytest.mark.parametrize("before, after", [(WR, JOINED), (JOINED, WR), (WR, SHARED), (INVITED, WR)])
def test_history_visibility_change_to_or_from_world_readable_is_visible_to_non_members(before, after):
    assert history_visibility_event_visible(before, after, None, is_peeking=True)


@pytest.mark.parametrize("before, after", [(JOINED, INVITED), (SHARED, JOINED), (JOINED, SHARED),
                                           (None, JOINED)])
def test_history_visibility_change_between_restricted_values_is_hidden_from_non_members(before, after):
    assert not history_visibility_event_visible(before, after, None, is_peeking=True)


# Before or after, with a member who joined later: joined -> shared is allowed by the new value
# (rule 3), shared -> joined by the old one.
@pytest.mark.parametrize("before, after", [(JOINED, SHARED), (SHARED, JOINED)])
def test_history_visibility_change_is_visible_to_a_later_member_if_either_side_is_shared(before, after):
    assert history_visibility_event_visible(before, after, None, is_peeking=False)
    assert not history_visibility_event_visible(JOINED, INVITED, None, is_peeking=False)


def test_unknown_new_history_visibility_value_counts_as_shared():
    assert history_visibility_event_visible(JOINED, "bogus", None, is_peeking=False)
    assert not history_visibility_event_visible(JOINED, "bogus", None, is_peeking=True)


def test_malformed_content_does_not_raise_and_grants_nothing_extra():
    for content in (None, [], "x", {"membership": ["join"]}, {"history_visibility": {"a": 1}}):
        assert not visible_to_user("m.room.member", ALICE, event_content=content, user_id=ALICE,
                                   history_visibility=JOINED, membership_at_event="invite", is_peeking=True)
        assert not visible_to_user("m.room.history_visibility", "", event_content=content, user_id=ALICE,
                                   history_visibility=JOINED, membership_at_event=None, is_peeking=True)


# A room with joined history, as Alice sees it: Bob talks, invites her, she joins, talks, the room
# becomes world_readable, she leaves, Bob talks on. The state column is what the caller looks up:
# (history_visibility, Alice's membership) before each event.
TIMELINE = [
    ("$hv", "m.room.history_visibility", "", BOB, {"history_visibility": JOINED}, (None, None)),
    ("$m1", "m.room.message", None, BOB, {"body": "before invite"}, (JOINED, None)),
    ("$inv", "m.room.member", ALICE, BOB, {"membership": "invite"}, (JOINED, None)),
    ("$m2", "m.room.message", None, BOB, {"body": "while invited"}, (JOINED, "invite")),
    ("$join", "m.room.member", ALICE, ALICE, {"membership": "join"}, (JOINED, "invite")),
    ("$m3", "m.room.message", None, ALICE, {"body": "hello"}, (JOINED, "join")),
    ("$hv2", "m.room.history_visibility", "", BOB, {"history_visibility": WR}, (JOINED, "join")),
    ("$leave", "m.room.member", ALICE, ALICE, {"membership": "leave"}, (WR, "join")),
    ("$hv3", "m.room.history_visibility", "", BOB, {"history_visibility": SHARED}, (WR, "leave")),
    ("$m4", "m.room.message", None, BOB, {"body": "after leave, shared"}, (SHARED, "leave")),
]


def _timeline():
    events, state = [], {}
    for event_id, event_type, state_key, sender, content, before in TIMELINE:
        event = {"event_id": event_id, "type": event_type, "sender": sender, "content": content}
        if state_key is not None:
            event["state_key"] = state_key
        events.append(event)
        state[event_id] = before
    return events, state


def test_filter_keeps_visible_events_in_order_for_a_member_who_left():
    events, state = _timeline()
    # Alice has left: the caller stops at her leave ("no events received after they left").
    up_to_leave = events[:8]
    shown = filter_events_for_user(ALICE, up_to_leave, state.__getitem__, is_peeking=False)
    # $hv was sent while the room had no history_visibility event, so under the default
    # shared, which Alice's later join opens; the joined history before her join stays hidden.
    assert [e["event_id"] for e in shown] == ["$hv", "$join", "$m3", "$hv2", "$leave"]


def test_filter_keeps_order_when_given_newest_first():
    events, state = _timeline()
    shown = filter_events_for_user(ALICE, list(reversed(events[:8])), state.__getitem__, is_peeking=False)
    assert [e["event_id"] for e in shown] == ["$leave", "$hv2", "$m3", "$join", "$hv"]


def test_filter_for_a_peeker_shows_only_world_readable_history():
    events, state = _timeline()
    # Alice has not joined since the events after her leave: $hv3 was sent while the room was
    # world_readable, the message after it under shared.
    shown = filter_events_for_user(ALICE, events[8:], state.__getitem__, is_peeking=True)
    assert [e["event_id"] for e in shown] == ["$hv3"]


def test_filter_for_a_user_who_never_joined():
    events, state = _timeline()
    # Carol was never in the room; she previews it once it is world_readable.
    carol = "@carol:hs.example"
    carol_state = {eid: (hv, None) for eid, (hv, _) in state.items()}
    shown = filter_events_for_user(carol, events, carol_state.__getitem__, is_peeking=True)
    assert [e["event_id"] for e in shown] == ["$hv2", "$leave", "$hv3"]


# "Servers MUST only allow guest users to join rooms if the m.room.guest_access state event is
# present on the room, and has the guest_access value can_join." And the event schema: "If this
# event is absent, servers should act as if it is present and has the guest_access value
# "forbidden"."
@pytest.mark.parametrize("value, expected", [
    ("can_join", True), ("forbidden", False), (None, False), ("CAN_JOIN", False), ("", False),
    (True, False), (["can_join"], False),
])
def test_guests_may_join_only_when_guest_access_is_can_join(value, expected):
    assert guest_may_join(value) is expected


# world_readable: "... with any authenticated user, regardless of whether they have ever joined
# the room. This includes guest users." guest_access governs joining only.
@pytest.mark.parametrize("value, expected", [
    (WR, True), (SHARED, False), (INVITED, False), (JOINED, False), (None, False), ("bogus", False),
])
def test_guests_may_preview_only_world_readable_rooms(value, expected):
    assert guest_may_peek(value) is expected
