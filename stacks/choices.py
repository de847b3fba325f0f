"""Enumerations of the stacks app."""

from django.db import models

__all__ = ["DataType"]


class DataType(models.TextChoices):
    """What a volume holds; wipes, retention and backups select by it."""

    DB = "db", "Database"
    CACHE = "cache", "Cache"
    MODELS = "models", "Models"
    LOGS = "logs", "Logs"
    TEST_RESULTS = "test-results", "Test results"
    CONFIG = "config", "Configuration"
    APP_DATA = "app-data", "Application data"
    VECTOR = "vector", "Vector database"
    OBJECT = "object", "Object storage"
