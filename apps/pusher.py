"""The pusher worker, for a master with `start_pushers: false`: follows the pushers stream. Push
delivery arrives with the push issue; today it keeps its replicated positions and status."""

from hs.api.client import versions
from hs.worker import create_worker_app

app = create_worker_app("pusher", (versions,))
