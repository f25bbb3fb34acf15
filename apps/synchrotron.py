"""The synchrotron: /sync, /events, /initialSync and /rooms/{id}/initialSync, from the streams it
follows over replication. Run as many as needed: `gunicorn -k gevent apps.synchrotron:app`."""

from hs.api.client import legacy_sync, sync, versions
from hs.worker import create_worker_app

app = create_worker_app("synchrotron", (versions, sync, legacy_sync))
