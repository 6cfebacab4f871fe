"""Notification copy: one Jinja2 file per (type, channel), and the rules that keep it safe.

The files live in ``templates/<TYPE>/``: ``email.txt`` (blocks ``subject`` and ``body``, on the
``_base_email.txt`` layout) with its ``email.html`` twin (block ``content`` on
``_base_email.html``), ``sms.txt``, and ``push.txt`` / ``in_app.txt`` (blocks ``title`` and
``body``). Values come from customers and farmers, so before rendering every string in the
context is flattened to one line (no header or line injection), HTML is escaped in ``.html``
files only, values are only ever data (never compiled as templates), and every channel's
length limit is enforced here after rendering: templates shorten long names with ``clip`` so
the important facts survive, and the limits below are the backstop.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context

from farmstand.notifications.models import NotificationChannel, NotificationType

TEMPLATE_DIR = Path(__file__).with_name("templates")

SUBJECT_MAX = 150
PUSH_TITLE_MAX = 80
PUSH_BODY_MAX = 240
IN_APP_TITLE_MAX = 120
IN_APP_BODY_MAX = 1000
SMS_MAX_SEGMENTS = 2

# Keys a template may test for; a caller may leave them out and they read as None.
OPTIONAL_KEYS = (
    "pickup_location",
    "pickup_instructions",
    "tracking_number",
    "carrier",
    "reason",
    "refund_amount",
    "estimated_ready_at",
    "estimated_pickup_at",
    "previous_estimate",
    "reminder_kind",
    "review_url",
    "unsubscribe_url",
    "dashboard_url",
)

_FILES = {
    NotificationChannel.EMAIL: "email.txt",
    NotificationChannel.SMS: "sms.txt",
    NotificationChannel.PUSH: "push.txt",
    NotificationChannel.IN_APP: "in_app.txt",
}


@dataclass(frozen=True)
class Rendered:
    title: str  # email subject / push title / in-app title / (SMS: empty string)
    text: str  # plain-text body: SMS text, push body, in-app message, email text part
    html: str | None  # email only: the HTML part


class Templates:
    """Renders a notification for one type and channel from its context."""

    def __init__(self) -> None:
        env = Environment(
            loader=FileSystemLoader(TEMPLATE_DIR),
            autoescape=select_autoescape(
                enabled_extensions=("html",),
                disabled_extensions=(),
                default_for_string=False,
                default=False,
            ),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        env.filters["clip"] = clip
        env.filters["money"] = _money
        env.filters["plural"] = _plural
        env.filters["sentence"] = _sentence
        self._env = env

    def render(
        self, type: NotificationType, channel: NotificationChannel, context: Mapping[str, Any]
    ) -> Rendered:
        type, channel = NotificationType(type), NotificationChannel(channel)
        ctx = _prepare(context)
        template = self._env.get_template(f"{type.value}/{_FILES[channel]}")
        if channel is NotificationChannel.EMAIL:
            subject = clip(_one_line(_block(template, "subject", ctx)), SUBJECT_MAX)
            text = _paragraphs(template.render(ctx))
            html = self._env.get_template(f"{type.value}/email.html").render(
                {**ctx, "subject": subject}
            )
            return Rendered(title=subject, text=text, html=html)
        if channel is NotificationChannel.SMS:
            return Rendered(title="", text=_sms(template.render(ctx)), html=None)
        if channel is NotificationChannel.PUSH:
            title = clip(_one_line(_block(template, "title", ctx)), PUSH_TITLE_MAX)
            body = clip(_one_line(_block(template, "body", ctx)), PUSH_BODY_MAX)
            return Rendered(title=title, text=body, html=None)
        title = clip(_one_line(_block(template, "title", ctx)), IN_APP_TITLE_MAX)
        body = clip(_paragraphs(_block(template, "body", ctx)), IN_APP_BODY_MAX)
        return Rendered(title=title, text=body, html=None)


def _block(template: Template, name: str, ctx: dict[str, Any]) -> str:
    try:
        render_block = template.blocks[name]
    except KeyError:
        raise LookupError(f"template {template.name} has no block {name!r}") from None
    return "".join(render_block(template.new_context(ctx)))


# --- the context: values are data, flattened to one line --------------------------------------

# Control characters (newlines included) and Unicode line/paragraph separators become spaces;
# bidirectional overrides and isolates (used to make text read differently than it is) go.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(_BIDI.sub("", _CONTROL.sub(" ", value)).split())
    if isinstance(value, Mapping):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def _prepare(context: Mapping[str, Any]) -> dict[str, Any]:
    ctx = {key: None for key in OPTIONAL_KEYS}
    ctx.update({key: _clean(value) for key, value in context.items()})
    return ctx


# --- filters --------------------------------------------------------------------------------


def clip(value: Any, length: int, end: str = "…") -> str:
    """``value`` as text of at most ``length`` characters, cut at a word where one is near."""
    text = "" if value is None else str(value)
    if len(text) <= length:
        return text
    cut = text[: max(length - len(end), 0)]
    space = cut.rfind(" ")
    if space > 0 and space >= len(cut) - 15:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + end


@pass_context
def _money(context: Context, amount: Any) -> str:
    if amount is None or amount == "":
        return ""
    if isinstance(amount, Decimal | float | int):
        amount = f"{Decimal(str(amount)):.2f}"
    return f"{context.get('currency_symbol') or ''}{amount}"


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"


def _sentence(value: Any) -> str:
    """``value`` ending like a sentence, so more copy can follow it."""
    text = "" if value is None else str(value).rstrip()
    return text if not text or text[-1] in ".!?…" else text + "."


# --- whitespace and length ------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("….", "…")


def _paragraphs(text: str) -> str:
    """Trailing spaces off every line, at most one blank line in a row, no blank ends."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n").replace("….", "…")


# --- SMS ------------------------------------------------------------------------------------

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")  # sent as ESC + char: two septets each
_GSM = _GSM_BASIC | _GSM_EXTENSION

# Typography phones and word processors put in names (a curly apostrophe in "Mary's") would
# otherwise force the whole message into UCS-2, halving its length.
_TO_GSM = str.maketrans(
    dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'")
    | dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"')
    | dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-")
    | dict.fromkeys("\u00a0\u2009\u202f", " ")
    | {"\u2026": "..."}
)
_URL_LINE = re.compile(r"https?://\S+")


def _is_gsm(text: str) -> bool:
    return all(char in _GSM for char in text)


def sms_segments(text: str) -> int:
    """How many SMS parts ``text`` is sent as (0 for the empty string).

    GSM-7 when every character is in the GSM 03.38 alphabet: 160 septets in one message or 153
    per part, with the extension characters (€ [ ] { } ^ ~ | \\ and form feed) taking two
    septets and never split across parts. Otherwise UCS-2: 70 UTF-16 code units or 67 per part,
    a character outside the BMP (most emoji) taking two units and never split across parts.
    """
    if _is_gsm(text):
        costs = [2 if char in _GSM_EXTENSION else 1 for char in text]
        single, per_part = 160, 153
    else:
        costs = [2 if ord(char) > 0xFFFF else 1 for char in text]
        single, per_part = 70, 67
    total = sum(costs)
    if total == 0:
        return 0
    if total <= single:
        return 1
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return parts


def fit_sms(text: str, max_segments: int = SMS_MAX_SEGMENTS) -> str:
    """``text`` shortened with an ellipsis (at a word where possible) to fit ``max_segments``.

    The ellipsis is "..." when the shortened text is otherwise GSM-7, since "…" is not in the
    GSM alphabet and would turn the whole message into UCS-2.
    """
    fitted = _shorten(text, "", max_segments)
    assert fitted is not None  # an ellipsis alone always fits
    return fitted


def _shorten(text: str, suffix: str, max_segments: int) -> str | None:
    """``text`` cut down so that ``text + ellipsis + suffix`` fits; None if the suffix can't."""
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    if sms_segments(text + suffix) <= max_segments:
        return text + suffix
    most_chars = 160 if max_segments == 1 else 153 * max_segments

    def candidate(head: str) -> str:
        head = head.rstrip(" ,.;:-")
        ellipsis = "..." if _is_gsm(head + suffix) else "…"
        return head + ellipsis + suffix

    for cut in range(min(len(text), most_chars), -1, -1):
        head = text[:cut]
        fitted = candidate(head)
        if sms_segments(fitted) > max_segments:
            continue
        # Cut inside a word: back off to the last space if it is close (fewer characters
        # always fit: the text stays GSM-7, or becomes GSM-7 and gains room).
        space = head.rfind(" ")
        if cut < len(text) and not text[cut].isspace() and space > 0 and space >= cut - 15:
            fitted = candidate(head[:space])
        return fitted
    return None


def _decorative(char: str) -> bool:
    """Emoji and other pictographs, their joiners, variation selectors and skin tones."""
    return (
        unicodedata.category(char) in ("So", "Cf")
        or char in "\ufe0e\ufe0f\u20e3"
        or "\U0001f3fb" <= char <= "\U0001f3ff"
    )


def _as_gsm(body: str, link: str) -> str:
    """``body`` in GSM-7 if plain punctuation, or dropping emoji, gets it there; else as is.

    A message is UCS-2 as a whole, so one curly quote or a tomato in a farm's name would cut
    every SMS for that farm from 306 characters to 134 and push the facts out. Names in other
    scripts stay as they are.
    """
    simpler = unicodedata.normalize("NFC", body).translate(_TO_GSM)
    if _is_gsm(simpler + link):
        return simpler
    kept: list[str] = []
    for char in simpler:
        if not _decorative(char):
            kept.append(char)
        elif kept and kept[-1] == " ":  # "Stall 3 🥕." -> "Stall 3."
            kept.pop()
    plain = " ".join("".join(kept).split())
    return plain if _is_gsm(plain + link) else body


def _sms(rendered: str) -> str:
    """One line of text and, when the template ends with a link, the link whole below it."""
    lines = [_one_line(line) for line in rendered.splitlines()]
    lines = [line for line in lines if line]
    link = lines.pop() if lines and _URL_LINE.fullmatch(lines[-1]) else ""
    body = _as_gsm(" ".join(lines), link)
    if link:
        fitted = _shorten(body, f"\n{link}" if body else link, SMS_MAX_SEGMENTS)
        if fitted is not None:
            return fitted
    return fit_sms(body, SMS_MAX_SEGMENTS)
