"""Models shared by every app: role assignments (more to come)."""

from django.conf import settings
from django.db import models

from .choices import Role

__all__ = ["RoleAssignment"]


class RoleAssignment(models.Model):
    """A role granted to a user or a group on one environment, or on all."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="portal_roles",
    )
    group = models.ForeignKey(
        "auth.Group",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="portal_roles",
    )
    environment = models.ForeignKey(
        "stacks.Environment",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="role_assignments",
        help_text="Empty: every environment.",
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["environment__name", "role"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(user__isnull=False, group__isnull=True)
                    | models.Q(user__isnull=True, group__isnull=False)
                ),
                name="portal_roleassignment_user_xor_group",
            ),
        ]

    def __str__(self):
        who = self.user or self.group
        where = self.environment or "all environments"
        return f"{who}: {self.get_role_display()} on {where}"
