"""This homeserver beside Synapse: the same client workload against each, in one run, as ratios.

    bench/compare [--quick] [--targets ours,synapse,workers] [--fanout 50,200] [--write | --no-write]

(`bench/compare` makes the virtualenv and installs HAProxy when missing, then runs this.)

One PostgreSQL server (an embedded one with fsync off, or $TEST_PG_DSN's) holds a database per
target, so the servers differ in nothing but themselves:

- ours: the master alone (gunicorn, one gevent worker), as `synctl start` runs it;
- synapse: `matrix-synapse` from PyPI in its own virtualenv (tests/federation_fixture.py installs
  the pinned release and psycopg2 is added), one process, its default caches, every rate limit off;
- workers: our master, two synchrotrons and a client_reader behind HAProxy (hs/haproxy.py's config).

Users are made before the clock starts, in each server's cheapest way (our stores' SQL helpers;
Synapse's /register with bcrypt_rounds 4): registration and password hashing are not compared.
Presence is off in all three (--presence turns it on): with it on, Synapse had not gone idle
120 s after 2,000 clients began syncing in one room, so the fan-out at M = 2,000 could not
start; the fan-out measures delivering a message. Then bench/loadgen.py, a process of its own,
runs the workload over HTTP (its docstring says what it measures and checks) and writes JSON; the
CPU seconds and peak RSS (VmHWM) of every server process and the CPU of PostgreSQL's backends are
read from /proc around it. Everything started is stopped by pid at the end, also on failure.

A full run rewrites the generated section of bench/RESULTS.md (between its markers); --quick
prints the same tables and leaves the file alone unless --write.
"""

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import psycopg2.extensions
import requests

from bench.common import HAProxy, cpu_seconds, gunicorn_worker_pid, raise_open_files_limit, rss_mb
from bench.compare_report import render, source_version, write_results
from bench.compare_workload import PROFILES, users_needed
from bench.room_size import SERVER_NAME, Postgres, create_users
from tests.federation_fixture import SynapseProcess, TestCA, ensure_synapse_installed
from tests.harness import HomeserverProcess
from tests.pg import admin_cursor, make_dsn, unique_name
from tests.workers.cluster import WorkerProcess, master_with_replication

LOADGEN = os.path.join(REPO, "bench", "loadgen.py")
CP_MAX = 10  # each server's database pool: Synapse's default cp_max


def postgres_cpu_seconds(data_dir: str | None) -> float | None:
    """CPU time of the embedded server's postmaster and every backend so far (those that exited
    are in the postmaster's children's time); None for a server this run did not start."""
    if data_dir is None:
        return None
    with open(os.path.join(data_dir, "postgres", "postmaster.pid")) as f:  # hs/storage/embedded.py's layout
        postmaster = int(f.readline())
    with open(f"/proc/{postmaster}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    with open(f"/proc/{postmaster}/task/{postmaster}/children") as f:
        for child in f.read().split():
            try:
                total += cpu_seconds(int(child))
            except OSError:
                pass  # exited since: counted in the postmaster's children's time once reaped
    return total


# --- the three targets ----------------------------------------------------------------------------

class OursSingle:
    name = "ours"
    master = ("master", "master worker")  # of `processes`: the gunicorn arbiter and its worker

    def __init__(self, postgres: Postgres, presence: bool):
        self.dsn = postgres.new_database()
        self.server = HomeserverProcess(self.dsn, server_name=SERVER_NAME, presence={"enabled": presence},
                                        database={"name": "psycopg2", "args": {"dsn": self.dsn, "cp_max": CP_MAX}})

    def start(self) -> None:
        self.server.start()
        self.url = self.server.base_url
        self.processes = {"master": self.server.proc.pid, "master worker": gunicorn_worker_pid(self.server.proc.pid)}

    def make_users(self, localparts: list[str]) -> dict:
        tokens = create_users(self.dsn, localparts)
        return {lp: {"user_id": f"@{lp}:{SERVER_NAME}", "token": tokens[f"@{lp}:{SERVER_NAME}"]} for lp in localparts}

    def stop(self) -> None:
        self.server.stop()


class OursWorkers(OursSingle):
    name = "workers"

    def __init__(self, postgres: Postgres, presence: bool):
        self.dsn = postgres.new_database()
        self.server = master_with_replication(self.dsn, server_name=SERVER_NAME, presence={"enabled": presence},
                                              database={"name": "psycopg2", "args": {"dsn": self.dsn, "cp_max": CP_MAX}})
        self.workers = []
        self.proxy = None

    def start(self) -> None:
        self.server.start()
        for kind, name in (("synchrotron", "synchrotron1"), ("synchrotron", "synchrotron2"),
                           ("client_reader", "client_reader1")):
            worker = WorkerProcess(self.server, kind, name)
            self.workers.append(worker)
            worker.start()
        self.proxy = HAProxy(self.server, self.workers, "haproxy")
        self.proxy.start()
        self.url = self.proxy.base_url
        self.processes = {"master": self.server.proc.pid, "master worker": gunicorn_worker_pid(self.server.proc.pid)}
        for w in self.workers:
            self.processes[w.name] = w.proc.pid
            self.processes[f"{w.name} worker"] = gunicorn_worker_pid(w.proc.pid)
        self.processes["haproxy"] = self.proxy.proc.pid

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for w in reversed(self.workers):
            w.stop_process()
        self.server.stop()


class Synapse:
    name = "synapse"
    master = ("synapse",)

    def __init__(self, postgres: Postgres, presence: bool):
        python = ensure_synapse_installed()
        if subprocess.run([python, "-c", "import psycopg2"], capture_output=True).returncode != 0:
            subprocess.run([python, "-m", "pip", "install", "-q", "psycopg2-binary"], check=True)
        base = postgres.start()
        name = unique_name("synapse_bench")
        with admin_cursor(base) as cur:
            # Synapse refuses a database whose collation is not C (its sorting of IDs relies on it).
            cur.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' LC_COLLATE \'C\' LC_CTYPE \'C\''
                        " TEMPLATE template0")
        postgres.databases.append(name)
        args = psycopg2.extensions.parse_dsn(make_dsn(base, name))
        self.ca = TestCA()
        self.server = SynapseProcess(self.ca, presence={"enabled": presence},
                                     database={"name": "psycopg2", "args": {**args, "cp_min": 5, "cp_max": CP_MAX}})
        # The client API only: no federation listener (nor its certificate) is needed here.
        self.server.config["listeners"] = self.server.config["listeners"][:1]

    def start(self) -> None:
        self.server.start(timeout=180)  # the first start creates Synapse's schema
        self.url = self.server.base_url
        self.processes = {"synapse": self.server.pid}

    def make_users(self, localparts: list[str]) -> dict:
        def register(localpart: str) -> tuple[str, dict]:
            resp = requests.post(f"{self.url}/_matrix/client/v3/register", timeout=60, json={
                "username": localpart, "password": f"bench-{localpart}", "auth": {"type": "m.login.dummy"},
                "initial_device_display_name": "bench"})
            if resp.status_code != 200:
                raise RuntimeError(f"registering {localpart} on Synapse: {resp.status_code} {resp.text[:300]}")
            body = resp.json()
            return localpart, {"user_id": body["user_id"], "token": body["access_token"]}

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return dict(pool.map(register, localparts))

    def stop(self) -> None:
        self.server.stop()
        self.ca.remove()


TARGETS = {"ours": OursSingle, "synapse": Synapse, "workers": OursWorkers}


def run_target(kind, postgres: Postgres, profile: str, fanout: list[int], phases: str, presence: bool,
               workdir: str) -> dict:
    target = kind(postgres, presence)
    try:
        started = time.perf_counter()
        target.start()
        localparts = users_needed(fanout)
        users = target.make_users(localparts)
        setup_s = time.perf_counter() - started
        users_path = os.path.join(workdir, f"{target.name}-users.json")
        out_path = os.path.join(workdir, f"{target.name}-results.json")
        with open(users_path, "w") as f:
            json.dump(users, f)
        print(f"[{target.name}] up with {len(users)} users in {setup_s:.0f} s on {target.url}", flush=True)
        pids = list(target.processes.values())
        cpu_before = {name: cpu_seconds(pid) for name, pid in target.processes.items()}
        db_before = postgres_cpu_seconds(postgres.data_dir)
        ran = time.perf_counter()
        loadgen = subprocess.Popen([sys.executable, LOADGEN, "--url", target.url, "--users", users_path,
                                    "--pids", ",".join(map(str, pids)), "--profile", profile,
                                    "--fanout", ",".join(map(str, fanout)), "--phases", phases, "--out", out_path],
                                   stderr=subprocess.PIPE, text=True, errors="replace")
        try:
            tail = []
            for line in loadgen.stderr:
                print(f"[{target.name}] {line}", end="", flush=True)
                tail = (tail + [line])[-60:]
            if loadgen.wait() != 0 and not os.path.exists(out_path):
                raise RuntimeError(f"the workload failed against {target.name}:\n{''.join(tail)}")
        finally:
            if loadgen.poll() is None:
                loadgen.kill()
                loadgen.wait()
        db_after = postgres_cpu_seconds(postgres.data_dir)
        with open(out_path) as f:
            results = json.load(f)
        results["wall_s"] = time.perf_counter() - ran
        results["processes"] = {name: {"cpu_s": cpu_seconds(pid) - cpu_before[name],
                                       "peak_rss_mb": rss_mb(pid, peak=True)}
                                for name, pid in target.processes.items()}
        results["master_peak_rss_mb"] = sum(results["processes"][name]["peak_rss_mb"] for name in target.master)
        results["postgres_cpu_s"] = None if db_before is None else db_after - db_before
        return results
    finally:
        target.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller workload, under two minutes")
    parser.add_argument("--targets", default="ours,synapse,workers", help="which to run, in this order")
    parser.add_argument("--fanout", help="comma-separated room sizes M for the fan-out (default: the profile's)")
    parser.add_argument("--phases", default="sends,messages,initial_sync,fan_out",
                        help="which parts of the workload to run (bench/loadgen.py)")
    parser.add_argument("--presence", action="store_true", help="presence on in every server")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=None,
                        help="rewrite bench/RESULTS.md's generated section (default: on for a full run)")
    args = parser.parse_args()
    profile = "quick" if args.quick else "full"
    fanout = sorted(int(m) for m in args.fanout.split(",")) if args.fanout else PROFILES[profile]["fanout"]
    names = args.targets.split(",")
    raise_open_files_limit()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started, version = time.perf_counter(), source_version()
    postgres = Postgres()
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="hs-compare-") as workdir:
            for name in names:
                try:
                    results[name] = run_target(TARGETS[name], postgres, profile, fanout, args.phases, args.presence,
                                               workdir)
                except Exception as e:  # the others' results still count; the report says what failed
                    print(f"[{name}] FAILED: {e}", flush=True)
                    results[name] = {"error": str(e).strip().splitlines()[-1][:300]}
    finally:
        postgres.stop()
    text = render(results, profile=profile, fanout=fanout, pg_note=postgres.note, presence=args.presence,
                  version=version,
                  minutes=(time.perf_counter() - started) / 60)
    print(text)
    if args.write or (args.write is None and not args.quick):
        write_results(os.path.join(REPO, "bench", "RESULTS.md"), text)
        print("written to bench/RESULTS.md")
    return 1 if any("error" in r for r in results.values()) else 0  # (a server's wrong answer included)


if __name__ == "__main__":
    sys.exit(main())
