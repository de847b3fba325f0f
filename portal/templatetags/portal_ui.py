"""Template tags of the site's components (``{% load portal_ui %}``).

``{% render_data value %}``
    Any JSON-able value as tables and lists (:func:`portal.ui.render_data`):
    operation plans and results of every kind, diffs, samples.
``{{ word|tone }}``, ``{{ word|tone:"operation" }}``, ``{{ code|exit_tone }}``
    The tone class of a state word or an exit code (ok, warn, bad, idle,
    info).
``{% badge word %}``, ``{% badge word "operation" %}``
    A badge coloured by what the word means.
``{% action_button url label ... %}``
    A POST form with one button: shown only for the states it makes sense
    in (``when``, a space-separated list; the page's script shows and hides
    it as the state changes), with an optional confirm text.
"""

from django import template
from django.utils.html import format_html

from .. import ui

register = template.Library()


@register.simple_tag
def render_data(value):
    """Render ``value`` as tables and lists."""
    return ui.render_data(value)


@register.filter(name="tone")
def tone_filter(word, domain=""):
    """Return the tone of ``word`` (in ``domain``: operation, action)."""
    return ui.tone(word, domain) or "idle"


@register.filter(name="exit_tone")
def exit_tone_filter(code):
    """Return the tone of an exit code."""
    return ui.exit_tone(code)


@register.simple_tag
def badge(word, domain="", field=""):
    """Return a badge for ``word`` coloured by its meaning."""
    attrs = format_html(' data-field="{}"', field) if field else ""
    return format_html(
        '<span class="badge tone-{}"{}>{}</span>',
        ui.tone(word, domain) or "idle",
        attrs,
        word,
    )


@register.inclusion_tag("components/action_button.html", takes_context=True)
def action_button(
    context,
    url,
    label,
    *,
    when="",
    state="",
    confirm="",
    danger=False,
    name="",
    impact="",
    option="",
    option_label="",
):
    """Render a one-button POST form for an action.

    Args:
        when: the states the action makes sense in (space-separated); empty:
            always.
        state: the current state; the form is hidden when ``when`` does not
            list it.
        confirm: a question the page's script asks before submitting.
        impact: a URL the script reads what else the action hits from
            (JSON with a ``text``), added to the question.
        name: ``data-action`` value, for scripts and tests.
        option, option_label: a checkbox sent with the form (its name and
            label), such as ``with_dependencies``.
    """
    states = when.split()
    return {
        "url": url,
        "label": label,
        "when": when,
        "hidden": bool(states) and state not in states,
        "confirm": confirm,
        "danger": danger,
        "name": name or label.lower(),
        "impact": impact,
        "option": option,
        "option_label": option_label,
        "csrf_token": context.get("csrf_token"),
    }
