"""The media_repository worker, for a master with `enable_media_repo: false`. The media API
arrives with the media issue; today it answers /versions and its status."""

from hs.api.client import versions
from hs.worker import create_worker_app

app = create_worker_app("media_repository", (versions,))
