"""The shipped Mosquitto configuration, started for real on free ports.

:func:`render_mosquitto_conf` is the only rewrite of ``deploy/mosquitto/mosquitto.conf``:
listener ports and the directories of the password file, ACL, certificates and persistence.
Every other line (TLS, no anonymous access, limits, persistence settings) runs as shipped.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from liftwatch.cmd.main import main
from liftwatch.localservices import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SHIPPED_CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
SHIPPED_ACL = DEPLOY / "mosquitto" / "acl"
MAKE_CERTS = DEPLOY / "mosquitto" / "make-certs.sh"

ETC = "/etc/mosquitto/liftwatch/"
DATA = "/var/lib/mosquitto/"


def render_mosquitto_conf(
    text: str, *, tls_port: int, local_port: int, etc_dir: Path, data_dir: Path
) -> str:
    """Move the shipped config onto test ports and directories; fails loudly if the shipped
    file no longer has the shape this rewrite expects."""
    replacements = [
        ("listener 8883\n", f"listener {tls_port} 127.0.0.1\n"),
        ("listener 1883 127.0.0.1\n", f"listener {local_port} 127.0.0.1\n"),
        (ETC, f"{etc_dir}/"),
        (DATA, f"{data_dir}/"),
    ]
    for old, new in replacements:
        if old not in text:
            raise AssertionError(f"shipped mosquitto.conf has no {old.strip()!r}")
        text = text.replace(old, new)
    return text


def run_cli(argv: Sequence[str], env: dict[str, str]) -> tuple[int, str, str]:
    """``liftwatch ARGV`` in this process, with ``env`` added to the environment."""
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, out.getvalue(), err.getvalue()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def make_certs(out: Path) -> None:
    subprocess.run(
        ["sh", str(MAKE_CERTS), str(out), "localhost", "127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def give_to_broker_user(root: Path) -> None:
    """Started as root, Mosquitto drops to the ``mosquitto`` user *before* it reads the key,
    password file and ACL (as in production, where they are root:mosquitto 0640)."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for path in [root, *root.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)


def _open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class SecuredMosquitto(Mosquitto):
    """Mosquitto running ``deploy/mosquitto/mosquitto.conf`` (rendered) and the shipped ACL."""

    name = "mosquitto-secured"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.tls_port = self.port
        self.local_port = free_port()
        self.etc = workdir / "etc"
        self.data = workdir / "data"
        self.etc.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.etc / "mosquitto.conf"
        self.password_file = self.etc / "passwd"
        self.acl_file = self.etc / "acl"
        self.ca_file = self.etc / "certs" / "ca.crt"

    def prepare(self) -> None:
        make_certs(self.etc / "certs")
        shutil.copyfile(SHIPPED_ACL, self.acl_file)
        self.conf_path.write_text(
            render_mosquitto_conf(
                SHIPPED_CONF.read_text(),
                tls_port=self.tls_port,
                local_port=self.local_port,
                etc_dir=self.etc,
                data_dir=self.data,
            )
        )

    def _argv(self) -> list[str]:
        return [self.binary, "-c", str(self.conf_path)]

    def _ready(self) -> bool:
        return _open(self.tls_port) and _open(self.local_port)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@contextlib.contextmanager
def temp_root(prefix: str) -> Iterator[Path]:
    """A world-traversable temp dir: pytest's own are 0700 root, which the broker, having
    dropped to its own user, could not enter."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
