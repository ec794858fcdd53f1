"""``/tokens``: create (the secret is shown once), list without secrets, revoke. Admin only,
except ``GET /tokens/me``, which tells any caller who it is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.auth import AdminDep, Principal, PrincipalDep, Role, new_token
from api.deps import DbDep
from api.errors import invalid, not_found, responses
from liftwatch.protocol import format_ts
from liftwatch.registry import CompanyId
from liftwatch.store import IntegrityError
from liftwatch.store import registry as reg
from liftwatch.store import tokens as tok
from liftwatch.store.tokens import TokenRecord

router = APIRouter(prefix="/tokens", tags=["tokens"], responses=responses(401, 403, 422))

TokenId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        default=None, description="who holds it, shown in audit fields; default: the role"
    )
    role: Role
    company_id: CompanyId | None = Field(
        default=None, description="required for role maintainer, forbidden otherwise"
    )


class TokenInfo(BaseModel):
    token_id: str
    name: str
    role: Role
    company_id: str | None
    created_at: str | None
    created_by: str | None
    last_used_at: str | None = None


class TokenCreated(TokenInfo):
    token: str = Field(description="the secret: shown only in this answer, store it now")


def _info(record: TokenRecord) -> TokenInfo:
    return TokenInfo(
        token_id=record.token_id,
        name=record.name,
        role=record.role,  # type: ignore[arg-type]
        company_id=record.company_id,
        created_at=format_ts(record.created_at),
        created_by=record.created_by,
        last_used_at=format_ts(record.last_used_at) if record.last_used_at else None,
    )


@router.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    summary="Create a token",
    responses=responses(400, 413),
)
def create_token(body: TokenCreate, db: DbDep, principal: AdminDep) -> TokenCreated:
    if body.role == "maintainer":
        if body.company_id is None:
            raise invalid("company_id", "required for role maintainer")
        if reg.get_company(db, body.company_id) is None:
            raise invalid("company_id", f"unknown company {body.company_id!r}")
    elif body.company_id is not None:
        raise invalid("company_id", f"only maintainer tokens belong to a company, not {body.role}")
    name = body.name or (f"{body.role} {body.company_id}" if body.company_id else body.role)
    token_id, secret, digest = new_token()
    try:
        record = tok.add_token(
            db,
            token_id=token_id,
            token_hash=digest,
            name=name,
            role=body.role,
            company_id=body.company_id,
            created_by=principal.actor,
        )
    except IntegrityError as exc:  # the company vanished between check and insert
        raise invalid("company_id", f"unknown company {body.company_id!r}") from exc
    return TokenCreated(**_info(record).model_dump(), token=secret)


@router.get("", response_model=list[TokenInfo], summary="List tokens (never their secrets)")
def list_tokens(db: DbDep, _: AdminDep, include_revoked: bool = False) -> list[TokenInfo]:
    return [_info(r) for r in tok.list_tokens(db, include_revoked=include_revoked)]


@router.get("/me", response_model=TokenInfo, summary="The calling token")
def whoami(db: DbDep, principal: PrincipalDep) -> TokenInfo:
    record = tok.get_token(db, principal.token_id)
    if record is not None:
        return _info(record)
    return _bootstrap_info(principal)


def _bootstrap_info(principal: Principal) -> TokenInfo:
    return TokenInfo(
        token_id=principal.token_id,
        name=principal.name,
        role=principal.role,
        company_id=None,
        created_at=None,
        created_by="LIFTWATCH_ADMIN_TOKEN",
    )


@router.delete(
    "/{token_id}",
    status_code=204,
    response_class=Response,
    summary="Revoke a token at once",
    responses=responses(404),
)
def revoke_token(token_id: TokenId, db: DbDep, _: AdminDep) -> Response:
    if not tok.revoke_token(db, token_id):
        raise not_found("token", token_id)
    return Response(status_code=204)
