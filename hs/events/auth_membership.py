"""Rule 5 of the authorization rules: m.room.member events (/rooms/v12 numbering; see
hs/events/auth_rules.py for how older versions number it).

Every branch ends in allow (return) or reject (AuthError): a member event never falls through
to the rules for other events.
"""

import nacl.signing

from hs.events.auth_state import AuthError, AuthState
from hs.events.canonical_json import unpadded_b64decode, urlsafe_unpadded_b64decode
from hs.events.event import Event
from hs.events.power_levels import is_valid_user_id, server_name_of
from hs.events.signing import SignatureVerifyError, verify_signed_json

__all__ = ["check_membership"]


def check_membership(event: Event, state: AuthState) -> None:
    room_version = event.room_version
    content = event.content
    membership = content.get("membership")
    if event.state_key is None or membership is None:  # 5.1
        raise AuthError("m.room.member needs a state_key and a membership")

    # 5.2 (v8+). Signatures are verified on receipt; here the authorising server's one must be
    # there, since checking only the sender's server's signature would not look for it.
    if room_version.restricted_join_rule and "join_authorised_via_users_server" in content:
        authoriser = content["join_authorised_via_users_server"]
        if not is_valid_user_id(authoriser) or not _has_signature_from(event, server_name_of(authoriser)):
            raise AuthError("The join is not signed by the authorising user's server")

    if membership == "join":
        _check_join(event, state)
    elif membership == "invite":
        _check_invite(event, state)
    elif membership == "leave":
        _check_leave(event, state)
    elif membership == "ban":
        _check_ban(event, state)
    elif membership == "knock" and room_version.knocking:
        _check_knock(event, state)
    else:  # 5.8
        raise AuthError(f"Unknown membership {membership!r}")


def _check_join(event: Event, state: AuthState) -> None:
    room_version = event.room_version
    target = event.state_key
    create = state.create
    # 5.3.1: the creator's own join right after the create event. The creator here is the
    # create event's sender from v11 (v12's additional creators join like anyone else).
    first_creator = create.sender if room_version.implicit_room_creator else create.content.get("creator")
    if event.prev_event_ids == [create.event_id] and target == first_creator:
        return
    if event.sender != target:  # 5.3.2
        raise AuthError("You cannot make another user join")
    current = state.membership(target)
    if current == "ban":  # 5.3.3
        raise AuthError("You are banned from this room")

    join_rule = state.join_rule
    if join_rule == "invite" or (room_version.knocking and join_rule == "knock"):  # 5.3.4
        if current in ("invite", "join"):
            return
        raise AuthError("You are not invited to this room")
    if (room_version.restricted_join_rule and join_rule == "restricted") or (
        room_version.knock_restricted_join_rule and join_rule == "knock_restricted"
    ):  # 5.3.5
        if current in ("invite", "join"):
            return
        # A resident user vouches (by their server signing the join, 5.2) that the joiner
        # meets the allow conditions; they must be able to invite for that to count.
        authoriser = event.content.get("join_authorised_via_users_server")
        if not isinstance(authoriser, str) or state.membership(authoriser) != "join":
            raise AuthError("The join is not authorised by a member of the room")
        if state.power_level(authoriser) < state.named_level("invite"):
            raise AuthError("The join is authorised by a user who cannot invite")
        return
    if join_rule == "public":  # 5.3.6
        return
    raise AuthError("You are not allowed to join this room")  # 5.3.7


def _check_invite(event: Event, state: AuthState) -> None:
    target = event.state_key
    if "third_party_invite" in event.content:  # 5.4.1
        _check_third_party_invite(event, state)
        return
    if state.membership(event.sender) != "join":  # 5.4.2
        raise AuthError(f"{event.sender} is not in the room")
    target_membership = state.membership(target)
    if target_membership == "join":  # 5.4.3
        raise AuthError(f"{target} is already in the room")
    if target_membership == "ban":
        raise AuthError(f"{target} is banned from the room")
    if state.power_level(event.sender) < state.named_level("invite"):  # 5.4.4-5
        raise AuthError("You don't have permission to invite users")


def _check_third_party_invite(event: Event, state: AuthState) -> None:
    target = event.state_key
    if state.membership(target) == "ban":  # 5.4.1.1
        raise AuthError(f"{target} is banned from the room")
    third_party_invite = event.content["third_party_invite"]
    signed = third_party_invite.get("signed") if isinstance(third_party_invite, dict) else None
    if not isinstance(signed, dict):  # 5.4.1.2
        raise AuthError("third_party_invite has no signed object")
    if "mxid" not in signed or "token" not in signed:  # 5.4.1.3
        raise AuthError("third_party_invite.signed needs mxid and token")
    if signed["mxid"] != target:  # 5.4.1.4
        raise AuthError("third_party_invite.signed.mxid is not the invited user")
    token = signed["token"]
    invite = state.get("m.room.third_party_invite", token) if isinstance(token, str) else None
    if invite is None:  # 5.4.1.5
        raise AuthError("No m.room.third_party_invite matches the token")
    if invite.sender != event.sender:  # 5.4.1.6
        raise AuthError("Only the sender of the third party invite can complete it")
    if not _third_party_signature_valid(signed, invite):  # 5.4.1.7-8
        raise AuthError("third_party_invite is not signed by any of the invite's public keys")


def _third_party_signature_valid(signed: dict, invite: Event) -> bool:
    """Whether any ed25519 signature in `signed` verifies with any of the invite's keys."""
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    keys = _third_party_public_keys(invite.content)
    for server_name, by_key_id in signatures.items():
        if not isinstance(by_key_id, dict):
            continue
        for key_id in by_key_id:
            if not key_id.startswith("ed25519:"):
                continue
            for key in keys:
                try:
                    verify_signed_json(signed, server_name, key, key_id)
                    return True
                except SignatureVerifyError:
                    continue
    return False


def _third_party_public_keys(content: dict) -> list[nacl.signing.VerifyKey]:
    # 5.4.1.7.1-2: `public_key`, and the `public_key` of each entry of `public_keys`.
    encoded = [content.get("public_key")]
    public_keys = content.get("public_keys")
    if isinstance(public_keys, list):
        encoded.extend(entry.get("public_key") for entry in public_keys if isinstance(entry, dict))
    keys = []
    for value in encoded:
        key_bytes = _decode_public_key(value)
        if key_bytes is not None:
            keys.append(nacl.signing.VerifyKey(key_bytes))
    return keys


def _decode_public_key(value) -> bytes | None:
    # Identity servers publish unpadded base64; some use the URL-safe alphabet.
    if not isinstance(value, str):
        return None
    for decode in (unpadded_b64decode, urlsafe_unpadded_b64decode):
        try:
            key_bytes = decode(value)
        except ValueError:
            continue
        if len(key_bytes) == 32:
            return key_bytes
    return None


def _check_leave(event: Event, state: AuthState) -> None:
    target = event.state_key
    sender = event.sender
    if sender == target:  # 5.5.1: leaving, or rejecting an invite or retracting a knock
        allowed = ("invite", "join", "knock") if event.room_version.knocking else ("invite", "join")
        if state.membership(sender) in allowed:
            return
        raise AuthError("You are not in the room, invited or knocking")
    if state.membership(sender) != "join":  # 5.5.2
        raise AuthError(f"{sender} is not in the room")
    sender_level = state.power_level(sender)
    # 5.5.3: unbanning needs the ban level (and then the kick level below).
    if state.membership(target) == "ban" and sender_level < state.named_level("ban"):
        raise AuthError(f"You don't have permission to unban {target}")
    if sender_level < state.named_level("kick"):  # 5.5.4-5
        raise AuthError("You don't have permission to kick users")
    if state.power_level(target) >= sender_level:
        raise AuthError(f"You cannot kick {target}, whose power level is not below yours")


def _check_ban(event: Event, state: AuthState) -> None:
    target = event.state_key
    if state.membership(event.sender) != "join":  # 5.6.1
        raise AuthError(f"{event.sender} is not in the room")
    sender_level = state.power_level(event.sender)
    if sender_level < state.named_level("ban"):  # 5.6.2-3
        raise AuthError("You don't have permission to ban users")
    if state.power_level(target) >= sender_level:
        raise AuthError(f"You cannot ban {target}, whose power level is not below yours")


def _check_knock(event: Event, state: AuthState) -> None:
    room_version = event.room_version
    join_rule = state.join_rule
    if not (join_rule == "knock" or (room_version.knock_restricted_join_rule and join_rule == "knock_restricted")):
        raise AuthError("This room does not accept knocks")  # 5.7.1
    if event.sender != event.state_key:  # 5.7.2
        raise AuthError("You cannot knock for another user")
    current = state.membership(event.sender)
    if current in ("ban", "invite", "join"):  # 5.7.3-4
        raise AuthError(f"You cannot knock while your membership is {current}")


def _has_signature_from(event: Event, server_name: str) -> bool:
    signatures = event.pdu.get("signatures")
    by_server = signatures.get(server_name) if isinstance(signatures, dict) else None
    return isinstance(by_server, dict) and bool(by_server)
