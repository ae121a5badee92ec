"""The local Prefect server repeats a request Prefect answered "database busy", not the client;
it knows when it was last used and when to end by itself."""

from __future__ import annotations

import os
import sqlite3

import pytest
import sqlalchemy.exc
from fastapi import FastAPI, Request
from prefect.server.api.server import custom_internal_exception_handler
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.testclient import TestClient

from iamc.prefect_api_server import (
    BUSY_BODY,
    BUSY_STATUS,
    IDLE_MINUTES_ENV,
    Activity,
    RetryBusyDatabase,
    Watch,
    idle_seconds_from_env,
)

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


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _activity_app() -> tuple[Activity, _Clock]:
    clock = _Clock()
    api = FastAPI()

    @api.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse(True)

    @api.get("/slow")
    async def slow() -> JSONResponse:
        assert activity.idle_for() == 0.0  # a request in flight: not idle
        clock.now += 500
        assert activity.idle_for() == 0.0
        return JSONResponse("done")

    activity = Activity(Starlette(routes=[Mount("/api", app=api)]), clock=clock)
    return activity, clock


def test_a_request_counts_as_use_until_it_ends_and_a_health_probe_does_not():
    activity, clock = _activity_app()
    client = TestClient(activity)
    clock.now += 60
    assert client.get("/api/health").status_code == 200
    assert activity.idle_for() == 60  # iamc's probes don't keep the server up
    assert client.get("/api/slow").json() == "done"
    assert activity.idle_for() == 0  # idle from the end of the last request
    clock.now += 7
    assert activity.idle_for() == 7


def test_a_stopping_server_refuses_new_requests_but_still_answers_health():
    activity, _ = _activity_app()
    activity.closing = True
    client = TestClient(activity)
    assert client.get("/api/slow").status_code == 503
    assert client.get("/api/health").status_code == 200


def test_when_the_server_ends_by_itself(tmp_path, monkeypatch):
    activity, clock = _activity_app()
    home = tmp_path / "home"
    home.mkdir()
    assert Watch(home, idle_s=60, parent=os.getppid()).reason_to_stop(activity) is None
    clock.now += 61
    assert "no API request for 1.0 min" in Watch(home, 60).reason_to_stop(activity)
    assert Watch(home, idle_s=None).reason_to_stop(activity) is None  # 0: never
    # Re-parented: the process that started it ended.
    assert "ended" in Watch(home, None, parent=os.getppid() + 1).reason_to_stop(activity)
    home.rmdir()
    assert "is gone" in Watch(home, idle_s=None).reason_to_stop(activity)

    monkeypatch.delenv(IDLE_MINUTES_ENV, raising=False)
    assert idle_seconds_from_env() == 3600
    monkeypatch.setenv(IDLE_MINUTES_ENV, "0.5")
    assert idle_seconds_from_env() == 30
    monkeypatch.setenv(IDLE_MINUTES_ENV, "0")
    assert idle_seconds_from_env() is None
    monkeypatch.setenv(IDLE_MINUTES_ENV, "-1")
    with pytest.raises(ValueError, match="must be >= 0"):
        idle_seconds_from_env()
