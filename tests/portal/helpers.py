"""Helpers of the portal tests: polling for what a worker does."""

import time

from django import forms

__all__ = ["admin_form_data", "texts", "wait_finished", "wait_for"]


def wait_for(predicate, timeout=20, interval=0.05, message="condition"):
    """Poll ``predicate`` until it returns a truthy value; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def wait_finished(operation, timeout=30):
    """Wait until ``operation`` is terminal; return it refreshed."""

    def done():
        operation.refresh_from_db()
        return operation.is_terminal

    wait_for(done, timeout, message=f"operation {operation.pk} to finish")
    return operation


def texts(operation):
    return list(operation.lines.order_by("seq").values_list("text", flat=True))


def admin_form_data(response):
    """Return the POST data of an admin change form as it was rendered."""
    data = {}
    forms_ = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for bound in formset.management_form:
            data[bound.html_name] = bound.value()
        forms_.extend(formset.forms)
    for form in forms_:
        for bound in form:
            value = bound.value()
            widget = bound.field.widget
            if isinstance(widget, forms.MultiWidget):  # split date and time
                for suffix, part in zip(
                    widget.widgets_names, widget.decompress(value), strict=True
                ):
                    data[bound.html_name + suffix] = "" if part is None else part
                continue
            if isinstance(bound.field, forms.BooleanField):
                if value:
                    data[bound.html_name] = "on"
                continue
            data[bound.html_name] = "" if value is None else value
    return data
