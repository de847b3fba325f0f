"""The one answer to "may this user do this verb on this environment?".

Views, admin actions, WebSocket consumers and management commands all ask
:func:`user_can`. Superusers may do everything; everyone else gets the union
of the verbs of the roles granted to them or their groups on that
environment or on all environments.
"""

from django.core.exceptions import PermissionDenied
from django.db.models import Q

from .choices import ROLE_VERBS, Verb
from .models import RoleAssignment, environment_model

__all__ = [
    "allowed_verbs",
    "require",
    "roles_of",
    "user_can",
    "verbs_of",
    "visible_environments",
]


def roles_of(user, environment):
    """Return the set of roles ``user`` holds on ``environment``."""
    if user is None or not user.is_authenticated or not user.is_active:
        return set()
    who = Q(user=user) | Q(group__in=user.groups.all())
    where = Q(environment__isnull=True)
    if environment is not None:
        where |= Q(environment=environment)
    return set(RoleAssignment.objects.filter(who, where).values_list("role", flat=True))


def user_can(user, verb, environment):
    """Return whether ``user`` may do ``verb`` on ``environment``."""
    verb = Verb(verb)
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return any(verb in ROLE_VERBS[role] for role in roles_of(user, environment))


def allowed_verbs(user, environment, verbs):
    """Return ``{verb: may user do it on environment}`` for ``verbs``, with one
    query for the user's roles (a page that shows many buttons asks once)."""
    verbs = [Verb(verb) for verb in verbs]
    if user is None or not user.is_authenticated or not user.is_active:
        return {verb.value: False for verb in verbs}
    if user.is_superuser:
        return {verb.value: True for verb in verbs}
    roles = roles_of(user, environment)
    return {
        verb.value: any(verb in ROLE_VERBS[role] for role in roles) for verb in verbs
    }


def verbs_of(user, environment):
    """Return every verb ``user`` may do on ``environment`` (one query).

    For a page that shows several buttons: the same answer as
    :func:`user_can` for each verb.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    if user.is_superuser:
        return frozenset(Verb)
    verbs = set()
    for role in roles_of(user, environment):
        verbs |= ROLE_VERBS[role]
    return frozenset(verbs)


def require(user, verb, environment):
    """Raise PermissionDenied unless ``user`` may do ``verb`` on ``environment``."""
    if not user_can(user, verb, environment):
        who = getattr(user, "username", None) or "anonymous"
        raise PermissionDenied(
            f"{who} may not {Verb(verb).label.lower()} in environment {environment}."
        )


def visible_environments(user):
    """Return the environments ``user`` may view."""
    Environment = environment_model()
    if user is None or not user.is_authenticated or not user.is_active:
        return Environment.objects.none()
    if user.is_superuser:
        return Environment.objects.all()
    grants = RoleAssignment.objects.filter(
        Q(user=user) | Q(group__in=user.groups.all())
    )
    if grants.filter(environment__isnull=True).exists():
        return Environment.objects.all()
    return Environment.objects.filter(pk__in=grants.values("environment"))
