"""bench/compare's tables (Markdown) and their place in bench/RESULTS.md."""

import datetime
import os
import subprocess

BEGIN = "<!-- bench/compare: begin (generated: edit bench/compare_report.py, not this) -->"
END = "<!-- bench/compare: end -->"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _get(results: dict | None, *path):
    value = results
    for key in path:
        if value is None:
            return None
        if isinstance(value, list):  # the fan-out results, by M
            value = next((r for r in value if r["m"] == key), None)
        else:
            value = value.get(key)
    return value


def _rows(fanout: list[int]) -> list[tuple]:
    """(label, path into a target's results, unit, target: (">=" or "<=", ratio) or None)."""
    rows = [
        ("Sends, 8 senders into one room", ("sends", "one_room", "events_per_s"), "events/s", (">=", 3.0)),
        ("Sends, 8 senders into 8 rooms", ("sends", "own_rooms", "events_per_s"), "events/s", (">=", 3.0)),
        ("Send latency p50, one room", ("sends", "one_room", "latency", "p50"), "ms", None),
        ("Send latency p95, one room", ("sends", "one_room", "latency", "p95"), "ms", None),
        ("Send latency p50, 8 rooms", ("sends", "own_rooms", "latency", "p50"), "ms", None),
        ("Send latency p95, 8 rooms", ("sends", "own_rooms", "latency", "p95"), "ms", None),
        ("Initial sync p50, 50 rooms x 20 events", ("initial_sync", "plain", "p50"), "ms", ("<=", 0.33)),
        ("Initial sync p50, lazy-loaded members", ("initial_sync", "lazy", "p50"), "ms", ("<=", 0.33)),
        ("Initial sync p95", ("initial_sync", "plain", "p95"), "ms", None),
        ("/messages page (50 events) p50", ("messages", "pages", "p50"), "ms", ("<=", 0.5)),
        ("/messages page p95", ("messages", "pages", "p95"), "ms", None),
    ]
    for m in fanout:
        rows += [
            (f"Fan-out M={m}: p50", ("fan_out", m, "p50"), "ms", None),
            (f"Fan-out M={m}: p95", ("fan_out", m, "p95"), "ms", ("<=", 0.2) if m == 500 else None),
            (f"Fan-out M={m}: max", ("fan_out", m, "max"), "ms", None),
            (f"Fan-out M={m}: server CPU per message", ("fan_out", m, "server_cpu_s"), "s", None),
        ]
    rows += [
        ("Peak RSS of the master", ("master_peak_rss_mb",), "MB", ("<=", 0.5)),
        ("Server CPU over the workload, all processes", ("server_cpu_s",), "s", None),
        ("PostgreSQL CPU over the workload", ("postgres_cpu_s",), "s", None),
        ("Workload wall time", ("wall_s",), "s", None),
    ]
    return rows


def _fmt(value, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms" and value < 10 or unit == "s" and value < 1:
        return f"{value:.2f}" if unit == "s" else f"{value:.1f}"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _verdict(ratio, target) -> str:
    if target is None:
        return ""
    op, bound = target
    wanted = f"{op.replace('>=', '≥').replace('<=', '≤')} {bound:g}"
    if ratio is None:
        return wanted
    met = ratio >= bound if op == ">=" else ratio <= bound
    return f"{wanted}: {'met' if met else '**missed**'}"


def source_version() -> str:
    """The commit the run's processes start from (taken before they start), marked when the
    working tree differs from it."""
    def git(*args):
        return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def render(results: dict, profile: str, fanout: list[int], pg_note: str, presence: bool, minutes: float,
           version: str) -> str:
    failed = {name: r["error"] for name, r in results.items() if "error" in r}
    results = {name: r for name, r in results.items() if "processes" in r}  # (not those that never ran)
    for r in results.values():
        r["server_cpu_s"] = sum(p["cpu_s"] for p in r["processes"].values())
    synapse, ours, workers = results.get("synapse"), results.get("ours"), results.get("workers")
    out = [
        "## Side by side with Synapse (`bench/compare`)",
        "",
        f"`bench/compare{' --quick' if profile == 'quick' else ''}` at commit {version},"
        f" {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {minutes:.1f} minutes;"
        f" {pg_note}; load average {os.getloadavg()[0]:.1f} at the end. Synapse:"
        f" {_synapse_version()}, one process. ours: the master alone. workers: our master, two"
        " synchrotrons and a client_reader behind HAProxy. Presence"
        f" {'on' if presence else 'off'} in all three. Ratio = ours / Synapse (for events/s,"
        " higher is better; for the rest, lower).",
        "",
        "| | Synapse | ours | ratio | target | workers |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for label, path, unit, target in _rows(fanout):
        s, o, w = (_get(r, *path) for r in (synapse, ours, workers))
        ratio = o / s if s and o is not None else None
        out.append(f"| {label} ({unit}) | {_fmt(s, unit)} | {_fmt(o, unit)} |"
                   f" {'-' if ratio is None else f'{ratio:.2f}'} | {_verdict(ratio, target)} | {_fmt(w, unit)} |")
    two = _get(workers, "fan_out", max(fanout), "p95")
    one = _get(ours, "fan_out", 500, "p95")
    if two is not None and one is not None:
        out += ["", f"Two synchrotrons at M = {max(fanout)}: p95 {two:,.0f} ms, against the single process at"
                    f" M = 500: {one:,.0f} ms: {'met' if two < one else '**missed**'} (target: better)."]
    for name, error in failed.items():
        out += ["", f"**{name} failed** (its numbers above are those measured before): {error}"]
    out += ["", "CPU seconds over the workload and peak RSS of each process:", ""]
    for name, r in results.items():
        procs = ", ".join(f"{p} {v['cpu_s']:.1f} s / {v['peak_rss_mb']:.0f} MB" for p, v in r["processes"].items())
        out.append(f"- {name}: {procs}")
    repolls = {name: sum(f["repolls"] for f in r.get("fan_out", [])) for name, r in results.items()}
    out += ["", "Fan-out repolls (a parked client woken without the message, e.g. by presence): "
            + ", ".join(f"{name} {n}" for name, n in repolls.items()) + "."]
    return "\n".join(out) + "\n"


def _synapse_version() -> str:
    from tests.federation_fixture import SYNAPSE_REQUIREMENT
    return SYNAPSE_REQUIREMENT.replace("==", " ")


def write_results(path: str, text: str) -> None:
    """Replaces the generated section of `path` (or puts one after its title) with `text`."""
    with open(path) as f:
        current = f.read()
    section = f"{BEGIN}\n{text}{END}"
    if BEGIN in current and END in current:
        before, rest = current.split(BEGIN, 1)
        updated = before + section + rest.split(END, 1)[1]
    else:
        title, _, rest = current.partition("\n")
        updated = f"{title}\n\n{section}\n{rest}"
    with open(path, "w") as f:
        f.write(updated)
