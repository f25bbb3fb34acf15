"""The appservice worker, for a master with `notify_appservices: false`: follows the events stream
(and the typing, receipts and presence streams, for services with receive_ephemeral) and sends
application services their transactions (hs/appservice/scheduler.py)."""

from hs.api.client import versions
from hs.appservice import scheduler
from hs.worker import create_worker_app

app = create_worker_app("appservice", (versions, scheduler))
