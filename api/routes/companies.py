"""``/companies``: maintenance companies. Admin writes; a maintainer sees only its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from api.auth import AdminDep, PrincipalDep, WriterDep, ensure_admin, ensure_company_visible
from api.deps import DbDep
from api.errors import ApiError, conflict, not_found, responses, validation_detail
from liftwatch.registry import Company, describe_errors
from liftwatch.store import registry as reg

router = APIRouter(prefix="/companies", tags=["companies"], responses=responses(401, 403, 422))

CompanyPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class CompanyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    contact: Annotated[str, StringConstraints(max_length=200)] | None = None
    phone: Annotated[str, StringConstraints(max_length=50)] | None = None
    active: bool | None = None


@router.get("", response_model=list[Company], summary="List companies")
def list_companies(db: DbDep, principal: PrincipalDep) -> list[Company]:
    return [c for c in reg.list_companies(db) if principal.sees_company(c.company_id)]


@router.post(
    "",
    status_code=201,
    response_model=Company,
    summary="Create a company",
    responses=responses(400, 409, 413),
)
def create_company(body: Company, db: DbDep, _: AdminDep) -> Company:
    if reg.get_company(db, body.company_id) is not None:
        raise conflict(f"company {body.company_id!r} already exists; PATCH it instead")
    reg.upsert_company(db, body)
    return body


@router.get(
    "/{company_id}", response_model=Company, summary="One company", responses=responses(404)
)
def get_company(company_id: CompanyPath, db: DbDep, principal: PrincipalDep) -> Company:
    ensure_company_visible(principal, company_id)
    company = reg.get_company(db, company_id)
    if company is None:
        raise not_found("company", company_id)
    return company


@router.patch(
    "/{company_id}",
    response_model=Company,
    summary="Change a company",
    responses=responses(400, 404, 413),
)
def patch_company(
    company_id: CompanyPath, body: CompanyPatch, db: DbDep, principal: WriterDep
) -> Company:
    company = get_company(company_id, db, principal)
    ensure_admin(principal)
    try:  # an explicit null for a required field ("name", "active") is refused, named
        changed = Company.model_validate(company.model_dump() | body.model_dump(exclude_unset=True))
    except ValidationError as exc:
        raise ApiError(
            422, "validation_error", describe_errors(exc), validation_detail(exc.errors())
        ) from exc
    reg.upsert_company(db, changed)
    return changed


@router.delete(
    "/{company_id}",
    response_model=Company,
    summary="Deactivate a company (records are kept, never deleted)",
    responses=responses(404),
)
def deactivate_company(company_id: CompanyPath, db: DbDep, principal: WriterDep) -> Company:
    return patch_company(company_id, CompanyPatch(active=False), db, principal)
