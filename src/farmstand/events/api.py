"""SSE routes: /api/orders/events (one farm, customer or order) and /api/events (all mine)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from farmstand.accounts.principal import Principal
from farmstand.deps import CurrentUser, RuntimeDep, SessionDep, account_changes_seen
from farmstand.errors import Unprocessable
from farmstand.events import streams
from farmstand.events.service import Scope, View, ViewKind
from farmstand.events.sse import EventStreamResponse
from farmstand.schemas import ERROR_RESPONSES

router = APIRouter(tags=["events"], responses=ERROR_RESPONSES)


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
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A Server-Sent Events stream: frames with `id:` (the event id), "
        "`event:` (the type) and `data:` (JSON), and heartbeat comments.",
        "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
    }
}

# Checked by ``streams.parse_last_event_id`` (a 400 with a message for anything but an id).
LastEventIdHeader = Annotated[
    str | None,
    Header(alias="Last-Event-ID", description="Resume after this event id."),
]
LastEventIdQuery = Annotated[
    str | None,
    Query(
        alias="lastEventId",
        description="Resume after this event id (for clients that can't set headers).",
    ),
]
_MINE = View(ViewKind.MINE)


def _respond(
    request: Request,
    runtime: RuntimeDep,
    user: Principal,
    view: View,
    scope: Scope,
    last_event_id: int | None,
) -> EventStreamResponse:
    """The stream, following the session that opened it (see ``Hub.subscribe``)."""
    settings = runtime.settings
    owner = streams.owner_of(user, view, account_changes_seen(request))
    return EventStreamResponse(
        streams.EventStream(runtime.db, runtime.hub, settings, scope, last_event_id, owner),
        send_timeout=settings.sse_send_timeout_seconds,
    )


@router.get(
    "/api/orders/events",
    summary="Live events of one farm, customer or order (give exactly one)",
    response_class=EventStreamResponse,
    responses=SSE_RESPONSE,
)
async def order_events(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    farm_id: Annotated[str | None, Query(alias="farmId", max_length=64)] = None,
    customer_id: Annotated[str | None, Query(alias="customerId", max_length=64)] = None,
    order_id: Annotated[str | None, Query(alias="orderId", max_length=64)] = None,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventStreamResponse:
    given = [v for v in (farm_id, customer_id, order_id) if v is not None]
    if len(given) != 1:
        raise Unprocessable(
            "Give exactly one of farmId, customerId or orderId.",
            details=[{"field": "farmId|customerId|orderId", "message": "exactly one required"}],
        )
    last = streams.parse_last_event_id(last_event_id_header, last_event_id_query)
    if farm_id is not None:
        view = View(ViewKind.FARM, farm_id)
    elif customer_id is not None:
        view = View(ViewKind.CUSTOMER, customer_id)
    else:
        view = View(ViewKind.ORDER, order_id)
    scope = await streams.scope_of(session, user, view)
    return _respond(request, runtime, user, view, scope, last)


@router.get(
    "/api/events",
    summary="Live events of everything you may see, and your notifications",
    response_class=EventStreamResponse,
    responses=SSE_RESPONSE,
)
async def my_events(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventStreamResponse:
    last = streams.parse_last_event_id(last_event_id_header, last_event_id_query)
    scope = await streams.scope_of(session, user, _MINE)
    return _respond(request, runtime, user, _MINE, scope, last)
