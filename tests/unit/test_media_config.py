"""The media repository's config keys (hs/config.py `_read_media`), named as Synapse names them."""

import pytest

from tests.unit.test_config import MINIMAL, load, refusal


def test_media_defaults_are_synapses(tmp_path):
    config = load(tmp_path, MINIMAL)
    assert config.media_store_path == str(tmp_path / "media_store")
    assert config.max_upload_size == 50 * 1024 * 1024
    assert config.enable_media_repo is True
    assert config.enable_authenticated_media is True
    assert config.max_pending_media_uploads == 5
    assert config.unused_expiration_time_ms == 24 * 3600 * 1000
    assert config.max_image_pixels == 32 * 1024 * 1024
    assert config.dynamic_thumbnails is False
    assert config.url_preview_enabled is False
    assert config.media_retention_local_ms is None
    assert config.media_retention_remote_ms is None
    assert config.thumbnail_sizes == [{"width": 32, "height": 32, "method": "crop"},
                                      {"width": 96, "height": 96, "method": "crop"},
                                      {"width": 320, "height": 240, "method": "scale"},
                                      {"width": 640, "height": 480, "method": "scale"},
                                      {"width": 800, "height": 600, "method": "scale"}]


def test_media_sizes_and_durations_take_synapses_units(tmp_path):
    config = load(tmp_path, {**MINIMAL, "media_store_path": "/srv/media", "max_upload_size": "10K",
                             "unused_expiration_time": "1h", "max_image_pixels": 1000,
                             "media_retention": {"local_media_lifetime": "90d", "remote_media_lifetime": "14d"}})
    assert config.media_store_path == "/srv/media"
    assert config.max_upload_size == 10 * 1024
    assert config.unused_expiration_time_ms == 3600 * 1000
    assert config.max_image_pixels == 1000
    assert config.media_retention_local_ms == 90 * 86400 * 1000
    assert config.media_retention_remote_ms == 14 * 86400 * 1000


def test_relative_media_store_path_is_beside_the_config_file(tmp_path):
    assert load(tmp_path, {**MINIMAL, "media_store_path": "m"}).media_store_path == str(tmp_path / "m")


def test_thumbnail_sizes_default_their_method_to_scale(tmp_path):
    config = load(tmp_path, {**MINIMAL, "thumbnail_sizes": [{"width": 50, "height": 40}]})
    assert config.thumbnail_sizes == [{"width": 50, "height": 40, "method": "scale"}]


@pytest.mark.parametrize("item, message", [
    ({"width": 0, "height": 10}, "thumbnail_sizes[0].width: expected an integer between 1 and 10000, got 0"),
    ({"width": 10, "height": 10001},
     "thumbnail_sizes[0].height: expected an integer between 1 and 10000, got 10001"),
    ({"width": 10, "height": 10, "method": "stretch"}, "thumbnail_sizes[0].method: expected crop or scale, got 'stretch'"),
    ({"width": "10", "height": 10}, "thumbnail_sizes[0].width: expected an integer, got '10'"),
    ({"height": 10}, "thumbnail_sizes[0].width: this key is required"),
])
def test_bad_thumbnail_sizes_are_refused_by_key(tmp_path, item, message):
    assert refusal(tmp_path, {**MINIMAL, "thumbnail_sizes": [item]}) == message


@pytest.mark.parametrize("extra, message", [
    ({"url_preview_enabled": True}, "url_preview_enabled: expected false (URL previews are not built yet), got True"),
    ({"max_pending_media_uploads": 0}, "max_pending_media_uploads: expected an integer of at least 1, got 0"),
    ({"max_pending_media_uploads": True}, "max_pending_media_uploads: expected an integer, got True"),
    ({"max_upload_size": "lots"}, "max_upload_size: expected a size such as 50M or a number of bytes, got 'lots'"),
    ({"enable_authenticated_media": "yes"}, "enable_authenticated_media: expected true or false, got 'yes'"),
    ({"media_retention": ["90d"]}, "media_retention: expected a mapping, got list"),
])
def test_bad_media_keys_are_refused_by_key(tmp_path, extra, message):
    assert refusal(tmp_path, {**MINIMAL, **extra}) == message


def test_media_keys_are_known_so_not_warned_about(tmp_path, caplog):
    load(tmp_path, {**MINIMAL, "enable_authenticated_media": False, "max_pending_media_uploads": 2,
                    "unused_expiration_time": "1h", "max_image_pixels": "10M", "dynamic_thumbnails": True,
                    "thumbnail_sizes": [], "url_preview_enabled": False, "media_retention": {}})
    assert "is not used by this homeserver" not in caplog.text
