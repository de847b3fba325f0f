"""Forms of the backup buttons."""

from django import forms

from .schema import BACKUP_TYPES

__all__ = ["BackupEnvironmentForm", "BackupServiceForm", "VerifyForm"]

TYPE_CHOICES = [("", "default")] + [(name, name) for name in BACKUP_TYPES]


class BackupEnvironmentForm(forms.Form):
    """Back up every service: how each snapshot relates to earlier ones."""

    backup_type = forms.ChoiceField(choices=TYPE_CHOICES, required=False)


class BackupServiceForm(BackupEnvironmentForm):
    """Back up one service by one of its strategies.

    The strategy is checked against the service's method when the operation
    is planned (the message names the strategies it has).
    """

    service = forms.SlugField(max_length=80)
    strategy = forms.SlugField(max_length=40, required=False)


class VerifyForm(forms.Form):
    """Verify the repositories: which packs to re-read besides the structure."""

    subset = forms.ChoiceField(
        choices=[("auto", "next group"), ("all", "all"), ("none", "structure only")],
        required=False,
    )

    def clean_subset(self):
        return self.cleaned_data["subset"] or "auto"
