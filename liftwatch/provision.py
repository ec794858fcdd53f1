"""Device credentials in Mosquitto's password file, and the ACL that confines each device.

A device's MQTT username is its ``lift_id``; the shipped ACL (``deploy/mosquitto/acl``) holds
one ``pattern write {prefix}/%u/{telemetry,event,status}`` line per topic, so a device may
publish only under its own lift and no per-device ACL entry is ever needed. Provisioning
therefore (1) checks that those pattern lines are present (appending them when missing),
(2) writes a random password with ``mosquitto_passwd -b``, and (3) optionally tells the broker
to reload (SIGHUP). Revoking deletes the user with ``mosquitto_passwd -D``; on reload
Mosquitto disconnects a connected client whose user no longer exists.

The parsing and checks are pure functions; the file and process work is at the bottom.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

from liftwatch.protocol import LIFT_ID_RE

DEVICE_TOPICS: Final = ("telemetry", "event", "status")
DEFAULT_PASSWORD_FILE: Final = Path("/etc/mosquitto/liftwatch/passwd")
DEFAULT_ACL_FILE: Final = Path("/etc/mosquitto/liftwatch/acl")

Access = Literal["read", "write", "readwrite", "deny"]
_ACCESS: Final[frozenset[str]] = frozenset({"read", "write", "readwrite", "deny"})


class ProvisionError(Exception):
    """Credentials could not be created or removed; the message says what to do."""


@dataclass(frozen=True)
class AclRule:
    kind: Literal["topic", "pattern"]
    access: Access
    topic: str
    user: str | None  # None: a pattern (every user) or a topic line before any ``user``


def parse_acl(text: str) -> tuple[list[AclRule], set[str]]:
    """Rules and the usernames named by ``user`` lines, as Mosquitto's acl_file reads them:
    ``pattern`` lines apply to everyone wherever they are; an access word is optional and
    defaults to ``readwrite``; the topic is the rest of the line."""
    rules: list[AclRule] = []
    users: set[str] = set()
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        rest = rest.strip()
        if keyword == "user" and rest:
            current = rest
            users.add(rest)
        elif keyword in ("topic", "pattern") and rest:
            first, _, topic = rest.partition(" ")
            access: Access = "readwrite"
            if first in _ACCESS and topic.strip():
                access, rest = cast(Access, first), topic.strip()
            rules.append(
                AclRule(
                    kind="pattern" if keyword == "pattern" else "topic",
                    access=access,
                    topic=rest,
                    user=None if keyword == "pattern" else current,
                )
            )
    return rules, users


def device_patterns(prefix: str) -> list[str]:
    return [f"{prefix}/%u/{kind}" for kind in DEVICE_TOPICS]


def missing_device_patterns(acl_text: str, prefix: str) -> list[str]:
    """The device pattern topics the ACL does not grant for writing.

    Raises :class:`ProvisionError` when the ACL explicitly denies one: appending a grant
    would not override a deny, and the operator wrote it on purpose.
    """
    rules, _ = parse_acl(acl_text)
    patterns = [r for r in rules if r.kind == "pattern"]
    missing = []
    for topic in device_patterns(prefix):
        if any(r.topic == topic and r.access == "deny" for r in patterns):
            raise ProvisionError(
                f"the ACL denies 'pattern {topic}': devices could not publish; fix the ACL"
            )
        if not any(r.topic == topic and r.access in ("write", "readwrite") for r in patterns):
            missing.append(topic)
    return missing


def acl_block(topics: Sequence[str]) -> str:
    lines = "".join(f"pattern write {t}\n" for t in topics)
    return (
        "\n# Added by `liftwatch devices provision`: a device (username = lift_id) may\n"
        "# publish only its own topics.\n" + lines
    )


def password_file_users(text: str) -> set[str]:
    """Usernames in a Mosquitto password file (``username:hash`` lines)."""
    users = set()
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and ":" in line:
            users.add(line.split(":", 1)[0])
    return users


def check_device_name(lift_id: str, service_users: Iterable[str]) -> None:
    """A lift id usable as an MQTT username and ACL ``%u`` substitution.

    The protocol's lift id alphabet already excludes ``/``, ``+``, ``#`` and ``:`` (which
    would break topics, pattern substitution or the password file). A lift named like one of
    the ACL's own users (``ingest``, ``alerts``...) would inherit that user's rights.
    """
    if not LIFT_ID_RE.fullmatch(lift_id):
        raise ProvisionError(
            f"{lift_id!r} is not a valid lift id (1-64 of A-Z a-z 0-9 . _ -), see PROTOCOL.md"
        )
    if lift_id in set(service_users):
        raise ProvisionError(
            f"{lift_id!r} is a service user in the ACL; a device may not share its name"
        )


def new_password() -> str:
    """192 random bits, URL-safe so it survives any device configuration format."""
    return secrets.token_urlsafe(24)


# --- I/O edges ------------------------------------------------------------------------------


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProvisionError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisionError(f"cannot read {what} {path}: {exc}") from None


def ensure_acl(acl_path: Path, prefix: str) -> list[str]:
    """Make the ACL grant the device patterns; returns the pattern topics it appended."""
    text = read_text(acl_path, "ACL file")
    missing = missing_device_patterns(text, prefix)
    if missing:
        sep = "" if text.endswith("\n") or not text else "\n"
        _replace_file(acl_path, text + sep + acl_block(missing))
    return missing


def _replace_file(path: Path, text: str) -> None:
    """Write atomically, keeping the file's mode, so Mosquitto never reads half a file."""
    try:
        mode = path.stat().st_mode & 0o777
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ProvisionError(f"cannot update {path}: {exc}") from None


def provisioned_users(passwd_path: Path) -> set[str]:
    if not passwd_path.exists():
        return set()
    return password_file_users(read_text(passwd_path, "password file"))


class PasswordFile:
    """Mosquitto's password file, changed only through ``mosquitto_passwd``, which owns the
    hash format (``$7$``: PBKDF2-SHA512 in Mosquitto 2.x)."""

    def __init__(self, path: Path, command: Sequence[str] = ("mosquitto_passwd",)) -> None:
        self.path = path
        self.command = list(command)

    def users(self) -> set[str]:
        return provisioned_users(self.path)

    def set(self, username: str, password: str) -> None:
        if not self.path.exists():
            # mosquitto_passwd -c would create it with the umask's mode; the hashes are
            # readable only by owner and group (the broker's group).
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))
            except FileExistsError:
                pass
            except OSError as exc:
                raise ProvisionError(f"cannot create password file {self.path}: {exc}") from None
        # -b puts the password in the argument list for the few milliseconds the tool runs;
        # docs/deploy.md explains (hidepid=2 on /proc hides it from other users).
        self._run(["-b", str(self.path), username, password], f"set the password of {username}")

    def delete(self, username: str) -> None:
        self._run(["-D", str(self.path), username], f"delete {username}")

    def _run(self, args: list[str], what: str) -> None:
        argv = [*self.command, *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except FileNotFoundError:
            raise ProvisionError(
                f"{self.command[0]} not found: install Mosquitto (Debian package 'mosquitto') "
                "or pass --mosquitto-passwd PATH"
            ) from None
        except subprocess.TimeoutExpired:
            raise ProvisionError(f"{self.command[0]} did not finish in 60 s") from None
        # Never echo argv: it carries the password.
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
            raise ProvisionError(f"mosquitto_passwd could not {what}: {detail}")


def reload_broker(pid: int) -> None:
    """SIGHUP: Mosquitto re-reads the password file and ACL, and drops clients whose user is
    gone. The process name is checked first because SIGHUP terminates most other programs."""
    comm = Path(f"/proc/{pid}/comm")
    try:
        name = comm.read_text().strip()
    except FileNotFoundError:
        raise ProvisionError(f"no process {pid}: is Mosquitto running?") from None
    except OSError:
        name = "mosquitto"  # no /proc (not Linux): trust the operator
    if name != "mosquitto":
        raise ProvisionError(f"process {pid} is {name!r}, not mosquitto: not signalled")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ProvisionError(f"no process {pid}: is Mosquitto running?") from None
    except PermissionError:
        raise ProvisionError(
            f"not allowed to signal process {pid}: run as root or `systemctl reload mosquitto`"
        ) from None
