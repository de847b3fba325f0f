"""What every page shows the same way: tones of states, and plans as tables.

:func:`tone` says what a word means for an operator (``ok``, ``warn``,
``bad``, ``idle``, ``info``), so a badge is coloured by meaning, not by
where it is shown. :func:`render_data` renders any JSON-able value (an
operation's plan or result, a diff, a stats sample) as HTML tables and
lists: a mapping becomes a two-column table, a list of records a table
with one column per key, a list of words a row of chips, a long text a
``<pre>``. Secret-named values are redacted first
(:func:`portal.redaction.redact`). Every operation kind's page uses it, so
a new kind's plan needs no template of its own.
"""

import json
import re

from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from .redaction import redact

__all__ = ["exit_tone", "humanize", "render_data", "tone"]

_TONES = {
    # Operations.
    "succeeded": "ok",
    "failed": "bad",
    "errored": "bad",
    "canceled": "idle",
    "pending": "warn",
    "queued": "warn",
    "awaiting_approval": "warn",
    # Stacks, containers and health.
    "running": "ok",
    "healthy": "ok",
    "partial": "warn",
    "restarting": "warn",
    "starting": "warn",
    "paused": "warn",
    "created": "ok",
    "removing": "warn",
    "unhealthy": "bad",
    "dead": "bad",
    "stopped": "idle",
    "exited": "idle",
    "missing": "idle",
    "unknown": "idle",
    # What a start did to a service, what a diff says it would do.
    "unchanged": "ok",
    "started": "ok",
    "recreated": "info",
    "recreate": "warn",
    "create": "info",
    "start": "info",
    # Generic.
    "ok": "ok",
    "yes": "ok",
    "no": "idle",
    "none": "idle",
}
# Words whose tone depends on what they describe.
_DOMAIN_TONES = {
    "operation": {"running": "info"},
    # A container created and never started is not yet what it should be.
    "container": {"created": "warn"},
}


def tone(word, domain=""):
    """Return the tone of ``word``: ok, warn, bad, idle or info ("" unknown)."""
    key = str(word or "").strip().lower()
    return _DOMAIN_TONES.get(domain, {}).get(key) or _TONES.get(key, "")


def exit_tone(code):
    """Return the tone of a container's exit code.

    0 is a clean end, 143 (SIGTERM) and 130 (SIGINT) a stop on request: idle.
    137 (SIGKILL: a stop that timed out, or the kernel's OOM killer) is worth
    a look: warn. Anything else is a failure: bad.
    """
    if code is None:
        return ""
    if code in (0, 130, 143):
        return "idle"
    if code == 137:
        return "warn"
    return "bad"


def humanize(key):
    """Return a key as a label: ``dependency_stacks`` -> ``Dependency stacks``."""
    text = re.sub(r"[_]+", " ", str(key)).strip()
    if not text:
        return str(key)
    return text[0].upper() + text[1:]


# Longest text shown inline; longer or multi-line text goes in a <pre>.
_INLINE_TEXT = 100
# Deeper nesting is shown as JSON.
_MAX_DEPTH = 6
# Columns at most for a list of records shown as a table.
_MAX_COLUMNS = 8


def render_data(value, *, redacted=False):
    """Return ``value`` (JSON-able) as safe HTML tables and lists."""
    if not redacted:
        value = redact(value)
    return mark_safe(_render(value, 0))


def _scalar(value):
    return value is None or isinstance(value, (str, int, float, bool))


def _render(value, depth):
    if depth > _MAX_DEPTH:
        return format_html(
            '<pre class="data-json">{}</pre>',
            json.dumps(value, indent=2, sort_keys=True, default=str),
        )
    if isinstance(value, dict):
        return _mapping(value, depth)
    if isinstance(value, (list, tuple)):
        return _sequence(list(value), depth)
    return _text(value)


def _text(value):
    if value is None:
        return mark_safe('<span class="data-none">–</span>')
    if isinstance(value, bool):
        word = "yes" if value else "no"
        return format_html('<span class="badge tone-{}">{}</span>', tone(word), word)
    if isinstance(value, (int, float)):
        return format_html('<span class="data-number">{}</span>', value)
    text = str(value)
    if "\n" in text or len(text) > _INLINE_TEXT:
        return format_html('<pre class="data-text">{}</pre>', text)
    word_tone = tone(text)
    if word_tone:
        return format_html('<span class="badge tone-{}">{}</span>', word_tone, text)
    return format_html('<span class="data-text">{}</span>', text)


def _mapping(value, depth):
    if not value:
        return mark_safe('<span class="data-none">none</span>')
    # The first level's keys are field names (humanized); deeper keys are
    # often names of things (services, stacks, tiers), shown as they are.
    label = humanize if depth == 0 else str
    rows = format_html_join(
        "",
        '<tr data-key="{}"><th scope="row">{}</th><td>{}</td></tr>',
        ((key, label(key), _render(item, depth + 1)) for key, item in value.items()),
    )
    return format_html('<table class="data-table kv"><tbody>{}</tbody></table>', rows)


def _sequence(items, depth):
    if not items:
        return mark_safe('<span class="data-none">none</span>')
    if all(_scalar(item) for item in items):
        return format_html(
            '<ul class="data-list chips">{}</ul>',
            format_html_join("", "<li>{}</li>", ((_text(i),) for i in items)),
        )
    if all(isinstance(item, dict) for item in items):
        columns = []
        for item in items:
            for key in item:
                if key not in columns:
                    columns.append(key)
        if len(columns) <= _MAX_COLUMNS:
            return _records(items, columns, depth)
    if all(isinstance(item, (list, tuple)) for item in items):
        # Levels, steps: an ordered list of groups.
        return format_html(
            '<ol class="data-list steps">{}</ol>',
            format_html_join(
                "", "<li>{}</li>", ((_render(i, depth + 1),) for i in items)
            ),
        )
    return format_html(
        '<ul class="data-list">{}</ul>',
        format_html_join("", "<li>{}</li>", ((_render(i, depth + 1),) for i in items)),
    )


def _records(items, columns, depth):
    # Columns of records are field names.
    head = format_html_join(
        "", '<th scope="col" data-key="{}">{}</th>', ((c, humanize(c)) for c in columns)
    )
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (
                format_html_join(
                    "",
                    '<td data-label="{}">{}</td>',
                    (
                        (
                            humanize(c),
                            _render(item[c], depth + 1) if c in item else mark_safe(""),
                        )
                        for c in columns
                    ),
                ),
            )
            for item in items
        ),
    )
    return format_html(
        '<div class="table-wrap"><table class="data-table records">'
        "<thead><tr>{}</tr></thead><tbody>{}</tbody></table></div>",
        head,
        body,
    )
