"""InfluxDB over its v1-compatible HTTP API (``/write``, ``/query``, ``/ping``).

One code path for InfluxDB 1.x (native), 2.x and 3.x (compatibility endpoints): see
DESIGN.md. Queries take **bound parameters** (``$name`` in the query, values in ``params``),
so no user input is ever spliced into InfluxQL text.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec

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


_MSGPACK = "application/x-msgpack"
# InfluxDB 1.x matches the Accept header exactly (no lists, no q-values).
_ACCEPT_MSGPACK = {"Accept": _MSGPACK}
_msgpack_decoder = msgspec.msgpack.Decoder(dict[str, Any])


def _is_msgpack(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).startswith(_MSGPACK)


def _decode(response: httpx.Response) -> dict[str, Any]:
    try:
        if _is_msgpack(response):
            return _msgpack_decoder.decode(response.content)
        payload = msgspec.json.decode(response.content)
    except msgspec.DecodeError as exc:
        raise InfluxError("InfluxDB answered an undecodable query result") from exc
    if not isinstance(payload, dict):
        raise InfluxError("InfluxDB answered an unexpected query result")
    return payload


def _error_text(response: httpx.Response) -> str:
    """The error body as text (a MessagePack error answer is decoded to its message)."""
    if _is_msgpack(response):
        try:
            return str(_decode(response).get("error", ""))[:4096]
        except InfluxError:
            return ""
    return response.text[:4096]


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
        transport: httpx.AsyncBaseTransport | None = None,
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
            transport=transport,
        )
        # None: MessagePack query answers not confirmed yet; False: the server refused them.
        self._msgpack: bool | None = None

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
        # MessagePack when times are epochs (otherwise 1.x sends times as an extension type):
        # InfluxDB 1.x encodes it faster than JSON (no text for the nulls of wide rows) and
        # it decodes faster here; floats stay floats. The answer is decoded by its
        # Content-Type, so a server that ignores Accept (JSON back) is fine; one that refuses
        # it is asked again in JSON and not asked for MessagePack any more.
        packed = self._msgpack is not False and bool(epoch)
        try:
            response = await self._post_query(form, packed)
            refused = 400 <= response.status_code < 500 and response.status_code != 429
            if packed and refused and self._msgpack is None:
                retry = await self._post_query(form, False)
                if retry.status_code == 200:
                    self._msgpack = False
                    response = retry
        except httpx.HTTPError as exc:
            raise InfluxError(f"InfluxDB query failed: {exc.__class__.__name__}") from exc
        if response.status_code != 200:
            raise InfluxError(
                f"InfluxDB query answered {response.status_code}",
                status=response.status_code,
                body=_error_text(response),
            )
        payload = _decode(response)
        if packed and _is_msgpack(response):
            self._msgpack = True
        out: list[list[dict[str, Any]]] = []
        for result in payload.get("results", []):
            if "error" in result:
                raise InfluxError(f"InfluxQL error: {result['error']}", status=400)
            out.append(result.get("series", []))
        return out

    async def _post_query(self, form: dict[str, str], packed: bool) -> httpx.Response:
        headers = _ACCEPT_MSGPACK if packed else None
        return await self._http.post("/query", data=form, headers=headers)

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
