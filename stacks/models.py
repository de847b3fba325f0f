"""Configuration of environments, stacks, services, volumes and networks.

The database is the runtime source of truth. ``configs/stacks.yaml`` is
imported into these models by ``manage.py import_configs`` and written back by
``manage.py export_configs``.
"""

import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

from .choices import DataType
from .schema.keys import OVERRIDE_KEYS

__all__ = [
    "ConfigValue",
    "Environment",
    "HealthProbe",
    "Network",
    "NetworkOverride",
    "Service",
    "ServiceOverride",
    "Stack",
    "Volume",
]


class ConfigValue(models.Model):
    """One value of the ``config`` section of ``configs/stacks.yaml``.

    ``project_name``, ``default_restart_policy`` and
    ``healthcheck_templates`` are applied when the file is imported (templates
    are expanded into each service's healthcheck) and kept here so
    ``export_configs`` writes the section back unchanged.
    """

    key = models.SlugField(max_length=60, unique=True)
    value = models.JSONField(default=None, null=True, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key


class Environment(models.Model):
    """A place where the stacks run: development, staging, production, ..."""

    name = models.SlugField(max_length=40, unique=True)
    alias = models.SlugField(
        max_length=20,
        blank=True,
        help_text="Short name accepted wherever the name is (dev, prod).",
    )
    description = models.CharField(max_length=200, blank=True)
    docker_host = models.CharField(
        max_length=200,
        default="unix:///var/run/docker.sock",
        help_text="Docker Engine URL: unix://, tcp:// (TLS) or ssh://.",
    )
    protected = models.BooleanField(
        default=False,
        help_text="Destructive operations need an approval by a second person.",
    )
    subnet_pool = models.CharField(
        max_length=43,
        blank=True,
        help_text="CIDR the stack networks of this environment are allocated "
        "from. Empty: use each network's default subnet.",
    )
    port_offset = models.IntegerField(
        default=0, help_text="Added to every published host port."
    )
    bind_address = models.GenericIPAddressField(
        default="127.0.0.1", help_text="Host address published ports bind to."
    )
    gpu_enabled = models.BooleanField(
        default=True, help_text="Services that want a GPU get one here."
    )
    require_secret_refs = models.BooleanField(
        default=False,
        help_text="Secret-looking variables must be ${VAR} references.",
    )
    host_policy = models.JSONField(
        default=dict,
        blank=True,
        help_text="What services may ask of the Docker host beyond the defaults: "
        "allow (privileged, 'pid: host', ...), capabilities, devices, bind_mounts.",
    )
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="Free-form settings (debug, log_level, variables, "
        "process_variables).",
    )
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["alias"],
                condition=~models.Q(alias=""),
                name="stacks_environment_unique_alias",
            )
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("stacks:environment_detail", args=[self.name])

    def clean(self):
        if self.subnet_pool:
            try:
                ipaddress.ip_network(self.subnet_pool)
            except ValueError as exc:
                raise ValidationError({"subnet_pool": str(exc)}) from exc
        if self.alias and (
            Environment.objects.filter(name=self.alias).exclude(pk=self.pk).exists()
            or Environment.objects.filter(alias=self.alias).exclude(pk=self.pk).exists()
        ):
            raise ValidationError({"alias": f"{self.alias!r} is already taken."})

    @classmethod
    def lookup(cls, name_or_alias):
        """Return the environment called or aliased ``name_or_alias``."""
        return cls.objects.get(
            models.Q(name=name_or_alias) | models.Q(alias=name_or_alias)
        )

    def project_name(self, stack):
        """Return the Compose project name of ``stack`` in this environment."""
        return f"{settings.PORTAL_PROJECT}-{self.name}-{stack.name}"


class Stack(models.Model):
    """A group of services started and stopped together (core, inference...)."""

    name = models.SlugField(max_length=40, unique=True)
    description = models.CharField(max_length=200, blank=True)
    depends_on = models.ManyToManyField(
        "self",
        symmetrical=False,
        related_name="dependents",
        blank=True,
        help_text="Stacks that must run before this one.",
    )
    environment_variables = models.JSONField(
        default=list,
        blank=True,
        help_text="Names of variables the stack's services read (documentation).",
    )
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self):
        return self.name

    def dependency_closure(self):
        """Return this stack's dependencies, transitively, dependencies first.

        Iterative (a depth-first post-order with an explicit stack), so a
        long chain of stacks needs no deep recursion.
        """
        order, done = [], {self.pk}
        # Entries: (stack, iterator over its dependencies, path of pks).
        pending = [(self, iter(self.depends_on.all()), [self.pk])]
        while pending:
            stack, deps, path = pending[-1]
            dep = next(deps, None)
            if dep is None:
                pending.pop()
                if stack.pk != self.pk:
                    order.append(stack)
                continue
            if dep.pk in path:
                names = dict(Stack.objects.values_list("pk", "name"))
                cycle = [names[pk] for pk in path] + [dep.name]
                raise ValidationError(
                    f"Dependency cycle between stacks: {' -> '.join(cycle)}"
                )
            if dep.pk in done:
                continue
            done.add(dep.pk)
            pending.append((dep, iter(dep.depends_on.all()), [*path, dep.pk]))
        return order


class Volume(models.Model):
    """A named volume with the kind of data it holds."""

    name = models.SlugField(max_length=80, unique=True)
    stack = models.ForeignKey(Stack, on_delete=models.CASCADE, related_name="volumes")
    data_type = models.CharField(max_length=20, choices=DataType.choices)
    driver = models.CharField(max_length=40, default="local")
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["stack__order", "name"]

    def __str__(self):
        return self.name


class Network(models.Model):
    """A stack's network with its default subnet and gateway."""

    name = models.SlugField(max_length=80, unique=True)
    stack = models.ForeignKey(Stack, on_delete=models.CASCADE, related_name="networks")
    driver = models.CharField(max_length=40, default="bridge")
    subnet = models.CharField(max_length=43)
    gateway = models.GenericIPAddressField(blank=True, null=True)
    internal = models.BooleanField(default=False)

    class Meta:
        ordering = ["stack__order", "name"]

    def __str__(self):
        return self.name

    def clean(self):
        errors = {}
        try:
            net = ipaddress.ip_network(self.subnet)
        except ValueError as exc:
            raise ValidationError({"subnet": f"{self.subnet!r}: {exc}"}) from exc
        if self.gateway and ipaddress.ip_address(self.gateway) not in net:
            errors["gateway"] = f"{self.gateway} is not inside {self.subnet}."
        for other in Network.objects.exclude(pk=self.pk):
            try:
                if net.overlaps(ipaddress.ip_network(other.subnet)):
                    errors["subnet"] = (
                        f"{self.subnet} overlaps {other.subnet} of network "
                        f"{other.name} (stack {other.stack.name})."
                    )
                    break
            except ValueError:
                continue
        if errors:
            raise ValidationError(errors)


class NetworkOverride(models.Model):
    """A network's subnet and gateway in one environment."""

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="network_overrides"
    )
    network = models.ForeignKey(
        Network, on_delete=models.CASCADE, related_name="overrides"
    )
    subnet = models.CharField(max_length=43)
    gateway = models.GenericIPAddressField(blank=True, null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "network"], name="stacks_unique_network_override"
            )
        ]

    def __str__(self):
        return f"{self.network} in {self.environment}"


class Service(models.Model):
    """One container definition of a stack."""

    stack = models.ForeignKey(Stack, on_delete=models.CASCADE, related_name="services")
    name = models.SlugField(max_length=80, unique=True)
    description = models.CharField(max_length=200, blank=True)
    category = models.CharField(max_length=40, blank=True)
    image = models.CharField(max_length=255, blank=True)
    build = models.CharField(
        max_length=255, blank=True, help_text="Build context, when not an image."
    )
    command = models.JSONField(
        default=None, null=True, blank=True, help_text="String or list."
    )
    entrypoint = models.JSONField(default=None, null=True, blank=True)
    environment = models.JSONField(
        default=dict,
        blank=True,
        help_text="Variables; secrets as ${VAR} references resolved at start.",
    )
    ports = models.JSONField(
        default=list, blank=True, help_text='Compose short syntax, "8080:80".'
    )
    volumes = models.JSONField(
        default=list, blank=True, help_text='Compose short syntax, "data:/path".'
    )
    healthcheck = models.JSONField(default=dict, blank=True)
    gpu = models.BooleanField(default=False)
    gpu_count = models.CharField(
        max_length=10, default="all", help_text='"all" or a number.'
    )
    depends_on = models.ManyToManyField(
        "self", symmetrical=False, related_name="dependents", blank=True
    )
    restart = models.CharField(max_length=40, default="unless-stopped")
    user = models.CharField(max_length=40, blank=True)
    shm_size = models.CharField(max_length=20, blank=True)
    extra = models.JSONField(
        default=dict,
        blank=True,
        help_text="Other Compose keys passed through (deploy, ulimits...).",
    )
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["stack__order", "order", "name"]

    def __str__(self):
        return self.name

    def clean(self):
        if not self.image and not self.build:
            raise ValidationError({"image": "A service needs an image or a build."})


class ServiceOverride(models.Model):
    """Changes to a service in one environment.

    ``values`` holds Compose keys: ``image``, ``command``, ``entrypoint``,
    ``ports``, ``volumes``, ``healthcheck``, ``gpu``, ``shm_size``, ``user``,
    ``restart``, ``extra`` replace; ``environment`` merges.
    """

    # The keys configs/stacks.yaml accepts in an override.
    ALLOWED_KEYS = frozenset(OVERRIDE_KEYS)

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="service_overrides"
    )
    service = models.ForeignKey(
        Service, on_delete=models.CASCADE, related_name="overrides"
    )
    values = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "service"], name="stacks_unique_service_override"
            )
        ]

    def __str__(self):
        return f"{self.service} in {self.environment}"

    def clean(self):
        unknown = set(self.values or {}) - self.ALLOWED_KEYS
        if unknown:
            raise ValidationError(
                {"values": f"Unknown override keys: {', '.join(sorted(unknown))}."}
            )


class HealthProbe(models.Model):
    """One health probe of a service, made from inside its stack's network.

    Written by the ``network.health`` operation (``stacks.networks.health``);
    the rows are the history the environment page shows.
    """

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="health_probes"
    )
    stack = models.CharField(max_length=40)
    service = models.CharField(max_length=80)
    # postgres, redis, http or tcp.
    kind = models.CharField(max_length=20)
    target = models.CharField(max_length=300)
    network = models.CharField(max_length=200, blank=True)
    ok = models.BooleanField()
    seconds = models.FloatField(null=True, blank=True)
    address = models.CharField(max_length=64, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    checked = models.DateTimeField(db_index=True)
    operation = models.ForeignKey(
        "portal.Operation",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="health_probes",
    )

    class Meta:
        ordering = ["-checked", "stack", "service"]
        indexes = [
            models.Index(
                fields=["environment", "service", "-checked"],
                name="stacks_probe_latest",
            )
        ]

    def __str__(self):
        state = "ok" if self.ok else "failed"
        return f"{self.service} in {self.environment}: {state}"
