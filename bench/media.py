#!/usr/bin/env python
"""Media repository throughput: upload and download MB/s for 1 MB and 50 MB files, and thumbnail
latency, against what this machine's disk does with the same bytes in the same run.

    python bench/media.py [--runs 5] [--thumbnails 40]

Starts its own homeserver (tests/harness.py: gunicorn, one gevent worker; max_upload_size 100M,
dynamic_thumbnails on) on a fresh database ($TEST_PG_DSN's server or an embedded PostgreSQL, as
bench/room_size.py does). Each size is uploaded (POST /_matrix/media/v3/upload, random bytes, so
no two uploads share content) and downloaded (GET /_matrix/client/v1/media/download, streamed)
--runs times over one keep-alive connection; the median is reported. The disk baseline copies a
file of the same size with shutil and reads it back, in the same directory tree as the media
store. Thumbnails: a 2000x1500 JPEG; a "hit" asks for a size made on upload (320x240 scale), a
"miss" asks for a size never asked before (made on demand and stored).
"""

import argparse
import io
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

import requests
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.room_size import SERVER_NAME, Postgres, create_users, pct
from tests.harness import HomeserverProcess

MB = 1024 * 1024
SIZES = (1 * MB, 50 * MB)


def timed(fn) -> float:
    return timed_result(fn)[0]


def timed_result(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


class Media:
    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def upload(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        resp = self.session.post(self.base_url + "/_matrix/media/v3/upload", data=data, timeout=300,
                                 headers={"Content-Type": content_type})
        if resp.status_code != 200:
            raise RuntimeError(f"upload: {resp.status_code} {resp.text[:300]}")
        return resp.json()["content_uri"].rsplit("/", 1)[1]

    def download(self, media_id: str) -> int:
        with self.session.get(f"{self.base_url}/_matrix/client/v1/media/download/{SERVER_NAME}/{media_id}",
                              stream=True, timeout=300) as resp:
            if resp.status_code != 200:
                raise RuntimeError(f"download: {resp.status_code}")
            return sum(len(chunk) for chunk in resp.iter_content(1 << 20))

    def thumbnail(self, media_id: str, width: int, height: int) -> None:
        resp = self.session.get(f"{self.base_url}/_matrix/client/v1/media/thumbnail/{SERVER_NAME}/{media_id}",
                                params={"width": width, "height": height, "method": "scale"}, timeout=60)
        if resp.status_code != 200:
            raise RuntimeError(f"thumbnail: {resp.status_code} {resp.text[:300]}")


def disk_baseline(directory: str, size: int, runs: int) -> tuple[float, float]:
    """(copy MB/s, read MB/s) medians for a file of ``size`` bytes."""
    source, copy = os.path.join(directory, "source"), os.path.join(directory, "copy")
    with open(source, "wb") as f:
        f.write(os.urandom(size))
    copies, reads = [], []
    for _ in range(runs):
        copies.append(timed(lambda: shutil.copyfile(source, copy)))

        def read():
            with open(copy, "rb") as f:
                while f.read(1 << 20):
                    pass
        reads.append(timed(read))
        os.unlink(copy)
    os.unlink(source)
    return size / MB / statistics.median(copies), size / MB / statistics.median(reads)


def photo(width: int, height: int) -> bytes:
    image = Image.radial_gradient("L").resize((width, height)).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--thumbnails", type=int, default=40, help="timed thumbnail requests of each kind")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    postgres = Postgres()
    server = None
    try:
        dsn = postgres.new_database()
        server = HomeserverProcess(dsn, server_name=SERVER_NAME, max_upload_size="100M", dynamic_thumbnails=True)
        server.start()
        print(f"homeserver pid {server.proc.pid} on {server.base_url}; log {server.log_path}", flush=True)
        token = create_users(dsn, ["me"])[f"@me:{SERVER_NAME}"]
        media = Media(server.base_url, token)
        scratch = tempfile.mkdtemp(prefix="media-bench-", dir=server.dir)

        rows = []
        for size in SIZES:
            copy_mbs, read_mbs = disk_baseline(scratch, size, args.runs)
            ups, downs = [], []
            for _ in range(args.runs):
                data = os.urandom(size)
                elapsed, media_id = timed_result(lambda data=data: media.upload(data))
                ups.append(elapsed)
                downs.append(timed(lambda media_id=media_id: media.download(media_id)))
            up_mbs, down_mbs = size / MB / statistics.median(ups), size / MB / statistics.median(downs)
            rows.append((size, up_mbs, down_mbs, copy_mbs, read_mbs))

        big = media.upload(photo(2000, 1500), "image/jpeg")
        deadline = time.monotonic() + 60
        while True:  # pregeneration runs after the upload answers
            try:
                media.thumbnail(big, 320, 240)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        hits = [timed(lambda: media.thumbnail(big, 320, 240)) for _ in range(args.thumbnails)]
        misses = [timed(lambda i=i: media.thumbnail(big, 100 + i, 100 + i)) for i in range(args.thumbnails)]

        print()
        print(f"Media: {args.runs} runs per size (median); {postgres.note}; load average {os.getloadavg()[0]:.1f}")
        print(f"{'size':>6}{'upload MB/s':>13}{'download MB/s':>15}{'disk copy MB/s':>16}{'disk read MB/s':>16}"
              f"{'up/copy':>9}{'down/read':>11}")
        for size, up_mbs, down_mbs, copy_mbs, read_mbs in rows:
            print(f"{size // MB:>4}MB{up_mbs:>13.0f}{down_mbs:>15.0f}{copy_mbs:>16.0f}{read_mbs:>16.0f}"
                  f"{up_mbs / copy_mbs:>9.2f}{down_mbs / read_mbs:>11.2f}")
        print(f"thumbnail 2000x1500 JPEG, {args.thumbnails} each:")
        for name, t in (("stored (hit)", hits), ("made on demand (miss)", misses)):
            print(f"  {name:<24} p50 {pct(t, 50) * 1000:6.1f} ms  p95 {pct(t, 95) * 1000:6.1f} ms")
        return 0
    finally:
        if server is not None:
            server.stop()
        postgres.stop()


if __name__ == "__main__":
    sys.exit(main())
