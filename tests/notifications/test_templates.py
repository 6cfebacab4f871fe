"""Notification copy: every type renders on every channel, says what it must, fits its channel
and treats hostile values as plain data."""

from __future__ import annotations

import itertools
import re
from typing import Any

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from farmstand.notifications.models import ORDER_TYPES, NotificationChannel, NotificationType
from farmstand.notifications.templates import (
    OPTIONAL_KEYS,
    Rendered,
    Templates,
    fit_sms,
    sms_segments,
)

T = NotificationType
C = NotificationChannel
# Order notifications (account emails have their own test below).
ALL = list(itertools.product(ORDER_TYPES, NotificationChannel))
ALL_IDS = [f"{type_}-{channel}" for type_, channel in ALL]

ORDER_URL = "https://farmstand.example/orders/FS-7K3M9Q"
REVIEW_URL = "https://farmstand.example/orders/FS-7K3M9Q/review"
UNSUBSCRIBE_URL = "https://farmstand.example/notifications/unsubscribe/tok123"
DASHBOARD_URL = "https://farmstand.example/farm/dashboard"
REFUND_LINE = re.compile("3[\u2013-]5 business days")  # an en dash, or "-" in SMS


def realistic(type_: NotificationType = T.ORDER_CONFIRMED, **overrides: Any) -> dict[str, Any]:
    """A full context as the dispatcher builds it (the farm gets NEW_ORDER, customers the rest)."""
    context: dict[str, Any] = {
        "audience": "farm" if type_ is T.NEW_ORDER else "customer",
        "recipient_name": "Maya" if type_ is T.NEW_ORDER else "Dana",
        "order_number": "FS-7K3M9Q",
        "order_url": ORDER_URL,
        "farm_name": "Willow Creek Farm",
        "customer_name": "Dana Whitfield",
        "fulfillment_type": "PICKUP",
        "status": "READY",
        "total_amount": "12.50",
        "currency_symbol": "$",
        "items": [
            {"name": "Heirloom tomatoes", "quantity": 2, "unit": "lb", "line_total": "8.00"},
            {"name": "Rainbow carrots", "quantity": 1, "unit": "bunch", "line_total": "4.50"},
        ],
        "item_count": 2,
        "pickup_location": "Stall 14, Saturday Market, Main St",
        "pickup_instructions": "Look for the green awning and give your name at the table.",
        "tracking_number": "1Z999AA10123456784",
        "carrier": "UPS",
        "reason": "A late frost took the last of the tomatoes",
        "paid": True,
        "refund_amount": "12.50",
        "estimated_ready_at": "Tue 25 Nov, 4:30 PM PST",
        "estimated_pickup_at": "Tue 25 Nov, 5:00 PM PST",
        "previous_estimate": "Tue 25 Nov, 2:00 PM PST",
        "reminder_kind": "waiting",
        "review_url": REVIEW_URL,
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "dashboard_url": DASHBOARD_URL,
    }
    context.update(overrides)
    return context


def minimal(type_: NotificationType) -> dict[str, Any]:
    """Only the keys every notification has: the optional ones left out altogether."""
    context = realistic(type_, paid=False)
    for key in OPTIONAL_KEYS:
        del context[key]
    return context


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates()


def everything(rendered: Rendered) -> str:
    return "\n".join([rendered.title, rendered.text, rendered.html or ""])


def check_limits(channel: NotificationChannel, rendered: Rendered) -> None:
    assert "\n" not in rendered.title and "\r" not in rendered.title
    if channel is C.EMAIL:
        assert rendered.title and len(rendered.title) <= 150
        assert rendered.html is not None
    elif channel is C.SMS:
        assert rendered.title == "" and rendered.html is None
        assert 1 <= sms_segments(rendered.text) <= 2
    elif channel is C.PUSH:
        assert rendered.title and len(rendered.title) <= 80
        assert rendered.text and len(rendered.text) <= 240
        assert rendered.html is None
    else:
        assert rendered.title and len(rendered.title) <= 120
        assert rendered.text and len(rendered.text) <= 1000
        assert rendered.html is None


# --- every type on every channel -------------------------------------------------------------


@pytest.mark.parametrize(("type_", "channel"), ALL, ids=ALL_IDS)
def test_every_type_renders_on_every_channel(
    templates: Templates, type_: NotificationType, channel: NotificationChannel
) -> None:
    # Given a full, realistic context
    context = realistic(type_)

    # When the notification is rendered
    rendered = templates.render(type_, channel, context)

    # Then it names the order, fits its channel, and has no rendering leftovers
    assert "FS-7K3M9Q" in rendered.title + rendered.text
    check_limits(channel, rendered)
    for leftover in ("None", "{{", "{%", "  "):
        assert leftover not in rendered.title + rendered.text
    if channel is C.SMS:
        assert rendered.text.isascii()  # plain GSM-7: the copy itself never forces UCS-2


@pytest.mark.parametrize(("type_", "channel"), ALL, ids=ALL_IDS)
def test_optional_keys_may_be_left_out(
    templates: Templates, type_: NotificationType, channel: NotificationChannel
) -> None:
    rendered = templates.render(type_, channel, minimal(type_))

    assert "FS-7K3M9Q" in rendered.title + rendered.text
    assert "None" not in everything(rendered)
    check_limits(channel, rendered)


@pytest.mark.parametrize("fulfillment", ["PICKUP", "DELIVERY", "SHIPPING"])
@pytest.mark.parametrize(("type_", "channel"), ALL, ids=ALL_IDS)
def test_every_fulfillment_type_renders(
    templates: Templates, type_: NotificationType, channel: NotificationChannel, fulfillment: str
) -> None:
    rendered = templates.render(type_, channel, realistic(type_, fulfillment_type=fulfillment))

    check_limits(channel, rendered)


def test_a_missing_required_key_fails_loudly(templates: Templates) -> None:
    context = realistic()
    del context["order_number"]

    with pytest.raises(jinja2.UndefinedError, match="order_number"):
        templates.render(T.ORDER_CONFIRMED, C.EMAIL, context)


def test_render_accepts_enum_values_as_strings(templates: Templates) -> None:
    assert templates.render("ORDER_READY", "PUSH", realistic()) == templates.render(  # type: ignore[arg-type]
        T.ORDER_READY, C.PUSH, realistic()
    )


def test_render_leaves_the_callers_context_alone(templates: Templates) -> None:
    context = realistic(farm_name="Two\nLines")

    templates.render(T.ORDER_READY, C.EMAIL, context)

    assert context["farm_name"] == "Two\nLines"


# --- emails ---------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", ORDER_TYPES)
def test_every_email_links_to_the_order(templates: Templates, type_: NotificationType) -> None:
    rendered = templates.render(type_, C.EMAIL, realistic(type_))

    assert ORDER_URL in rendered.text
    assert rendered.html is not None
    assert f'href="{ORDER_URL}"' in rendered.html
    assert rendered.html.lstrip().startswith("<!doctype html>")
    assert rendered.title in rendered.html  # the subject is the HTML title


@pytest.mark.parametrize("type_", ORDER_TYPES)
def test_email_greets_and_offers_unsubscribe(templates: Templates, type_: NotificationType) -> None:
    name = realistic(type_)["recipient_name"]

    rendered = templates.render(type_, C.EMAIL, realistic(type_))

    assert rendered.text.startswith(f"Hi {name},")
    assert f"Unsubscribe from these emails: {UNSUBSCRIBE_URL}" in rendered.text
    assert f'href="{UNSUBSCRIBE_URL}"' in (rendered.html or "")


def test_farm_email_without_unsubscribe_link_points_to_settings(templates: Templates) -> None:
    rendered = templates.render(T.NEW_ORDER, C.EMAIL, realistic(T.NEW_ORDER, unsubscribe_url=None))

    assert "Unsubscribe" not in everything(rendered)
    assert "notification settings" in rendered.text
    assert "notification settings" in (rendered.html or "")


def test_order_emails_list_the_items_and_total(templates: Templates) -> None:
    for type_ in (T.ORDER_CONFIRMED, T.NEW_ORDER):
        rendered = templates.render(type_, C.EMAIL, realistic(type_))

        assert "2 x Heirloom tomatoes (lb): $8.00" in rendered.text
        assert "Total: $12.50" in rendered.text
        assert "Rainbow carrots" in (rendered.html or "")


# --- what each type must say ----------------------------------------------------------------


@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_ready_for_pickup_names_the_place_and_the_instructions(
    templates: Templates, channel: NotificationChannel
) -> None:
    context = realistic(T.ORDER_READY)

    rendered = templates.render(T.ORDER_READY, channel, context)

    text = everything(rendered)
    assert "ready for pickup" in text
    assert context["pickup_location"] in text
    assert context["pickup_instructions"] in text


@pytest.mark.parametrize("fulfillment", ["DELIVERY", "SHIPPING"])
@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_out_for_delivery_gives_the_tracking_number(
    templates: Templates, channel: NotificationChannel, fulfillment: str
) -> None:
    context = realistic(T.ORDER_OUT_FOR_DELIVERY, fulfillment_type=fulfillment)

    rendered = templates.render(T.ORDER_OUT_FOR_DELIVERY, channel, context)

    assert "1Z999AA10123456784" in rendered.text


def test_out_for_delivery_without_tracking_says_nothing_about_it(templates: Templates) -> None:
    context = realistic(T.ORDER_OUT_FOR_DELIVERY, tracking_number=None)

    for channel in NotificationChannel:
        rendered = templates.render(T.ORDER_OUT_FOR_DELIVERY, channel, context)
        assert "racking" not in rendered.text


@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_cancelled_and_paid_gives_the_reason_and_the_refund_time(
    templates: Templates, channel: NotificationChannel
) -> None:
    context = realistic(T.ORDER_CANCELLED, paid=True)

    rendered = templates.render(T.ORDER_CANCELLED, channel, context)

    assert "A late frost took the last of the tomatoes" in rendered.text
    assert REFUND_LINE.search(rendered.text)
    assert "$12.50" in rendered.text
    if rendered.html is not None:
        assert REFUND_LINE.search(rendered.html)


@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_cancelled_and_unpaid_promises_no_refund(
    templates: Templates, channel: NotificationChannel
) -> None:
    context = realistic(T.ORDER_CANCELLED, paid=False)

    rendered = templates.render(T.ORDER_CANCELLED, channel, context)

    assert "A late frost took the last of the tomatoes" in rendered.text
    assert not REFUND_LINE.search(everything(rendered))
    assert "refund" not in everything(rendered).lower()
    assert "haven't been charged" in rendered.text


@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_refunded_gives_the_amount(templates: Templates, channel: NotificationChannel) -> None:
    context = realistic(T.ORDER_REFUNDED, refund_amount="7.25")

    rendered = templates.render(T.ORDER_REFUNDED, channel, context)

    assert "$7.25" in rendered.text


@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_completed_thanks_and_invites_a_review(
    templates: Templates, channel: NotificationChannel
) -> None:
    rendered = templates.render(T.ORDER_COMPLETED, channel, realistic(T.ORDER_COMPLETED))

    text = everything(rendered)
    assert "thank" in text.lower()
    assert "review" in rendered.text.lower()
    if channel is not C.PUSH:  # a push opens the order page: it can only mention the review
        assert REVIEW_URL in rendered.text
    if channel is C.EMAIL:
        assert f'href="{REVIEW_URL}"' in (rendered.html or "")


def test_completed_without_review_link_still_thanks(templates: Templates) -> None:
    context = realistic(T.ORDER_COMPLETED, review_url=None)

    for channel in NotificationChannel:
        rendered = templates.render(T.ORDER_COMPLETED, channel, context)
        assert "review" not in everything(rendered).lower()
    assert templates.render(T.ORDER_COMPLETED, C.SMS, context).text.endswith(ORDER_URL)


@pytest.mark.parametrize("audience", ["customer", "farm"])
@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_delayed_with_a_previous_estimate_says_it_moved(
    templates: Templates, channel: NotificationChannel, audience: str
) -> None:
    context = realistic(T.ORDER_DELAYED, audience=audience)

    rendered = templates.render(T.ORDER_DELAYED, channel, context)

    assert "moved from Tue 25 Nov, 2:00 PM PST to Tue 25 Nov, 4:30 PM PST" in rendered.text
    assert "running late" not in everything(rendered)


@pytest.mark.parametrize("audience", ["customer", "farm"])
@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_delayed_past_its_estimate_is_running_late(
    templates: Templates, channel: NotificationChannel, audience: str
) -> None:
    # Given an order whose estimate passed before it was ready (no previous estimate: the
    # estimate in the context is the time it missed, not a new one)
    context = realistic(T.ORDER_DELAYED, audience=audience, previous_estimate=None)

    rendered = templates.render(T.ORDER_DELAYED, channel, context)

    assert "running late" in rendered.title + rendered.text
    assert "by Tue 25 Nov, 4:30 PM PST" in rendered.text
    assert "moved" not in everything(rendered)
    assert not re.search(r"\bnow\b", rendered.text)  # the missed time is not offered as new
    if audience == "farm":
        assert "new ready time" in rendered.text


@pytest.mark.parametrize("audience", ["customer", "farm"])
@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_delayed_without_any_time_is_running_late(
    templates: Templates, channel: NotificationChannel, audience: str
) -> None:
    context = realistic(
        T.ORDER_DELAYED,
        audience=audience,
        previous_estimate=None,
        estimated_ready_at=None,
        estimated_pickup_at=None,
    )

    rendered = templates.render(T.ORDER_DELAYED, channel, context)

    assert "running late" in rendered.title + rendered.text
    assert "PST" not in everything(rendered)


@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_reminder_for_a_waiting_order_says_where(
    templates: Templates, channel: NotificationChannel
) -> None:
    context = realistic(T.ORDER_REMINDER, reminder_kind="waiting")

    rendered = templates.render(T.ORDER_REMINDER, channel, context)

    assert "waiting" in rendered.title + rendered.text
    assert "Stall 14, Saturday Market, Main St" in rendered.text


@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_reminder_for_a_pickup_slot_says_when_and_where(
    templates: Templates, channel: NotificationChannel
) -> None:
    context = realistic(T.ORDER_REMINDER, reminder_kind="slot")

    rendered = templates.render(T.ORDER_REMINDER, channel, context)

    assert "Tue 25 Nov, 5:00 PM PST" in rendered.text
    assert "Stall 14, Saturday Market, Main St" in rendered.text
    assert "waiting" not in everything(rendered)


@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_new_order_tells_the_farm_who_what_and_how_much(
    templates: Templates, channel: NotificationChannel
) -> None:
    rendered = templates.render(T.NEW_ORDER, channel, realistic(T.NEW_ORDER))

    text = rendered.title + rendered.text
    assert "Dana Whitfield" in text
    assert "2 items" in text
    assert "$12.50" in text
    assert "pickup" in text


def test_new_order_email_links_the_dashboard(templates: Templates) -> None:
    rendered = templates.render(T.NEW_ORDER, C.EMAIL, realistic(T.NEW_ORDER))

    assert DASHBOARD_URL in rendered.text
    assert f'href="{DASHBOARD_URL}"' in (rendered.html or "")


# --- hostile input --------------------------------------------------------------------------

TRICKY = (
    "{{ 7*7 }} <script>alert(1)</script> \"double\" 'single' <img src=x onerror=alert(2)> "
    "{% if true %}yes{% endif %} 🍅🥕 \u202eevil\u202c\nBcc: victim@example.com\r\n"
    "X-Injected: 1"
)


def long_value(prefix: str, filler: str) -> str:
    return (prefix + " " + filler * 5000)[:5000]


def hostile(type_: NotificationType, variant: str) -> dict[str, Any]:
    """Customer- and farmer-typed values, each starting with a word a test can look for."""
    if variant == "tricky":
        values = {key: f"{word} {TRICKY}" for key, word in _WORDS.items()}
    elif variant == "huge":
        values = {
            key: long_value(f"{word} {TRICKY}", "Heritage 🍅 ") for key, word in _WORDS.items()
        }
    elif variant == "unicode":  # huge, and UCS-2 from the first character
        values = {key: long_value(f"Ферма {word}", "Берёзка 🥕 ") for key, word in _WORDS.items()}
    else:  # huge and plain GSM-7, with no spaces to cut at
        values = {key: long_value(word, "x") for key, word in _WORDS.items()}
    return realistic(
        type_,
        **values,
        items=[
            {"name": values["farm_name"], "quantity": 3, "unit": TRICKY, "line_total": "4.00"},
            {"name": TRICKY, "quantity": 1, "unit": "lb", "line_total": "8.50"},
        ],
    )


_WORDS = {
    "recipient_name": "Robin",
    "farm_name": "Fernhill",
    "customer_name": "Casey",
    "pickup_location": "Barn",
    "pickup_instructions": "Ring",
    "reason": "Hail",
    "carrier": "Courier",
}
VARIANTS = ["tricky", "huge", "unicode", "plain"]
HOSTILE = [(*pair, variant) for pair in ALL for variant in VARIANTS]
HOSTILE_IDS = [f"{type_}-{channel}-{variant}" for type_, channel, variant in HOSTILE]


@pytest.mark.parametrize(("type_", "channel", "variant"), HOSTILE, ids=HOSTILE_IDS)
def test_hostile_values_are_plain_data(
    templates: Templates, type_: NotificationType, channel: NotificationChannel, variant: str
) -> None:
    # Given names, reasons and places typed to break things
    context = hostile(type_, variant)

    # When any notification is rendered
    rendered = templates.render(type_, channel, context)

    # Then nothing is executed or injected, and the channel's limits hold
    check_limits(channel, rendered)
    text = everything(rendered)
    assert "49" not in text  # {{ 7*7 }} is text, not a template
    assert "\u202e" not in text
    for line in rendered.text.splitlines():
        assert not line.startswith(("Bcc:", "X-Injected:"))
    if rendered.html is not None:
        assert "<script" not in rendered.html.lower()
        assert "<img" not in rendered.html.lower()
        if variant in ("tricky", "huge"):  # the greeting shows the start of the name
            assert "&lt;script&gt;" in rendered.html
            assert "{{ 7*7 }}" in rendered.html
    if channel is C.EMAIL and variant in ("tricky", "huge"):
        assert "{{ 7*7 }}" in rendered.text
        assert ORDER_URL in rendered.text


def test_a_hostile_reason_is_shown_literally_and_escaped_in_html(templates: Templates) -> None:
    context = realistic(T.ORDER_CANCELLED, reason=TRICKY)

    rendered = templates.render(T.ORDER_CANCELLED, C.EMAIL, context)

    flat = TRICKY.replace("\u202e", "").replace("\u202c", "").replace("\r\n", " ")
    flat = flat.replace("\n", " ")
    assert f"Reason: {flat}" in rendered.text
    html = rendered.html or ""
    assert (
        "{{ 7*7 }} &lt;script&gt;alert(1)&lt;/script&gt; &#34;double&#34; &#39;single&#39; "
        "&lt;img src=x onerror=alert(2)&gt; {% if true %}yes{% endif %} 🍅🥕 evil "
        "Bcc: victim@example.com X-Injected: 1"
    ) in html


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("type_", ORDER_TYPES)
def test_sms_keeps_the_order_number_and_a_whole_link(
    templates: Templates, type_: NotificationType, variant: str
) -> None:
    rendered = templates.render(type_, C.SMS, hostile(type_, variant))

    assert sms_segments(rendered.text) <= 2
    assert "FS-7K3M9Q" in rendered.text
    link = REVIEW_URL if type_ is T.ORDER_COMPLETED else ORDER_URL
    assert rendered.text.endswith(f"\n{link}")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("channel", list(NotificationChannel))
def test_ready_keeps_the_place_when_names_are_huge(
    templates: Templates, channel: NotificationChannel, variant: str
) -> None:
    rendered = templates.render(T.ORDER_READY, channel, hostile(T.ORDER_READY, variant))

    assert "ready for pickup" in rendered.title + rendered.text
    assert "Barn" in rendered.text


def test_huge_plain_sms_stays_gsm_and_uses_three_dots(templates: Templates) -> None:
    rendered = templates.render(T.ORDER_READY, C.SMS, hostile(T.ORDER_READY, "plain"))

    assert rendered.text.isascii()
    assert "..." in rendered.text


def test_sms_turns_typographic_punctuation_into_gsm(templates: Templates) -> None:
    context = realistic(farm_name="Mary\u2019s \u201cGood\u201d Eggs \u2013 NY")

    rendered = templates.render(T.ORDER_CONFIRMED, C.SMS, context)

    assert rendered.text.startswith('Mary\'s "Good" Eggs - NY: ')
    assert rendered.text.isascii()  # GSM-7: up to 306 characters in two parts, not 134


def test_sms_drops_emoji_from_names_to_stay_gsm(templates: Templates) -> None:
    context = realistic(farm_name="🍅 Sunny Acres 👩‍🌾🏽", pickup_location="Stall 3 🥕")

    rendered = templates.render(T.ORDER_READY, C.SMS, context)

    assert rendered.text.startswith("Sunny Acres: Your order FS-7K3M9Q is ready for pickup at ")
    assert "at Stall 3. " in rendered.text
    assert rendered.text.isascii()


def test_sms_keeps_unicode_names_it_cannot_simplify(templates: Templates) -> None:
    context = realistic(farm_name="Ферма Берёзка")

    rendered = templates.render(T.ORDER_CONFIRMED, C.SMS, context)

    assert rendered.text.startswith("Ферма Берёзка: ")
    assert sms_segments(rendered.text) <= 2
    assert rendered.text.endswith(ORDER_URL)


# --- SMS segments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 0),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("é£¥ÄÖÑÜ§¿à" * 16, 1),  # accented letters in the GSM alphabet stay GSM-7
        ("€" * 80, 1),  # extension characters take two septets
        ("€" * 81, 2),
        ("a" * 159 + "[", 2),
        ("{}[]~^|\\" * 10, 1),
        ("{}[]~^|\\" * 10 + "a", 2),
        ("a" * 152 + "€" + "a" * 152, 3),  # an escape pair is never split across parts
        ("ж" * 70, 1),  # UCS-2
        ("ж" * 71, 2),
        ("ж" * 134, 2),
        ("ж" * 135, 3),
        ("a" * 69 + "…", 1),  # "…" is not GSM: the whole message becomes UCS-2
        ("a" * 70 + "…", 2),
        ("🍅" * 35, 1),  # an emoji is two UTF-16 units
        ("🍅" * 36, 2),
        ("a" * 68 + "🥕", 1),
        ("a" * 69 + "🥕", 2),
        ("a" * 66 + "🍅" + "a" * 66, 3),  # a surrogate pair is never split across parts
    ],
    ids=lambda value: repr(value)[:30] if isinstance(value, str) else str(value),
)
def test_sms_segments(text: str, segments: int) -> None:
    assert sms_segments(text) == segments


# --- fitting SMS ----------------------------------------------------------------------------


def test_fit_sms_leaves_a_short_text_alone() -> None:
    assert fit_sms("Your order is ready.") == "Your order is ready."


def test_fit_sms_shortens_gsm_text_with_three_dots_at_a_word() -> None:
    text = "Fresh eggs and honey " * 30

    fitted = fit_sms(text)

    assert sms_segments(fitted) == 2
    assert fitted.isascii()  # "..." keeps it GSM-7, where "…" would force UCS-2
    assert fitted.endswith("...")
    assert len(fitted) > 290
    assert text.startswith(fitted[:-3])
    assert fitted[:-3].rsplit(" ", 1)[-1] in {"Fresh", "eggs", "and", "honey"}


def test_fit_sms_shortens_ucs2_text_with_an_ellipsis() -> None:
    text = "Tomatoes 🍅 and carrots 🥕 " * 20

    fitted = fit_sms(text)

    assert sms_segments(fitted) == 2
    assert fitted.endswith("…")
    assert text.startswith(fitted[:-1])


def test_fit_sms_uses_gsm_when_the_only_unicode_is_cut_off() -> None:
    text = "a" * 400 + "🍅"

    fitted = fit_sms(text)

    assert fitted == "a" * 303 + "..."
    assert sms_segments(fitted) == 2


def test_fit_sms_to_one_segment() -> None:
    fitted = fit_sms("word " * 100, max_segments=1)

    assert sms_segments(fitted) == 1
    assert fitted.endswith("word...")


def test_fit_sms_needs_at_least_one_segment() -> None:
    with pytest.raises(ValueError):
        fit_sms("hello", max_segments=0)


@given(st.text(max_size=800), st.integers(min_value=1, max_value=4))
def test_fit_sms_always_fits(text: str, max_segments: int) -> None:
    fitted = fit_sms(text, max_segments)

    assert sms_segments(fitted) <= max_segments
    if sms_segments(text) <= max_segments:
        assert fitted == text


@pytest.mark.parametrize("type_", [T.ACCOUNT_VERIFY, T.ACCOUNT_EXISTS])
def test_account_emails_render_with_their_link_and_no_unsubscribe(
    templates: Templates, type_: NotificationType
) -> None:
    link = "https://farmstand.example/some/link"
    context = {
        "recipient_name": "Ann\nBcc: evil@example.com",
        "email": "ann@example.com",
        "url": link,
        "ttl_hours": "24",
    }

    rendered = templates.render(type_, NotificationChannel.EMAIL, context)

    assert rendered.title
    assert link in rendered.text
    assert rendered.html is not None and link in rendered.html
    assert "Hi Ann Bcc: evil@example.com," in rendered.text  # flattened to one line
    assert "nsubscribe" not in rendered.text
