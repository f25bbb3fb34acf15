"""The appservice worker, for a master with `notify_appservices: false`. Application services
arrive with their own issue; today it keeps its replicated positions and status."""

from hs.api.client import versions
from hs.worker import create_worker_app

app = create_worker_app("appservice", (versions,))
