"""SSE routes: /api/orders/events (one farm, customer or order) and /api/events (all mine)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Send
from starlette.types import Scope as AsgiScope

from farmstand.deps import CurrentUser, RuntimeDep, SessionDep
from farmstand.errors import Unprocessable
from farmstand.events import streams
from farmstand.events.service import Scope
from farmstand.schemas import ERROR_RESPONSES

log = logging.getLogger(__name__)

router = APIRouter(tags=["events"], responses=ERROR_RESPONSES)


class EventStreamResponse(EventSourceResponse):
    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except* SendTimeoutError:
            # The client stopped reading: drop it (it resumes with Last-Event-ID when it
            # comes back) instead of letting its unsent frames pile up.
            log.info("closed an event stream whose client stopped reading")


# For text/event-stream, an OpenAPI 3.1 `schema` describes one event (as OpenAPI 3.2's
# `itemSchema` does), not the stream as a string: tools such as schemathesis read it that way.
SSE_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The event id; resume with Last-Event-ID."},
        "event": {"type": "string", "description": "The event type, e.g. CONNECTED."},
        "data": {"type": "string", "description": "The event as a JSON object."},
        "retry": {"type": "integer", "description": "Reconnection delay in milliseconds."},
    },
}
SSE_RESPONSE = {
    200: {
        "description": "A Server-Sent Events stream: frames with `id:` (the event id), "
        "`event:` (the type) and `data:` (JSON), and heartbeat comments.",
        "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
    }
}

LastEventIdHeader = Annotated[
    str | None,
    Header(alias="Last-Event-ID", max_length=32, description="Resume after this event id."),
]
LastEventIdQuery = Annotated[
    str | None,
    Query(
        alias="lastEventId",
        max_length=32,
        description="Resume after this event id (for clients that can't set headers).",
    ),
]


def _respond(runtime: RuntimeDep, scope: Scope, last_event_id: int | None) -> EventSourceResponse:
    settings = runtime.settings
    return EventStreamResponse(
        streams.event_stream(runtime.db, runtime.hub, settings, scope, last_event_id),
        ping=settings.sse_heartbeat_seconds,
        send_timeout=settings.sse_send_timeout_seconds,
        sep="\n",
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/api/orders/events",
    summary="Live events of one farm, customer or order (give exactly one)",
    response_class=EventSourceResponse,
    responses=SSE_RESPONSE,
)
async def order_events(
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    farm_id: Annotated[str | None, Query(alias="farmId", max_length=64)] = None,
    customer_id: Annotated[str | None, Query(alias="customerId", max_length=64)] = None,
    order_id: Annotated[str | None, Query(alias="orderId", max_length=64)] = None,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventSourceResponse:
    given = [v for v in (farm_id, customer_id, order_id) if v is not None]
    if len(given) != 1:
        raise Unprocessable(
            "Give exactly one of farmId, customerId or orderId.",
            details=[{"field": "farmId|customerId|orderId", "message": "exactly one required"}],
        )
    if farm_id is not None:
        scope = await streams.scope_for_farm(session, user, farm_id)
    elif customer_id is not None:
        scope = await streams.scope_for_customer(session, user, customer_id)
    else:
        assert order_id is not None
        scope = await streams.scope_for_order(session, user, order_id)
    last = streams.parse_last_event_id(last_event_id_header, last_event_id_query)
    return _respond(runtime, scope, last)


@router.get(
    "/api/events",
    summary="Live events of everything you may see, and your notifications",
    response_class=EventSourceResponse,
    responses=SSE_RESPONSE,
)
async def my_events(
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventSourceResponse:
    scope = await streams.scope_for_user(session, user)
    last = streams.parse_last_event_id(last_event_id_header, last_event_id_query)
    return _respond(runtime, scope, last)
