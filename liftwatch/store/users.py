"""SQL for people's accounts and their login sessions (docs/console.md § Accounts and sessions).

A user has a role and, for a maintainer, a company, exactly as an API token has; a login turns
into the same ``Principal`` as a token (api/sessions.py). Passwords are hashed with argon2id
through argon2-cffi's :class:`~argon2.PasswordHasher` with its defaults (RFC 9106's
low-memory profile); a hash made with older parameters is replaced at the next successful
login (``check_needs_rehash``). Usernames are unique ignoring case: ``username_key`` is the
lower-case name and is what lookups use, ``username`` keeps the spelling given.

A session row is keyed by the SHA-256 of the random token the cookie carries; the token itself
is never stored. Disabling a user, changing a password or logging out revokes sessions in the
same transaction and records a ``token`` change, so open event streams of every API process
re-check at once (liftwatch/store/changes.py).
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass, field, replace

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from liftwatch.clock import now_ms
from liftwatch.store import changes
from liftwatch.store.db import Connection, Database, Row

ROLES = ("admin", "inspector", "maintainer")
#: Login names: ASCII letters, digits and ``. _ @ -``, starting with a letter or digit.
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
#: A longer password is refused before hashing (argon2 hashes any length, slowly).
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()


class UserExists(Exception):
    """A user of that name (ignoring case) exists already."""


class UserNotFound(Exception):
    """No user of that name."""


def username_key(username: str) -> str:
    return username.lower()


def username_problem(username: str) -> str | None:
    if not USERNAME_RE.fullmatch(username):
        return "1-64 characters: ASCII letters, digits and . _ @ -, starting with a letter or digit"
    return None


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"at most {MAX_PASSWORD_LENGTH} characters"
    return None


def role_problem(role: str, company_id: str | None) -> str | None:
    """Why ``role``/``company_id`` cannot go together (the table's CHECK), or None."""
    if role not in ROLES:
        return f"role must be one of {', '.join(ROLES)}"
    if role == "maintainer" and company_id is None:
        return "a maintainer needs a company"
    if role != "maintainer" and company_id is not None:
        return f"only maintainers belong to a company, not {role}"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def burn_verification(password: str) -> None:
    """Spend the time of one verification, for a username that does not exist: a login's
    answer time does not tell whether the user exists."""
    verify_hash(_dummy_hash(), password)


def verify_hash(encoded: str, password: str) -> bool:
    try:
        return _hasher.verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: str
    username: str
    role: str
    company_id: str | None
    created_at: int
    created_by: str
    password_changed_at: int
    disabled_at: int | None = None
    password_hash: str = field(default="", repr=False)


def _user(row: Row) -> UserRecord:
    return UserRecord(
        user_id=row["user_id"],
        username=row["username"],
        role=row["role"],
        company_id=row["company_id"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        password_changed_at=row["password_changed_at"],
        disabled_at=row["disabled_at"],
        password_hash=row["password_hash"],
    )


def add_user(
    db: Database,
    *,
    username: str,
    password: str,
    role: str,
    company_id: str | None,
    created_by: str,
) -> UserRecord:
    """Create a user. Raises ``ValueError`` (bad name, password or role), :class:`UserExists`,
    or a store ``IntegrityError`` for an unknown company."""
    for problem in (
        username_problem(username),
        password_problem(password),
        role_problem(role, company_id),
    ):
        if problem:
            raise ValueError(problem)
    encoded = hash_password(password)  # outside the transaction: it takes ~0.2 s
    now = now_ms()
    user_id = "usr_" + secrets.token_hex(8)
    with db.transaction() as conn:
        if _find(conn, username) is not None:
            raise UserExists(f"a user named {username!r} exists already (names ignore case)")
        conn.execute(
            "INSERT INTO users (user_id, username, username_key, password_hash, role,"
            " company_id, created_at, created_by, password_changed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                user_id,
                username,
                username_key(username),
                encoded,
                role,
                company_id,
                now,
                created_by,
                now,
            ),
        )
    return UserRecord(user_id, username, role, company_id, now, created_by, now, None, encoded)


def _find(conn: Connection, username: str) -> UserRecord | None:
    row = conn.execute(
        "SELECT * FROM users WHERE username_key = ?", (username_key(username),)
    ).fetchone()
    return None if row is None else _user(row)


def get_user(db: Database, username: str) -> UserRecord | None:
    return _find(db.conn, username)


def list_users(db: Database, *, company_id: str | None = None) -> list[UserRecord]:
    if company_id is None:
        rows = db.conn.execute("SELECT * FROM users ORDER BY username_key").fetchall()
    else:
        rows = db.conn.execute(
            "SELECT * FROM users WHERE company_id = ? ORDER BY username_key", (company_id,)
        ).fetchall()
    return [_user(r) for r in rows]


def _end_sessions(conn: Connection, user_id: str, now: int) -> int:
    ended = conn.execute(
        "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        (now, user_id),
    ).rowcount
    # Open event streams of this user re-check at once, in every API process.
    changes.record_in(conn, changes.TOKEN, user_id, now)
    return ended


def update_user(
    db: Database,
    username: str,
    *,
    role: str | None = None,
    company_id: str | None = None,
    set_company: bool = False,
    disabled: bool | None = None,
) -> UserRecord:
    """Change role/company (``set_company`` to write ``company_id``, None included) and/or
    disable or re-enable. Disabling, and any change of role or company, ends the user's
    sessions at once (the next request of each is 401). Raises :class:`UserNotFound`,
    ``ValueError`` for a role/company pair the table refuses, or ``IntegrityError`` for an
    unknown company."""
    now = now_ms()
    with db.transaction() as conn:
        user = _find(conn, username)
        if user is None:
            raise UserNotFound(f"no user named {username!r}")
        new_role = role if role is not None else user.role
        if set_company:
            new_company = company_id
        elif new_role != "maintainer":
            new_company = None  # an admin or inspector belongs to no company
        else:
            new_company = user.company_id
        problem = role_problem(new_role, new_company)
        if problem:
            raise ValueError(problem)
        new_disabled = user.disabled_at
        if disabled is True and user.disabled_at is None:
            new_disabled = now
        elif disabled is False:
            new_disabled = None
        conn.execute(
            "UPDATE users SET role = ?, company_id = ?, disabled_at = ? WHERE user_id = ?",
            (new_role, new_company, new_disabled, user.user_id),
        )
        scope_changed = (new_role, new_company) != (user.role, user.company_id)
        if scope_changed or (new_disabled is not None and user.disabled_at is None):
            _end_sessions(conn, user.user_id, now)
    return UserRecord(
        user.user_id,
        user.username,
        new_role,
        new_company,
        user.created_at,
        user.created_by,
        user.password_changed_at,
        new_disabled,
        user.password_hash,
    )


def disable_user(db: Database, username: str) -> UserRecord:
    return update_user(db, username, disabled=True)


def set_password(db: Database, username: str, password: str) -> UserRecord:
    """Replace the password; every session of the user ends (a stolen session does not
    survive a password change). Raises :class:`UserNotFound` or ``ValueError``."""
    problem = password_problem(password)
    if problem:
        raise ValueError(problem)
    encoded = hash_password(password)
    now = now_ms()
    with db.transaction() as conn:
        user = _find(conn, username)
        if user is None:
            raise UserNotFound(f"no user named {username!r}")
        conn.execute(
            "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE user_id = ?",
            (encoded, now, user.user_id),
        )
        _end_sessions(conn, user.user_id, now)
    return replace(user, password_changed_at=now, password_hash=encoded)


def check_password(db: Database, user: UserRecord, password: str) -> bool:
    """Whether ``password`` is the user's; a hash made with parameters older than the
    library's current defaults is replaced on success."""
    if not verify_hash(user.password_hash, password):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        encoded = hash_password(password)
        with db.transaction() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE user_id = ? AND password_hash = ?",
                (encoded, user.user_id, user.password_hash),
            )
    return True


# --- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session with what authentication needs of its user, read in one query."""

    session_id: str
    user_id: str
    username: str
    role: str
    company_id: str | None
    created_at: int
    last_seen_at: int
    expires_at: int
    revoked_at: int | None
    user_disabled_at: int | None
    company_active: bool | None  # None: the user has no company


SESSION_PRUNE_AFTER_MS = 24 * 3600 * 1000  # ended sessions are deleted a day after they end


def create_session(
    db: Database, *, session_id: str, user_id: str, lifetime_ms: int, now: int | None = None
) -> int:
    """Insert a session valid for ``lifetime_ms`` at most; returns its ``expires_at``. Sessions
    that ended more than a day ago are deleted in the same transaction."""
    now = now_ms() if now is None else now
    expires = now + lifetime_ms
    with db.transaction() as conn:
        conn.execute(
            "DELETE FROM sessions WHERE expires_at < ? OR revoked_at < ?",
            (now - SESSION_PRUNE_AFTER_MS, now - SESSION_PRUNE_AFTER_MS),
        )
        conn.execute(
            "INSERT INTO sessions (session_id, user_id, created_at, last_seen_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (session_id, user_id, now, now, expires),
        )
    return expires


def find_session(db: Database, session_id: str) -> SessionRecord | None:
    """The session with its user's role, company, disabled flag and company's ``active``,
    whatever its state (the caller decides): one query, no cache, so a revocation in any
    process takes effect on the next request."""
    row = db.conn.execute(
        "SELECT s.session_id, s.user_id, s.created_at, s.last_seen_at, s.expires_at,"
        " s.revoked_at, u.username, u.role, u.company_id, u.disabled_at,"
        " c.active AS company_active"
        " FROM sessions s JOIN users u ON u.user_id = s.user_id"
        " LEFT JOIN companies c ON c.company_id = u.company_id"
        " WHERE s.session_id = ?",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    active = row["company_active"]
    return SessionRecord(
        session_id=row["session_id"],
        user_id=row["user_id"],
        username=row["username"],
        role=row["role"],
        company_id=row["company_id"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        user_disabled_at=row["disabled_at"],
        company_active=None if row["company_id"] is None else bool(active),
    )


def touch_session(db: Database, session_id: str, *, now: int, min_interval_ms: int) -> None:
    """Record activity (the idle timeout counts from it), at most once per
    ``min_interval_ms``, so reads do not each cost a write."""
    with db.transaction() as conn:
        conn.execute(
            "UPDATE sessions SET last_seen_at = ? WHERE session_id = ? AND last_seen_at < ?",
            (now, session_id, now - min_interval_ms),
        )


def revoke_session(db: Database, session_id: str) -> bool:
    """End one session (logout); False when it was not in force."""
    now = now_ms()
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT user_id FROM sessions WHERE session_id = ? AND revoked_at IS NULL",
            (session_id,),
        ).fetchone()
        if row is None:
            return False
        conn.execute("UPDATE sessions SET revoked_at = ? WHERE session_id = ?", (now, session_id))
        changes.record_in(conn, changes.TOKEN, row["user_id"], now)
    return True


def session_in_force(db: Database, session_id: str, *, now: int, idle_ms: int) -> bool:
    """Whether the session still authenticates (long-lived requests re-check with this)."""
    record = find_session(db, session_id)
    return record is not None and session_problem(record, now=now, idle_ms=idle_ms) is None


def session_problem(record: SessionRecord, *, now: int, idle_ms: int) -> str | None:
    """Why the session no longer authenticates, or None."""
    if record.revoked_at is not None:
        return "the session has ended (logged out, or the account changed)"
    if record.user_disabled_at is not None:
        return "the session has ended (logged out, or the account changed)"
    if now >= record.expires_at:
        return "the session has expired: log in again"
    if now - record.last_seen_at >= idle_ms:
        return "the session has expired after inactivity: log in again"
    if record.company_id is not None and not record.company_active:
        return f"the user's company {record.company_id!r} is deactivated"
    return None
