"""Ingest benchmark: how fast pacsd, DCMTK storescp and Orthanc take in C-STOREs from storescu.

Generates synthetic CT images (bench/synthetic.py, cached), then for every server x image size x
number of associations x TCP_NODELAY setting it starts the server fresh on an empty folder, sends
all files with DCMTK `storescu` (one process per association, all started at once), times
first-client-start to last-client-exit, checks the server stored every file, and stops it.
Everything runs on 127.0.0.1 inside a private network namespace (`unshare -n`).
Prints a table with the ratios pacsd/Orthanc and pacsd/storescp and writes it as JSON.
Not part of the test suite: this measures, it does not assert.

    .venv/bin/python bench/ingest.py [--quick] [--servers pacsd,storescp,orthanc] [--json PATH]
        [--workers 1,2] [--database postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic  # noqa: E402
from procstats import GroupMeter  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
HOST = "127.0.0.1"
NETNS_MARKER = "PACSD_BENCH_NETNS"
READY_TIMEOUT = 30.0  # seconds a server gets to answer C-ECHO after start
STOP_TIMEOUT = 15.0  # seconds a server gets to exit after SIGTERM


# --------------------------------------------------------------------------- network namespace


def enter_private_netns() -> None:
    """Re-exec this script under `unshare -n` with loopback up, unless already inside one.

    storescp and Orthanc listen on every address; in a namespace of our own, 'every address' is
    loopback alone. Falls back to the host's network (with a warning) when unshare is denied.
    """
    if os.environ.get(NETNS_MARKER):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    probe = None
    if unshare and ip:
        probe = subprocess.run([unshare, "-n", ip, "link", "set", "lo", "up"], capture_output=True)
    if probe is None or probe.returncode != 0:
        reason = "unshare/ip missing" if probe is None else probe.stderr.decode().strip()
        print(f"WARNING: no private network namespace ({reason}); storescp and Orthanc will listen "
              "on all host addresses during the run (traffic still goes to 127.0.0.1)", flush=True)
        return
    env = dict(os.environ, **{NETNS_MARKER: "1"})
    os.execve(unshare, [unshare, "-n", sys.executable, *sys.argv], env)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def dcmtk_env(nodelay: bool) -> dict[str, str]:
    """The environment of every process of a run, clients and servers alike.

    DCMTK (storescu, storescp, and Orthanc, which is built on DCMTK's network layer) leaves
    Nagle's algorithm on unless TCP_NODELAY=1 is in its environment. A server whose socket keeps
    Nagle stalls ~40 ms per response on delayed ACKs whatever the client does, so the fair run
    sets it for the DCMTK-based servers too; pacsd sets TCP_NODELAY on its own sockets.
    """
    env = dict(os.environ)
    env.pop("TCP_NODELAY", None)
    if nodelay:
        env["TCP_NODELAY"] = "1"
    return env


def start_group(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `cmd` in its own process group (so it and its children can be killed together)."""
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop_group(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group, SIGKILL it if it does not exit in time."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:  # children (storescp --fork) may outlive the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"WARNING: process {proc.pid} did not exit after SIGKILL", flush=True)


def echo_ok(port: int, aet: str) -> bool:
    r = subprocess.run(["echoscu", "-to", "2", "-ta", "2", "-aec", aet, HOST, str(port)],
                       capture_output=True, env=dcmtk_env(True), timeout=10)
    return r.returncode == 0


def wait_ready(proc: subprocess.Popen, port: int, aet: str, timeout: float = READY_TIMEOUT) -> str | None:
    """None once the server answers C-ECHO, else why it never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with code {proc.returncode} before answering C-ECHO"
        if echo_ok(port, aet):
            return None
        time.sleep(0.2)
    return f"no C-ECHO answer within {timeout:.0f} s"


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def count_dicom_files(folder: Path) -> int:
    """Files holding the DICM magic at offset 128 (skips indexes, logs and temp files)."""
    n = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    f.seek(128)
                    n += f.read(4) == b"DICM"
            except OSError:
                pass
    return n


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """One server under test. Subclasses say how to start it and how many files it holds."""

    name: str
    aet: str

    def missing(self) -> str | None:
        """Why this server cannot run here, or None."""
        return None

    def command(self, work: Path, port: int) -> list[str]:
        raise NotImplementedError

    def stored(self, work: Path) -> int:
        return count_dicom_files(work / "data")

    def start(self, work: Path, port: int, nodelay: bool) -> subprocess.Popen:
        (work / "data").mkdir(parents=True)
        return start_group(self.command(work, port), work / "server.log", dcmtk_env(nodelay))


class StoreScp(Server):
    def __init__(self) -> None:
        super().__init__("storescp", "STORESCP")

    def missing(self) -> str | None:
        return None if shutil.which("storescp") else "DCMTK storescp not installed"

    def command(self, work: Path, port: int) -> list[str]:
        # +B: write the received bytes as they are (no re-encoding); --fork: one process per
        # association, so 4 associations are served at once as by the other servers.
        return ["storescp", "--fork", "+B", "-dhl", "-aet", self.aet, "-od", str(work / "data"), str(port)]


class Pacsd(Server):
    """pacsd with `workers` receiving processes, its index in SQLite or in a fresh PostgreSQL
    database made on the server of `database` (a URL whose database we may create others from)."""

    def __init__(self, workers: str = "auto", database: str | None = None) -> None:
        """`workers`: a server.workers value; with the suffix `-shared` (e.g. auto-shared), every
        row goes through the writer process (database.solo_commit off); with `-nofsync`, the
        files and folders are not flushed (storage.fsync off: one sync per image, the index
        commit's, as Orthanc's one per image is its file's; for comparison, not a setting to
        run an archive with); with `-volume`, one syncfs per commit group (storage.flush: volume)."""
        label = {"auto": "pacsd", "auto-shared": "pacsd-shared", "auto-nofsync": "pacsd-nofsync",
                 "auto-volume": "pacsd-volume"}.get(workers, f"pacsd-w{workers}")
        super().__init__(label, "PACSD")
        self.exe = REPO_DIR / ".venv" / "bin" / "pacsd"
        self.solo_commit = not workers.endswith("-shared")
        self.fsync = not workers.endswith("-nofsync")
        self.flush = "volume" if workers.endswith("-volume") else "files"
        self.workers = workers.removesuffix("-shared").removesuffix("-nofsync").removesuffix("-volume")
        self.database = database

    def missing(self) -> str | None:
        return None if self.exe.exists() else f"{self.exe} not found (run make install-dev)"

    def command(self, work: Path, port: int) -> list[str]:
        d = work / "data"
        config = work / "pacsd.yaml"
        workers = self.workers if self.workers == "auto" else int(self.workers)
        config.write_text(json.dumps({"server": {"workers": workers}, "http": {"enabled": False},
                                      "database": {"solo_commit": self.solo_commit},
                                      "storage": {"fsync": self.fsync, "flush": self.flush}}))
        index = ["--database-url", self.fresh_database(work.name)] if self.database else \
            ["--index-db", str(d / "index.sqlite")]
        return [str(self.exe), "serve", "--config", str(config), "--host", HOST, "--port", str(port),
                "--aet", self.aet, "--storage-dir", str(d), *index, "--log-dir", str(d / "logs")]

    def fresh_database(self, label: str) -> str:
        import psycopg
        from sqlalchemy import make_url

        name = "bench_" + "".join(c if c.isalnum() else "_" for c in label)
        admin = make_url(self.database).set(drivername="postgresql")
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # names made here, no user input
            conn.execute(f'CREATE DATABASE "{name}"')
        return admin.set(database=name).render_as_string(hide_password=False)


class Orthanc(Server):
    """Orthanc with its defaults (SQLite index, SyncStorageArea true); only what a run needs is set."""

    def __init__(self) -> None:
        super().__init__("orthanc", "ORTHANC")
        self.exe = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
        self.http_port = 0

    def missing(self) -> str | None:
        return None if self.exe else "Orthanc not installed (Debian package orthanc)"

    def command(self, work: Path, port: int) -> list[str]:
        self.http_port = free_port()
        config = {
            "Name": "pacsd-bench",
            "StorageDirectory": str(work / "data"),
            "IndexDirectory": str(work / "data"),
            "DicomAet": self.aet,
            "DicomPort": port,
            "HttpPort": self.http_port,
        }
        path = work / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        return [self.exe, str(path)]

    def stored(self, work: Path) -> int:
        """Instances in Orthanc's index (REST /statistics); the file count must agree."""
        url = f"http://{HOST}:{self.http_port}/statistics"
        with urllib.request.urlopen(url, timeout=10) as r:
            indexed = int(json.load(r)["CountInstances"])
        on_disk = count_dicom_files(work / "data")
        if on_disk != indexed:
            print(f"  note: Orthanc indexes {indexed} instances but holds {on_disk} DICOM files", flush=True)
        return min(indexed, on_disk)


SERVERS = {"pacsd": Pacsd, "storescp": StoreScp, "orthanc": Orthanc}


# --------------------------------------------------------------------------- one run


@dataclass
class Result:
    server: str
    size: int
    associations: int
    nodelay: bool
    files: int
    bytes: int
    seconds: float | None = None
    stored: int | None = None
    client_errors: int = 0
    error: str | None = None
    instances_per_s: float | None = field(default=None)
    mb_per_s: float | None = field(default=None)
    cpu_ms_per_instance: float | None = None  # the server's whole process group, during the send
    peak_rss_mb: float | None = None  # sum over the group's processes (shared pages in each)
    peak_pss_mb: float | None = None  # sum over the group's processes (shared pages split)

    @property
    def ok(self) -> bool:
        return self.error is None


def split(files: list[Path], parts: int) -> list[list[Path]]:
    """`parts` interleaved slices, so each association carries the same mix of files."""
    return [files[i::parts] for i in range(parts) if files[i::parts]]


def storescu_command(port: int, aet: str, files: list[Path]) -> list[str]:
    # -R: propose only the SOP class / transfer syntax pairs the files need (the file's own
    # TS first, as a modality would), -nh: keep going after a failed store so the count check
    # reports it, -q: no per-file output.
    return ["storescu", "-q", "-R", "-nh", "-aec", aet, HOST, str(port), *map(str, files)]


def send_all(port: int, aet: str, files: list[Path], associations: int, nodelay: bool,
             work: Path, timeout: float) -> tuple[float, int]:
    """Run one storescu per association at once; (seconds first start -> last exit, failed clients)."""
    env = dcmtk_env(nodelay)
    procs: list[subprocess.Popen] = []
    try:
        t0 = time.perf_counter()
        for i, part in enumerate(split(files, associations)):
            procs.append(start_group(storescu_command(port, aet, part), work / f"storescu-{i}.log", env))
        deadline = time.monotonic() + timeout
        for p in procs:
            p.wait(max(0.1, deadline - time.monotonic()))
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            stop_group(p, timeout=5)
    return elapsed, sum(p.returncode != 0 for p in procs)


def run_one(server: Server, files: list[Path], size: int, associations: int, nodelay: bool,
            work_root: Path, keep: bool) -> Result:
    nbytes = sum(f.stat().st_size for f in files)
    res = Result(server.name, size, associations, nodelay, len(files), nbytes)
    work = work_root / f"{server.name}-{size}-a{associations}-{'nodelay' if nodelay else 'nagle'}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.sync()  # start every run with no dirty pages left by the previous one
    port = free_port()
    proc = server.start(work, port, nodelay)
    try:
        why = wait_ready(proc, port, server.aet)
        if why:
            res.error = f"{server.name} did not start: {why}"
            log = tail(work / "server.log")
            if log:
                res.error += "\n" + log
            return res
        timeout = 60 + 0.3 * len(files)  # generous even for 40 ms delayed-ACK stalls per image
        meter = GroupMeter(os.getpgid(proc.pid)).start()
        try:
            res.seconds, res.client_errors = send_all(port, server.aet, files, associations, nodelay, work, timeout)
        except subprocess.TimeoutExpired:
            res.error = f"storescu did not finish within {timeout:.0f} s"
            return res
        finally:
            usage = meter.stop()
        res.cpu_ms_per_instance = usage.cpu_seconds * 1000 / len(files)
        res.peak_rss_mb, res.peak_pss_mb = usage.peak_rss / 1e6, usage.peak_pss / 1e6
        res.stored = server.stored(work)
        res.instances_per_s = len(files) / res.seconds
        res.mb_per_s = nbytes / 1e6 / res.seconds
        if res.stored != len(files):
            res.error = f"stored {res.stored} of {len(files)} files"
        elif res.client_errors:
            res.error = f"{res.client_errors} storescu process(es) exited non-zero"
        if res.error:
            res.error += "\n" + tail(work / "storescu-0.log", 5)
        return res
    finally:
        stop_group(proc)
        if not keep and res.ok:
            shutil.rmtree(work, ignore_errors=True)


def median_run(runs: list[Result]) -> Result:
    """The run with the median rate (a failed run, if any failed: failures are not hidden)."""
    failed = [r for r in runs if not r.ok]
    if failed:
        return failed[0]
    return sorted(runs, key=lambda r: r.instances_per_s)[len(runs) // 2]


# --------------------------------------------------------------------------- report


def ratio(results: list[Result], r: Result, other: str) -> str:
    """pacsd's instances/s over `other`'s in the same configuration, on pacsd's rows."""
    if not r.server.startswith("pacsd") or not r.ok:
        return ""
    for o in results:
        if (o.server, o.size, o.associations, o.nodelay) == (other, r.size, r.associations, r.nodelay) and o.ok:
            return f"{r.instances_per_s / o.instances_per_s:.2f}x"
    return ""


def table(results: list[Result]) -> str:
    head = ["server", "size", "assoc", "nodelay", "files", "seconds", "inst/s", "MB/s", "cpu ms/inst",
            "RSS MB", "PSS MB", "pacsd/orthanc", "pacsd/storescp"]
    rows = []
    for r in results:
        figures = ([f"{r.seconds:.2f}", f"{r.instances_per_s:.0f}", f"{r.mb_per_s:.1f}",
                    f"{r.cpu_ms_per_instance:.2f}", f"{r.peak_rss_mb:.0f}", f"{r.peak_pss_mb:.0f}"] if r.ok
                   else ["FAILED", "-", "-", "-", "-", "-"])
        rows.append([r.server, f"{r.size}x{r.size}", str(r.associations), "yes" if r.nodelay else "no",
                     str(r.files), *figures, ratio(results, r, "orthanc"), ratio(results, r, "storescp")])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(x.rjust(w) if i > 0 else x.ljust(w) for i, (x, w) in enumerate(zip(row, widths)))  # noqa: E731
    lines = [fmt(head), fmt(["-" * w for w in widths])]
    last_group = None
    for r, row in zip(results, rows):
        group = (r.size, r.associations, r.nodelay)
        if last_group is not None and group != last_group:
            lines.append("")
        last_group = group
        lines.append(fmt(row))
    return "\n".join(lines)


def versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unavailable"
    import pydicom
    import pynetdicom
    return {"python": platform.python_version(), "pydicom": pydicom.__version__,
            "pynetdicom": pynetdicom.__version__, "dcmtk": first_line(["storescu", "--version"]),
            "orthanc": first_line([Orthanc().exe or "Orthanc", "--version"]), "cpus": str(os.cpu_count())}


def write_json(path: Path, args: argparse.Namespace, results: list[Result]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"when": datetime.now().isoformat(timespec="seconds"), "versions": versions(),
           "netns": bool(os.environ.get(NETNS_MARKER)),
           "args": {k: str(v) for k, v in vars(args).items()},
           "results": [asdict(r) for r in results]}
    path.write_text(json.dumps(doc, indent=2))
    print(f"results written to {path}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count-large", type=int, default=1000, help="512x512 images (default 1000)")
    p.add_argument("--count-small", type=int, default=2000, help="64x64 images (default 2000)")
    p.add_argument("--quick", action="store_true", help="smoke run: 40 large and 80 small images")
    p.add_argument("--servers", default="pacsd,storescp,orthanc", help="comma-separated subset")
    p.add_argument("--associations", default="1,4", help="comma-separated (default 1,4)")
    p.add_argument("--nodelay", choices=["both", "on", "off"], default="both",
                   help="TCP_NODELAY=1 in the clients' environment: both (default), on, off")
    p.add_argument("--cache-dir", type=Path, default=BENCH_DIR / ".cache", help="synthetic images")
    p.add_argument("--work-dir", type=Path, default=BENCH_DIR / ".work", help="server folders")
    p.add_argument("--json", type=Path, default=None, help="default bench/results/ingest-<time>.json")
    p.add_argument("--workers", default="auto,1",
                   help="pacsd server.workers, comma-separated (default auto,1: the default, and one process); "
                        "auto-shared: auto with every row through the writer process (database.solo_commit off); "
                        "auto-nofsync: auto without file and folder flushes (storage.fsync off), for comparison; "
                        "auto-volume: auto with one syncfs per commit group (storage.flush: volume)")
    p.add_argument("--repeat", type=int, default=None,
                   help="runs per cell, interleaved between servers; the median is reported (default 3, --quick 1)")
    p.add_argument("--database", default=None,
                   help="PostgreSQL URL for pacsd's index (a fresh database per run is made on that "
                        "server); in the private network namespace reach it by unix socket, e.g. "
                        "postgresql://postgres@/postgres?host=/var/run/postgresql")
    p.add_argument("--keep", action="store_true", help="keep the servers' folders after each run")
    args = p.parse_args(argv)
    if args.quick:
        args.count_large, args.count_small = 40, 80
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    enter_private_netns()
    for tool in ("storescu", "echoscu"):
        if not shutil.which(tool):
            print(f"{tool} not found: install DCMTK (scripts/install-system-deps.sh bench)", file=sys.stderr)
            return 2
    servers: list[Server] = []
    for name in [s.strip() for s in args.servers.split(",") if s.strip()]:
        if name not in SERVERS:
            print(f"unknown server {name!r}; choose from {', '.join(SERVERS)}", file=sys.stderr)
            return 2
        variants = [Pacsd(w.strip(), args.database) for w in args.workers.split(",")] if name == "pacsd" \
            else [SERVERS[name]()]
        for server in variants:
            why = server.missing()
            if why:
                print(f"skipping {server.name}: {why}", flush=True)
            else:
                servers.append(server)
    sets = [(512, synthetic.ensure_images(args.cache_dir, 512, args.count_large)),
            (64, synthetic.ensure_images(args.cache_dir, 64, args.count_small))]
    assocs = [int(a) for a in args.associations.split(",")]
    nodelays = {"both": [True, False], "on": [True], "off": [False]}[args.nodelay]

    results: list[Result] = []
    skipped: set[str] = set()
    try:
        for size, files in sets:
            if not files:
                continue
            for n in assocs:
                for nodelay in nodelays:
                    runs: dict[str, list[Result]] = {}
                    for turn in range(args.repeat):
                        for server in servers:
                            if server.name in skipped:
                                continue
                            label = (f"{server.name:8} {size}x{size} x{len(files)}  assoc={n} "
                                     f"nodelay={'yes' if nodelay else 'no'} run {turn + 1}")
                            print(f"{label} ...", end=" ", flush=True)
                            r = run_one(server, files, size, n, nodelay, args.work_dir, args.keep)
                            if r.ok:
                                print(f"{r.instances_per_s:7.0f} inst/s {r.mb_per_s:7.1f} MB/s "
                                      f"{r.cpu_ms_per_instance:5.2f} cpu ms/inst  RSS {r.peak_rss_mb:4.0f} MB  "
                                      f"PSS {r.peak_pss_mb:4.0f} MB", flush=True)
                            else:
                                print(f"FAILED: {r.error}", flush=True)
                            if r.error and "did not start" in r.error:
                                print(f"skipping {server.name} for the rest of the run", flush=True)
                                skipped.add(server.name)
                                continue
                            runs.setdefault(server.name, []).append(r)
                    results.extend(median_run(server_runs) for server_runs in runs.values())
    except KeyboardInterrupt:
        print("\ninterrupted; reporting what was measured", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(args.work_dir, ignore_errors=True)

    print()
    print(table(results))
    json_path = args.json or BENCH_DIR / "results" / f"ingest-{datetime.now():%Y%m%d-%H%M%S}.json"
    write_json(json_path, args, results)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
