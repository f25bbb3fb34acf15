"""The media_repository worker, for a master with `enable_media_repo: false`: the media API
(uploads, downloads, thumbnails, other servers' media), our media for other servers
(/_matrix/federation/v1/media/), its admin API, and the retention job. It writes its own tables
(local_media, remote_media, media_thumbnails) and files directly; it follows the master only for what
authentication reads."""

from hs.api import admin_media, media
from hs.api.client import versions
from hs.api.federation import media as federation_media
from hs.worker import create_worker_app


class _Retention:
    """Runs `media_retention` here, where the media is served, instead of on the master."""

    @staticmethod
    def register(app, hs):
        hs.media_admin.start_retention()


app = create_worker_app("media_repository", (versions, media, admin_media, federation_media, _Retention))
