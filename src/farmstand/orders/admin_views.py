"""Admin console pages about orders: the overview (counts now, today's activity, the success
metrics over a period) and the bulk status change with its preview. Admins only: anyone else
gets the not-found page (``web.admin``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Annotated

from fastapi import Query, Request, Response
from starlette.datastructures import FormData

from farmstand.accounts.principal import Principal
from farmstand.db import utcnow
from farmstand.deps import RuntimeDep, SessionDep
from farmstand.errors import FarmstandError, Unprocessable
from farmstand.events import service as events
from farmstand.notifications import admin as notifications
from farmstand.notifications.models import NotificationChannel, NotificationStatus
from farmstand.orders import metrics, service, states, timeline
from farmstand.orders.errors import ConcurrentUpdate
from farmstand.orders.records import OrderRecord
from farmstand.orders.states import OrderStatus
from farmstand.orders.views import badge
from farmstand.web.admin import AdminOnly, AdminPageUser
from farmstand.web.pages import CsrfChecked, ShowPage, page_router, render

router = page_router()

MAX_BULK = 200
ID_MAX = 64
REASON_MAX = 1000
# The decision of a preview without a reason yet: the confirm form asks for it.
PREVIEW_REASON = "(reason given on confirming)"


# -- how figures read ---------------------------------------------------------------------------


def readable_duration(value: timedelta | None) -> str:
    """``1 h 20 min``, ``3 d 4 h``, ``12 min``, ``40 s``; ``—`` for no data."""
    if value is None:
        return "—"
    seconds = round(value.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def percent(rate: metrics.Rate) -> str:
    """``66.7%``; ``—`` when there is nothing to count (never a division by zero)."""
    return "—" if rate.value is None else f"{rate.value * 100:.1f}%"


FIGURES = {"duration": readable_duration, "percent": percent}


# -- the overview -------------------------------------------------------------------------------


@router.get("/admin")
async def overview(
    request: Request,
    user: AdminPageUser,
    session: SessionDep,
    first: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=20)] = None,
) -> Response:
    """Counts now, today's activity and the success metrics of a period (default: the last
    seven days)."""
    now = utcnow()
    today = datetime.combine(now.date(), time(), tzinfo=UTC)
    errors: dict[str, str] = {}
    values = {"from": first or "", "to": last or ""}
    success: metrics.SuccessMetrics | None = None
    try:
        period = metrics.period_of(first, last, now.date())
    except Unprocessable as exc:
        errors = {str(d["field"]): str(d["message"]) for d in exc.details or []}
    else:
        values = {"from": period.first.isoformat(), "to": period.last.isoformat()}
        success = await metrics.success_metrics(session, period)
    by_channel = await notifications.counts_by_channel(session, since=today)
    health = await notifications.channel_health(session)
    context = {
        "title": "Admin",
        "section": "overview",
        "status_counts": await metrics.orders_by_status(session),
        "events_today": await events.count_since(session, today),
        "today_by_channel": by_channel,
        "channels": [str(channel) for channel in NotificationChannel],
        "health": health,
        "now": now,
        "metrics": success,
        "target": metrics.DELIVERY_TARGET,
        "max_days": metrics.MAX_PERIOD_DAYS,
        "values": values,
        "errors": errors,
        "sent": str(NotificationStatus.SENT),
        "failed": str(NotificationStatus.FAILED),
        **FIGURES,
    }
    return render(request, "admin_overview.html", context, status_code=422 if errors else 200)


# -- bulk status change -----------------------------------------------------------------------


@dataclass(frozen=True)
class BulkForm:
    order_ids: list[str]
    target: OrderStatus
    reason: str | None
    versions: dict[str, int]


def _bulk_form(form: FormData, *, confirming: bool) -> tuple[BulkForm | None, dict[str, str]]:
    """The selection, target and reason a bulk form carries, or the errors by field."""
    errors: dict[str, str] = {}
    ids = list(dict.fromkeys(v.strip() for v in form.getlist("order_id") if isinstance(v, str)))
    ids = [order_id for order_id in ids if order_id]
    if not ids:
        errors["order_id"] = "Select at least one order to change."
    elif len(ids) > MAX_BULK:
        errors["order_id"] = f"Select at most {MAX_BULK} orders at once ({len(ids)} were selected)."
    elif any(len(order_id) > ID_MAX for order_id in ids):
        errors["order_id"] = "The selection is not valid; select the orders again."
    raw_status = form.get("status")
    target = OrderStatus.__members__.get(raw_status) if isinstance(raw_status, str) else None
    if target is None:
        errors["status"] = "Choose the status to move the orders to."
    raw_reason = form.get("reason")
    reason = raw_reason.strip() if isinstance(raw_reason, str) and raw_reason.strip() else None
    if reason is not None and len(reason) > REASON_MAX:
        errors["reason"] = f"Keep the reason under {REASON_MAX} characters."
    versions: dict[str, int] = {}
    if confirming and "order_id" not in errors:
        for order_id in ids:
            raw = form.get(f"version-{order_id}")
            if not isinstance(raw, str) or not raw.isdigit():
                errors["order_id"] = "This confirmation is incomplete: preview the change again."
                break
            versions[order_id] = int(raw)
    if confirming and target is not None and reason is None and reason_required(target):
        errors["reason"] = "Give a reason: the customers will see it."
    if errors or target is None:
        return None, errors
    return BulkForm(ids, target, reason, versions), {}


def reason_required(target: OrderStatus) -> bool:
    """Whether the state machine wants a reason from an admin moving an order to ``target``."""
    return any(
        rule.target is target and states.STAFF_REASON in rule.guards for rule in states.TRANSITIONS
    )


@dataclass(frozen=True)
class BulkRow:
    """One selected order on the preview or result page."""

    order_id: str
    number: str
    farm: str
    badge: dict[str, str] | None
    version: int | None
    changes: bool
    message: str


def _bulk_row(outcome: service.BulkOutcome, message: str) -> BulkRow:
    order = outcome.order
    return BulkRow(
        order_id=outcome.order_id,
        number=order.order_number if order else "Unknown order",
        farm=order.farm_name if order else "",
        badge=badge(order) if order else None,
        version=order.version if order else None,
        changes=outcome.error is None,
        message=message,
    )


def _label(target: OrderStatus, order: OrderRecord | None) -> str:
    """The status as the order's pages name it ("Ready for pickup", "Out for delivery")."""
    if order is None:
        return timeline.STATUS_LABELS[target]
    return timeline.status_label(target, order.fulfillment_type)


def _preview_rows(outcomes: list[service.BulkOutcome], target: OrderStatus) -> list[BulkRow]:
    return [
        _bulk_row(
            outcome,
            f"Would move to {_label(target, outcome.order)}"
            if outcome.error is None
            else f"Refused: {outcome.error.message}",
        )
        for outcome in outcomes
    ]


def _result_rows(outcomes: list[service.BulkOutcome], target: OrderStatus) -> list[BulkRow]:
    rows = []
    for outcome in outcomes:
        if outcome.error is None:
            message = f"Changed to {_label(target, outcome.order)}"
        elif isinstance(outcome.error, ConcurrentUpdate):
            message = (
                "Not changed: it changed meanwhile, after the preview. Check it and preview again."
            )
        else:
            message = f"Refused: {outcome.error.message}"
        rows.append(_bulk_row(outcome, message))
    return rows


def _bulk_page(
    request: Request,
    *,
    mode: str,
    rows: list[BulkRow],
    target: OrderStatus | None,
    reason: str | None,
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "admin_bulk.html",
        {
            "title": "Change orders" if mode == "preview" else "Orders changed",
            "section": "orders",
            "mode": mode,
            "rows": rows,
            "target": target,
            "changing": sum(1 for row in rows if row.changes),
            "refused": sum(1 for row in rows if not row.changes),
            "reason": reason or "",
            "reason_required": target is not None and reason_required(target),
            "errors": errors,
            "max_bulk": MAX_BULK,
        },
        status_code=status_code,
    )


async def _preview(
    request: Request,
    session: SessionDep,
    user: Principal,
    runtime: RuntimeDep,
    data: BulkForm,
    errors: dict[str, str],
    status_code: int,
) -> Response:
    outcomes = await service.preview_bulk_change(
        session,
        user,
        data.order_ids,
        data.target,
        policy=runtime.order_policy,
        reason=data.reason or PREVIEW_REASON,
    )
    return _bulk_page(
        request,
        mode="preview",
        rows=_preview_rows(outcomes, data.target),
        target=data.target,
        reason=data.reason,
        errors=errors,
        status_code=status_code,
    )


def _selection_refused(request: Request, errors: dict[str, str]) -> Response:
    """The preview page with nothing to show but why the selection was refused (422)."""
    return _bulk_page(
        request, mode="preview", rows=[], target=None, reason=None, errors=errors, status_code=422
    )


@router.post("/admin/orders/bulk/preview", dependencies=[AdminOnly, CsrfChecked])
async def bulk_preview(
    request: Request, user: AdminPageUser, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Which of the selected orders would change and why the others would be refused; writes
    nothing. The confirm form carries each order's version, so what changes meanwhile is
    refused rather than changed blind."""
    data, errors = _bulk_form(await request.form(), confirming=False)
    if data is None:
        return _selection_refused(request, errors)
    return await _preview(request, session, user, runtime, data, {}, 200)


@router.post("/admin/orders/bulk", dependencies=[AdminOnly, CsrfChecked])
async def bulk_apply(
    request: Request, user: AdminPageUser, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Apply the previewed change, order by order, and show each order's result. (Answered
    with the result page rather than a redirect: posting it again changes nothing, as every
    order's version has moved.)"""
    form = await request.form()
    data, errors = _bulk_form(form, confirming=True)
    if data is None:
        preview_data, _ = _bulk_form(form, confirming=False)
        if preview_data is not None:  # only the reason or the versions are missing
            raise ShowPage(
                await _preview(request, session, user, runtime, preview_data, errors, 422)
            )
        return _selection_refused(request, errors)
    try:
        outcomes = await service.bulk_change(
            session,
            user,
            data.order_ids,
            data.target,
            policy=runtime.order_policy,
            reason=data.reason,
            expected_versions=data.versions,
        )
    except FarmstandError as exc:  # pragma: no cover - each order's refusal stays its own
        raise ShowPage(
            _bulk_page(
                request,
                mode="preview",
                rows=[],
                target=data.target,
                reason=data.reason,
                errors={"": exc.message},
                status_code=exc.status_code,
            )
        ) from exc
    return _bulk_page(
        request,
        mode="result",
        rows=_result_rows(outcomes, data.target),
        target=data.target,
        reason=data.reason,
        errors={},
    )
