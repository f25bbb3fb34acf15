"""The pusher worker, for a master with `start_pushers: false`: runs every pusher (HTTP, and email
with `email.enable_notifs`), following the events, receipts and pushers streams over
replication. Its delivery positions are in its own tables (pusher_delivery, email_pusher_state),
so a restart neither re-sends nor skips; a pusher a gateway rejects is removed by the master."""

import logging

import gevent

from hs.api.client import versions
from hs.worker import create_worker_app

logger = logging.getLogger(__name__)


class _Pushers:
    @staticmethod
    def register(app, hs):
        def remove_pusher(user_id, app_id, pushkey):
            hs.master.call("remove_pusher", {"user_id": user_id, "app_id": app_id, "pushkey": pushkey})
        hs.pusher_pool.factories["http"].remove_pusher = remove_pusher
        hs.status_details["pushers"] = hs.pusher_pool.status

        def start():
            # Only once replication has brought the positions up to the master's: a pusher with
            # no stored position starts from the current one, which must not be 0.
            while not hs.streams.catch_up({}, 60.0):
                logger.info("pushers wait for replication to follow the master")
            hs.pusher_pool.start()
        gevent.spawn(start)


app = create_worker_app("pusher", (versions, _Pushers))
