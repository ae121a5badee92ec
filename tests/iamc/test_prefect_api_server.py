"""The local Prefect server repeats a request Prefect answered "database busy", not the client."""

from __future__ import annotations

import sqlite3

import sqlalchemy.exc
from fastapi import FastAPI, Request
from prefect.server.api.server import custom_internal_exception_handler
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.testclient import TestClient

from iamc.prefect_api_server import BUSY_BODY, BUSY_STATUS, RetryBusyDatabase

QUICK = (0.0, 0.0, 0.0)


def _busy_error() -> sqlalchemy.exc.OperationalError:
    orig = sqlite3.OperationalError("database is locked")
    orig.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
    return sqlalchemy.exc.OperationalError("INSERT INTO flow_run ...", {}, orig)


def _api(busy_times: int, calls: list[bytes]) -> FastAPI:
    """A FastAPI app with Prefect's own error handler, busy for its first ``busy_times`` calls."""
    api = FastAPI()
    api.add_exception_handler(Exception, custom_internal_exception_handler)

    @api.post("/flow_runs/")
    async def create(request: Request) -> JSONResponse:
        calls.append(await request.body())
        if len(calls) <= busy_times:
            raise _busy_error()
        return JSONResponse({"created": (await request.json())["name"]}, status_code=201)

    @api.get("/health")
    async def health() -> JSONResponse:
        calls.append(b"")
        return JSONResponse({"message": "Database is not available"}, status_code=503)

    return api


def test_prefects_busy_answer_is_the_one_retried():
    """If Prefect changes how it answers a busy database, this fails (and the retry is moot)."""
    import asyncio

    response = asyncio.run(custom_internal_exception_handler(None, _busy_error()))  # type: ignore[arg-type]
    assert response.status_code == BUSY_STATUS
    assert response.body == BUSY_BODY


def test_a_busy_answer_is_repeated_with_the_same_body_under_a_mount():
    calls: list[bytes] = []
    # As Prefect's create_app mounts its API under /api: routing rewrites the scope's path.
    app = Starlette(routes=[Mount("/api", app=_api(busy_times=2, calls=calls))])
    client = TestClient(RetryBusyDatabase(app, delays=QUICK), raise_server_exceptions=False)
    reply = client.post("/api/flow_runs/", json={"name": "inventory"})
    assert reply.status_code == 201, reply.text
    assert reply.json() == {"created": "inventory"}
    assert calls == [b'{"name":"inventory"}'] * 3


def test_a_database_busy_for_every_attempt_reaches_the_client_as_before():
    calls: list[bytes] = []
    client = TestClient(
        RetryBusyDatabase(_api(busy_times=99, calls=calls), delays=QUICK),
        raise_server_exceptions=False,
    )
    reply = client.post("/flow_runs/", json={"name": "x"})
    assert reply.status_code == BUSY_STATUS and reply.content == BUSY_BODY
    assert len(calls) == len(QUICK) + 1


def test_other_answers_go_out_at_once():
    calls: list[bytes] = []
    client = TestClient(RetryBusyDatabase(_api(busy_times=0, calls=calls), delays=QUICK))
    assert client.get("/health").status_code == 503  # another 503: not a busy database
    assert client.post("/flow_runs/", json={"name": "y"}).status_code == 201
    assert len(calls) == 2


def test_non_busy_errors_are_not_repeated():
    calls: list[bytes] = []
    api = _api(busy_times=0, calls=calls)

    @api.post("/boom")
    async def boom() -> None:
        calls.append(b"boom")
        raise ValueError("not a database error")

    client = TestClient(RetryBusyDatabase(api, delays=QUICK), raise_server_exceptions=False)
    assert client.post("/boom").status_code == 500
    assert calls == [b"boom"]
