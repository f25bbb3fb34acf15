"""The redaction algorithm of each room version (room version pages, "Redactions").

Redaction is not only what happens when a user deletes a message: the redacted form is what
event signatures and reference hashes (hence event IDs) cover. So these key lists must match
every other server's byte for byte, and a change to them needs a new room version.
"""

import copy
from functools import cache

from hs.events.room_versions import Redaction, RoomVersion

__all__ = ["prune_event_dict"]

# Top-level keys kept by the v1, v6 and v9 algorithms (fragments v1-/v6-/v9-redactions).
_TOP_LEVEL_KEYS = frozenset({
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts",
    "membership",
})
# v11 (MSC2176): `origin`, `membership` and `prev_state` were never used by any algorithm,
# so they are no longer protected.
_TOP_LEVEL_KEYS_V11 = _TOP_LEVEL_KEYS - {"origin", "membership", "prev_state"}

_POWER_LEVELS_KEYS = (
    "ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default",
)

# Marks an event type whose whole content survives redaction (m.room.create from v11).
_ALL_KEYS = None


def prune_event_dict(room_version: RoomVersion, pdu: dict) -> dict:
    """Return the redacted form of ``pdu`` under ``room_version``'s redaction algorithm.

    The result is a new dict sharing nothing with ``pdu``. ``unsigned`` is always dropped, as
    it is not in any version's list. ``content`` is always present in the result (``{}`` if
    the event had none or it was not an object), so a malformed event still redacts to the
    same bytes everywhere.
    """
    updated_rules = room_version.redaction == Redaction.V11
    top_level = _TOP_LEVEL_KEYS_V11 if updated_rules else _TOP_LEVEL_KEYS
    pruned = {key: value for key, value in pdu.items() if key in top_level}

    content = pdu.get("content")
    if not isinstance(content, dict):
        content = {}
    event_type = pdu.get("type")
    kept = _kept_content_keys(room_version)
    if not isinstance(event_type, str) or event_type not in kept:
        new_content = {}
    elif kept[event_type] is _ALL_KEYS:
        new_content = dict(content)
    else:
        new_content = {key: content[key] for key in kept[event_type] if key in content}

    if updated_rules and event_type == "m.room.member":
        _keep_third_party_invite_signed(content, new_content)

    pruned["content"] = new_content
    # Deep copy so that callers may edit the result (e.g. add signatures) without touching
    # the event it came from.
    return copy.deepcopy(pruned)


def _keep_third_party_invite_signed(content: dict, new_content: dict) -> None:
    # v11: `third_party_invite` survives, holding only `signed` (which the auth rules need to
    # re-check a redacted 3pid invite). The spec says nothing of a non-object value or one
    # without `signed`; we do what Synapse does, the largest deployment, so event IDs agree:
    # a non-object is dropped, an object without `signed` becomes {}.
    third_party_invite = content.get("third_party_invite")
    if not isinstance(third_party_invite, dict):
        return
    new_content["third_party_invite"] = (
        {"signed": third_party_invite["signed"]} if "signed" in third_party_invite else {}
    )


@cache
def _kept_content_keys(room_version: RoomVersion) -> dict:
    """event type -> the content keys its redaction keeps (or _ALL_KEYS)."""
    rules = room_version.redaction
    updated_rules = rules == Redaction.V11

    member = ["membership"]
    if rules in (Redaction.V9, Redaction.V11):
        # v9: a redacted restricted join must still show who authorised it, or its auth
        # chain can no longer be checked.
        member.append("join_authorised_via_users_server")

    join_rules = ["join_rule"]
    if room_version.restricted_join_rule:
        # v8 introduced `allow` and protected it at the same time (its own redaction list).
        join_rules.append("allow")

    power_levels = list(_POWER_LEVELS_KEYS)
    if updated_rules:
        power_levels.append("invite")

    kept = {
        "m.room.member": tuple(member),
        # v11: the whole create content matters (room_version, m.federate, and in v12
        # additional_creators), so none of it may be redacted.
        "m.room.create": _ALL_KEYS if updated_rules else ("creator",),
        "m.room.join_rules": tuple(join_rules),
        "m.room.power_levels": tuple(power_levels),
        "m.room.history_visibility": ("history_visibility",),
    }
    if rules == Redaction.V1:
        # v6 stopped protecting aliases when their special auth rule went away.
        kept["m.room.aliases"] = ("aliases",)
    if updated_rules:
        kept["m.room.redaction"] = ("redacts",)
    return kept
