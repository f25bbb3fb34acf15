"""What bench/compare's workload is made of (bench/loadgen.py runs it): its sizes per profile, and
the users it needs, which the caller creates on each server before the run."""

PROFILES = {
    "quick": {"sends_one_room": 125, "sends_own_room": 25, "page_runs": 3, "isync_rooms": 50,
              "isync_events": 20, "isync_runs": 5, "fanout": [50, 200], "fanout_rounds": 3},
    "full": {"sends_one_room": 125, "sends_own_room": 125, "page_runs": 10, "isync_rooms": 50,
             "isync_events": 20, "isync_runs": 20, "fanout": [50, 200, 500, 2000], "fanout_rounds": 5},
}
SENDERS = 8
PAGE_LIMIT = 50  # events per /messages page
ISYNC_MEMBERS = 5  # members of each of the initial-sync user's rooms, the user included


def users_needed(fanout: list[int]) -> list[str]:
    """The localparts a run with fan-out sizes `fanout` uses."""
    return (["creator", "watcher", "isync", "fanout"] + [f"s{i}" for i in range(SENDERS)]
            + [f"t{i}" for i in range(ISYNC_MEMBERS - 1)] + [f"c{i:05d}" for i in range(max(fanout))])
