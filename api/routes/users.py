"""``/users``: people's accounts (docs/console.md § Accounts and sessions). Admin only: a
maintainer or inspector gets 403. Passwords are never answered; disabling a user, changing
its role, company or password ends its sessions at once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.auth import AdminDep, Role
from api.deps import DbDep
from api.errors import conflict, invalid, not_found, responses
from liftwatch.protocol import format_ts
from liftwatch.registry import CompanyId
from liftwatch.store import IntegrityError, users
from liftwatch.store import registry as reg
from liftwatch.store.users import UserExists, UserNotFound, UserRecord

router = APIRouter(prefix="/users", tags=["users"], responses=responses(401, 403, 422))

Username = Annotated[str, StringConstraints(pattern=users.USERNAME_RE.pattern)]
UsernamePath = Annotated[str, Path(pattern=users.USERNAME_RE.pattern)]
Password = Annotated[
    str,
    StringConstraints(min_length=users.MIN_PASSWORD_LENGTH, max_length=users.MAX_PASSWORD_LENGTH),
]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username = Field(description="unique ignoring case")
    password: Password
    role: Role
    company_id: CompanyId | None = Field(
        default=None, description="required for role maintainer, forbidden otherwise"
    )


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    company_id: CompanyId | None = Field(
        default=None, description="given (null included): the new company"
    )
    disabled: bool | None = Field(default=None, description="true ends every session at once")
    password: Password | None = None


class UserInfo(BaseModel):
    username: str
    role: Role
    company_id: str | None
    created_at: str
    created_by: str
    password_changed_at: str
    disabled_at: str | None


def _info(record: UserRecord) -> UserInfo:
    return UserInfo(
        username=record.username,
        role=record.role,  # type: ignore[arg-type]
        company_id=record.company_id,
        created_at=format_ts(record.created_at),
        created_by=record.created_by,
        password_changed_at=format_ts(record.password_changed_at),
        disabled_at=format_ts(record.disabled_at) if record.disabled_at else None,
    )


def _known_company(db: DbDep, company_id: str | None) -> None:
    if company_id is not None and reg.get_company(db, company_id) is None:
        raise invalid("company_id", f"unknown company {company_id!r}")


@router.get("", response_model=list[UserInfo], summary="List users (never their passwords)")
def list_users(db: DbDep, _: AdminDep) -> list[UserInfo]:
    return [_info(u) for u in users.list_users(db)]


@router.post(
    "",
    status_code=201,
    response_model=UserInfo,
    summary="Create a user",
    responses=responses(400, 409, 413),
)
def create_user(body: UserCreate, db: DbDep, principal: AdminDep) -> UserInfo:
    problem = users.role_problem(body.role, body.company_id)
    if problem:
        raise invalid("company_id", problem)
    _known_company(db, body.company_id)
    try:
        record = users.add_user(
            db,
            username=body.username,
            password=body.password,
            role=body.role,
            company_id=body.company_id,
            created_by=principal.actor,
        )
    except UserExists as exc:
        raise conflict(str(exc)) from None
    except IntegrityError as exc:  # the company vanished between check and insert
        raise invalid("company_id", f"unknown company {body.company_id!r}") from exc
    return _info(record)


@router.get("/{username}", response_model=UserInfo, summary="One user", responses=responses(404))
def get_user(username: UsernamePath, db: DbDep, _: AdminDep) -> UserInfo:
    record = users.get_user(db, username)
    if record is None:
        raise not_found("user", username)
    return _info(record)


@router.patch(
    "/{username}",
    response_model=UserInfo,
    summary="Change a user's role, company, password, or disable it",
    responses=responses(400, 404, 413),
)
def patch_user(username: UsernamePath, body: UserPatch, db: DbDep, _: AdminDep) -> UserInfo:
    set_company = "company_id" in body.model_fields_set
    if set_company:
        _known_company(db, body.company_id)
    try:
        record = users.update_user(
            db,
            username,
            role=body.role,
            company_id=body.company_id,
            set_company=set_company,
            disabled=body.disabled,
        )
        if body.password is not None:
            record = users.set_password(db, username, body.password)
    except UserNotFound:
        raise not_found("user", username) from None
    except ValueError as exc:
        raise invalid("company_id", str(exc)) from None
    except IntegrityError as exc:
        raise invalid("company_id", f"unknown company {body.company_id!r}") from exc
    return _info(record)
