"""Start a real Mosquitto, NATS server (MQTT), InfluxDB 1.x or PostgreSQL as a child process,
on free ports, in a directory of our own: for the test harness, the benchmarks and ``make demo``.

Nothing here touches a service it did not start: every port is chosen free, every file lives
in the given directory, and :meth:`stop` signals only our own child process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO


class ServiceError(RuntimeError):
    """A local service could not be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None
    )
    if path is None:
        raise ServiceError(
            f"{binary} not found: install the Debian package {package!r} "
            f"(sudo apt-get install -y {package}) or run `make setup`"
        )
    return path


class _ChildService:
    name = "service"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.run_as: str | None = None  # a user to run the child as (None: ours)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self._argv(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            user=self.run_as,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not straight to it
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with {self.proc.returncode}; log:\n{self.log_tail()}"
                )
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServiceError(
            f"{self.name} did not become ready in {timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL: an abrupt outage, as when the host dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Mosquitto(_ChildService):
    """A private Mosquitto 2.x broker: anonymous access on 127.0.0.1 only, with persistence so
    persistent sessions survive a broker restart like in production."""

    name = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.binary = _require("mosquitto", "mosquitto")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 30\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 0\n"
            "max_packet_size 1048576\n"
            # As deploy/mosquitto/mosquitto.conf: without it Nagle + delayed ACKs hold small
            # packets (an alarm among them) up to 40 ms (measured in bench/alarm_latency.py).
            "set_tcp_nodelay true\n"
            "queue_qos0_messages false\n"
            "log_type error\nlog_type warning\n"
            f"{self.extra_conf}\n"
        )
        return [self.binary, "-c", str(conf)]

    def _ready(self) -> bool:
        return _port_open(self.port)


class NatsServer(_ChildService):
    """A private NATS server (Debian package ``nats-server``) with its MQTT interface enabled:
    anonymous access on 127.0.0.1 only, like :class:`Mosquitto`. NATS's MQTT needs JetStream
    (sessions, subscriptions and QoS 1 messages are JetStream streams and consumers, stored in
    ``workdir``, so persistent sessions survive a restart) and a ``server_name``.

    ``url`` is the MQTT listener; the NATS client port and the monitoring port are free ports
    too (never 4222/8222: the machine's own NATS). ``ack_wait`` is how long the server waits
    for a PUBACK before it sends a message again (NATS's own default 30 s); ``max_ack_pending``
    bounds the unacknowledged messages per subscription (NATS's default 1024)."""

    name = "nats-server"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        ack_wait: str = "30s",
        max_ack_pending: int = 0,
        extra_conf: str = "",
    ) -> None:
        super().__init__(workdir)
        self.port = port or free_port()  # the MQTT port
        self.client_port = free_port()
        self.http_port = free_port()
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.extra_conf = extra_conf
        self.binary = _require("nats-server", "nats-server")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _argv(self) -> list[str]:
        conf = self.workdir / "nats-server.conf"
        pending = f"  max_ack_pending: {self.max_ack_pending}\n" if self.max_ack_pending else ""
        conf.write_text(
            f'server_name: "liftwatch-{self.port}"\n'
            f'listen: "127.0.0.1:{self.client_port}"\n'
            f'http: "127.0.0.1:{self.http_port}"\n'
            "max_payload: 1MB\n"
            # NATS keeps its streams in ``<store_dir>/jetstream``: here workdir/jetstream.
            f'jetstream {{\n  store_dir: "{self.workdir}"\n'
            "  max_memory_store: 64MB\n  max_file_store: 4GB\n}\n"
            f'mqtt {{\n  listen: "127.0.0.1:{self.port}"\n'
            f'  ack_wait: "{self.ack_wait}"\n{pending}}}\n'
            f"{self.extra_conf}\n"
        )
        return [self.binary, "-c", str(conf)]

    def _ready(self) -> bool:
        return _port_open(self.port)


class InfluxDB(_ChildService):
    """A private InfluxDB 1.x (Debian package ``influxdb``) with its own data directory and
    ports (HTTP and the RPC bind address both moved off their defaults)."""

    name = "influxdb"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.rpc_port = free_port()
        self.binary = _require("influxd", "influxdb")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        d = self.workdir
        conf = d / "influxdb.conf"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n  logging-enabled = false\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n'
            '  query-log-enabled = false\n  cache-max-memory-size = "1g"\n'
            '  index-version = "inmem"\n'
            "  max-values-per-tag = 0\n  max-series-per-database = 0\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n'
            "  log-enabled = false\n  max-body-size = 0\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )
        return [self.binary, "-config", str(conf)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as resp:  # noqa: S310
                return int(resp.status) == 204
        except (urllib.error.URLError, OSError):
            return False


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceError("PostgreSQL cannot run as root and no 'postgres' or 'nobody' user exists")


def _postgres_bin(binary: str) -> str:
    """A PostgreSQL server binary (``initdb``, ``pg_ctl``, ``postgres``) of the newest version
    installed under /usr/lib/postgresql (Debian keeps them off PATH)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{binary}"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return str(found[-1])
    return _require(binary, "postgresql")


class PostgreSQL(_ChildService):
    """A private PostgreSQL server (Debian package ``postgresql``): its own cluster made by
    ``initdb`` in ``workdir``, listening on 127.0.0.1 on a free port and on a Unix socket in
    ``workdir`` only. The package's own cluster (port 5432) is never touched.

    ``url`` is a libpq URL for the superuser ``liftwatch`` (password ``liftwatch``) on the
    database ``liftwatch``; :meth:`create_database` makes more, one per test if wanted."""

    name = "postgresql"
    user = "liftwatch"
    password = "liftwatch"  # noqa: S105 - a throw-away cluster on 127.0.0.1

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.postgres = _postgres_bin("postgres")
        self.initdb = _postgres_bin("initdb")
        self.rundir = self.workdir
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root (CI and this machine's shell are root): the
            # cluster then belongs to the package's system user, in a directory of its own
            # (a pytest temp dir is 0700 root), removed when this process exits.
            self.run_as = _unprivileged_user()
            self.rundir = Path(tempfile.mkdtemp(prefix="liftwatch-pg-"))
            shutil.chown(self.rundir, self.run_as, self.run_as)
            atexit.register(shutil.rmtree, self.rundir, ignore_errors=True)
        self.datadir = self.rundir / "pgdata"

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for("liftwatch")

    def _init_cluster(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        pwfile = self.rundir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.run_as is not None:
            shutil.chown(pwfile, self.run_as, self.run_as)
        cmd = [
            self.initdb, "-D", str(self.datadir), "-U", self.user, "--pwfile", str(pwfile),
            "-A", "scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(
            cmd, capture_output=True, text=True, check=False, user=self.run_as, cwd=self.rundir
        )
        if done.returncode != 0:
            raise ServiceError(f"initdb failed ({done.returncode}):\n{done.stderr[-2000:]}")

    def _argv(self) -> list[str]:
        self._init_cluster()
        # fsync stays on (the default): the tests check durability claims, and a private
        # cluster on tmpfs-like scratch space is fast enough with it.
        return [
            self.postgres, "-D", str(self.datadir),
            "-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
            "-c", f"unix_socket_directories={self.rundir}",
            "-c", "max_connections=200", "-c", "shared_buffers=64MB",
            "-c", "log_min_messages=warning", "-c", "logging_collector=off",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        was_running = self.running
        super().start(timeout)
        if not was_running:
            self.create_database("liftwatch", exist_ok=True)

    def _ready(self) -> bool:
        if not _port_open(self.port):
            return False
        try:
            self._admin("SELECT 1")
        except Exception:
            return False
        return True

    def _admin(self, sql: str) -> None:
        import psycopg  # imported here: Mosquitto and InfluxDB users need no driver

        with psycopg.connect(self.url_for("postgres"), autocommit=True, connect_timeout=2) as c:
            c.execute(sql)

    def create_database(self, name: str, *, exist_ok: bool = False) -> str:
        """Create database ``name`` (letters, digits, underscore); returns its URL."""
        if not name.replace("_", "").isalnum() or not name.isascii():
            raise ValueError(f"not a plain database name: {name!r}")
        try:
            self._admin(f'CREATE DATABASE "{name}"')
        except Exception as exc:
            if not (exist_ok and "already exists" in str(exc)):
                raise
        return self.url_for(name)

    def stop(self, timeout: float = 15.0) -> None:
        # SIGTERM is PostgreSQL's "smart" shutdown, which waits for clients to leave; SIGINT
        # ("fast") rolls them back and stops at once, as pg_ctl stop -m fast does.
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        super().stop(timeout)
