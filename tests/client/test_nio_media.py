"""Media through matrix-nio (0.26, which uses the authenticated /_matrix/client/v1/media paths):
an image sent as m.image reaches another user, who downloads it byte for byte and gets a
thumbnail; an encrypted attachment (nio encrypts it before upload) decrypts after the round trip;
an upload over max_upload_size gets nio's error, not a stored file."""

import io

from nio import (
    DownloadError,
    MemoryDownloadResponse,
    RoomCreateResponse,
    RoomMessageImage,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
    ThumbnailResponse,
    UploadError,
    UploadResponse,
)
from nio.api import ResizingMethod
from nio.crypto.attachments import decrypt_attachment
from PIL import Image

from tests.client.test_nio_sync import run, sync_until
from tests.harness import running_homeserver


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (250, 120, 10)).save(out, "PNG")
    return out.getvalue()


async def upload(client, data: bytes, content_type: str, name: str, encrypt: bool = False):
    resp, keys = await client.upload(io.BytesIO(data), content_type, name, encrypt=encrypt, filesize=len(data))
    assert isinstance(resp, UploadResponse), resp
    return resp.content_uri, keys


def test_image_message_is_downloaded_and_thumbnailed_by_the_other_user(homeserver):
    image = png(1024, 768)

    async def scenario(new_user):
        alice, bob = await new_user("nmalice"), await new_user("nmbob")
        created = await alice.room_create(name="pictures", preset=RoomPreset.public_chat)
        assert isinstance(created, RoomCreateResponse), created
        await bob.join(created.room_id)
        first = await bob.sync(timeout=0, full_state=True)
        assert isinstance(first, SyncResponse), first
        images = []

        async def on_image(room, event):
            images.append(event)
        bob.add_event_callback(on_image, RoomMessageImage)

        uri, _ = await upload(alice, image, "image/png", "sunset.png")
        sent = await alice.room_send(created.room_id, "m.room.message",
                                     {"msgtype": "m.image", "body": "sunset.png", "url": uri,
                                      "info": {"mimetype": "image/png", "size": len(image), "w": 1024, "h": 768}})
        assert isinstance(sent, RoomSendResponse), sent
        await sync_until(bob, lambda: images)
        got = await bob.download(images[0].url)
        assert isinstance(got, MemoryDownloadResponse), got
        assert (got.body, got.filename) == (image, "sunset.png")
        server_name, media_id = images[0].url[len("mxc://"):].split("/")
        thumb = await bob.thumbnail(server_name, media_id, 320, 240, ResizingMethod.scale)
        assert isinstance(thumb, ThumbnailResponse), thumb
        assert Image.open(io.BytesIO(thumb.body)).size == (320, 240)
    run(homeserver, scenario)


def test_encrypted_attachment_decrypts_after_the_round_trip(homeserver):
    secret = b"an attachment only the room can read " * 500

    async def scenario(new_user):
        alice = await new_user("nmenc")
        uri, keys = await upload(alice, secret, "application/octet-stream", None, encrypt=True)
        got = await alice.download(uri)
        assert isinstance(got, MemoryDownloadResponse), got
        assert got.body != secret  # the server only ever held ciphertext
        plain = decrypt_attachment(got.body, keys["key"]["k"], keys["hashes"]["sha256"], keys["iv"])
        assert plain == secret
        missing = await alice.download(uri[:-1] + ("a" if uri[-1] != "a" else "b"))
        assert isinstance(missing, DownloadError) and missing.status_code == "M_NOT_FOUND"
    run(homeserver, scenario)


def test_upload_over_the_limit_is_refused_to_nio(db_dsn):
    with running_homeserver(db_dsn, max_upload_size=1024) as server:
        async def scenario(new_user):
            client = await new_user("nmbig")
            resp, _ = await client.upload(io.BytesIO(b"x" * 4096), "application/octet-stream", "big.bin",
                                          filesize=4096)
            assert isinstance(resp, UploadError) and resp.status_code == "M_TOO_LARGE", resp
        run(server, scenario)


def test_plain_file_comes_back_byte_identical_with_its_name_and_type(homeserver):
    data = bytes(range(256)) * 2048  # half a MiB, every byte value

    async def scenario(new_user):
        client = await new_user("nmfile")
        uri, _ = await upload(client, data, "application/pdf", "report final.pdf")
        got = await client.download(uri)
        assert isinstance(got, MemoryDownloadResponse), got
        assert (got.body, got.content_type, got.filename) == (data, "application/pdf", "report final.pdf")
    run(homeserver, scenario)
