"""InfluxDB over its v1-compatible HTTP API (``/write``, ``/query``, ``/ping``).

One code path for InfluxDB 1.x (native), 2.x and 3.x (compatibility endpoints): see
DESIGN.md. Queries take **bound parameters** (``$name`` in the query, values in ``params``),
so no user input is ever spliced into InfluxQL text.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from liftwatch.settings import Settings


class InfluxError(Exception):
    """InfluxDB answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def retryable(self) -> bool:
        """Connection errors, timeouts and 5xx are worth retrying; 4xx are not."""
        return self.status is None or self.status >= 500 or self.status == 429


def quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier (database, measurement or field name we chose)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxClient:
    def __init__(
        self,
        url: str,
        database: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        max_connections: int = 8,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        headers = {"User-Agent": "liftwatch"}
        auth: httpx.BasicAuth | None = None
        if token:
            headers["Authorization"] = f"Token {token}"
        elif username:
            auth = httpx.BasicAuth(username, password or "")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            auth=auth,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections),
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> InfluxClient:
        return cls(
            settings.influx_url,
            settings.influx_database,
            token=settings.influx_token.get_secret_value() if settings.influx_token else None,
            username=settings.influx_username,
            password=(
                settings.influx_password.get_secret_value() if settings.influx_password else None
            ),
            **kwargs,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ping(self) -> bool:
        try:
            response = await self._http.get("/ping")
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    async def write(self, body: bytes | str, *, precision: str = "ms") -> None:
        """Write line protocol. Raises :class:`InfluxError` (``.status`` 400 for bad lines,
        with InfluxDB's message in ``.body``; ``None`` when unreachable)."""
        data = body.encode() if isinstance(body, str) else body
        try:
            response = await self._http.post(
                "/write", params={"db": self.database, "precision": precision}, content=data
            )
        except httpx.HTTPError as exc:
            raise InfluxError(f"InfluxDB write failed: {exc.__class__.__name__}") from exc
        if response.status_code != 204:
            raise InfluxError(
                f"InfluxDB write answered {response.status_code}",
                status=response.status_code,
                body=response.text[:4096],
            )

    async def query(
        self, q: str, params: dict[str, Any] | None = None, *, epoch: str = "ms"
    ) -> list[dict[str, Any]]:
        """Run InfluxQL with bound parameters; returns the list of series of the first
        statement (``[{"name", "columns", "values", "tags"?}]``)."""
        results = await self.query_all(q, params, epoch=epoch)
        return results[0] if results else []

    async def query_all(
        self, q: str, params: dict[str, Any] | None = None, *, epoch: str = "ms"
    ) -> list[list[dict[str, Any]]]:
        form: dict[str, str] = {"db": self.database, "q": q, "epoch": epoch}
        if params:
            form["params"] = json.dumps(params)
        try:
            response = await self._http.post("/query", data=form)
        except httpx.HTTPError as exc:
            raise InfluxError(f"InfluxDB query failed: {exc.__class__.__name__}") from exc
        if response.status_code != 200:
            raise InfluxError(
                f"InfluxDB query answered {response.status_code}",
                status=response.status_code,
                body=response.text[:4096],
            )
        payload = response.json()
        out: list[list[dict[str, Any]]] = []
        for result in payload.get("results", []):
            if "error" in result:
                raise InfluxError(f"InfluxQL error: {result['error']}", status=400)
            out.append(result.get("series", []))
        return out

    async def create_database(self) -> None:
        """``CREATE DATABASE`` is idempotent on 1.x; 2.x/3.x map databases to buckets that
        the operator creates (deploy/ docs), and answer an error we ignore here."""
        try:
            response = await self._http.post(
                "/query", data={"q": f"CREATE DATABASE {quote_ident(self.database)}"}
            )
        except httpx.HTTPError as exc:
            raise InfluxError(f"InfluxDB unreachable: {exc.__class__.__name__}") from exc
        if response.status_code >= 500:
            raise InfluxError(
                f"CREATE DATABASE answered {response.status_code}", status=response.status_code
            )
