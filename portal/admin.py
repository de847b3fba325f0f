"""Admin pages of the portal app."""

from django.contrib import admin

from .models import RoleAssignment


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "group", "environment", "role", "created"]
    list_filter = ["role", "environment"]
    search_fields = ["user__username", "group__name"]
    autocomplete_fields = ["user", "group"]
