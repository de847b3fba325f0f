"""The append-only, hash-chained audit log.

Every change worth answering "who did this?" for appends one
:class:`~portal.models.AuditEntry` through :func:`record`: operations
requested, started, finished, canceled and abandoned (``portal.operations``),
configuration imports (``stacks.config.sync``), and objects created,
changed and deleted in the Django admin (:class:`AuditedAdminMixin`, the
pattern of NetBox's change log: a snapshot before, a snapshot after, the
difference stored).

Chain
-----
Each entry stores ``prev_hash``, the hash of the entry before it, and
``hash``, the SHA-256 of its own canonical JSON (every field but ``hash``
and the ``actor`` link; see :meth:`AuditEntry.canonical`). Appends are
serialized by the single :class:`~portal.models.AuditHead` row: an append
begins by incrementing its ``last_id`` (a row lock on PostgreSQL, the
database write lock on SQLite, held to commit), reads the head, and inserts
the entry with id ``last_id`` chained to the head's hash. Two writers can
therefore never chain onto the same entry, and ids have no gaps.

:func:`verify_chain` recomputes every hash: an edited row no longer matches
its hash, a deleted or inserted row breaks the ids and the next entry's
``prev_hash``, and deleting the newest rows leaves the head pointing past
the end. ``manage.py verify_audit`` runs it.

An entry is written in the caller's transaction, so it exists exactly when
the change it describes does.
"""

import datetime
import json
import time
from dataclasses import dataclass

from django.core.exceptions import FieldDoesNotExist
from django.core.serializers.json import DjangoJSONEncoder
from django.db import (
    IntegrityError,
    OperationalError,
    connections,
    router,
    transaction,
)
from django.db.models import F
from django.db.models.deletion import Collector
from django.utils import timezone

from .models import AuditEntry, AuditHead, environment_model
from .redaction import REDACTED, is_secret_name, redact

__all__ = [
    "SYSTEM",
    "AuditedAdminMixin",
    "Problem",
    "chain_head",
    "diff",
    "object_ref",
    "record",
    "redact_values",
    "snapshot",
    "verify_chain",
]

#: ``actor_name`` of entries written with no user (cron, the reaper).
SYSTEM = "system"

_HEAD = 1


# --- Writing ----------------------------------------------------------------


def record(
    action,
    *,
    actor=None,
    obj=None,
    environment=None,
    data=None,
    object_type="",
    object_id="",
    object_repr="",
):
    """Append an entry to the audit log; return it.

    Args:
        action: what happened, dotted: ``operation.requested``,
            ``object.changed``, ``role.granted``...
        actor: the user who did it; None for the system.
        obj: the model instance it happened to; sets ``object_type``
            (``app_label.model``), ``object_id``, ``object_repr`` and, when
            ``environment`` is not given, the environment the object
            belongs to. The explicit ``object_*`` arguments win.
        environment: an Environment or its name.
        data: JSON-able details, stored as they read back from the database.

    Call it inside the transaction of the change it describes.
    """
    entry = AuditEntry(action=action, data=_jsonable(data or {}))
    _set_actor(entry, actor)
    if obj is not None:
        ref = object_ref(obj)
        entry.object_type = ref["object_type"]
        entry.object_id = ref["object_id"]
        entry.object_repr = ref["object_repr"]
        if environment is None:
            environment = ref["environment"]
    entry.object_type = object_type or entry.object_type
    entry.object_id = str(object_id or entry.object_id)
    entry.object_repr = str(object_repr or entry.object_repr)[:200]
    entry.environment_name = _environment_name(environment)
    return _append(entry)


def object_ref(obj):
    """Return the ``object_*`` fields and environment name naming ``obj``.

    Take it before deleting ``obj``: a deleted instance has no pk.
    """
    return {
        "object_type": obj._meta.label_lower,
        "object_id": "" if obj.pk is None else str(obj.pk),
        "object_repr": str(obj)[:200],
        "environment": _environment_name(_environment_of(obj)),
    }


def _set_actor(entry, actor):
    if actor is None:
        entry.actor, entry.actor_name = None, SYSTEM
    elif not getattr(actor, "is_authenticated", False):
        entry.actor, entry.actor_name = None, "anonymous"
    else:
        entry.actor, entry.actor_name = actor, actor.get_username()


def _environment_of(obj):
    """Return the Environment ``obj`` is or belongs to, or None."""
    Environment = environment_model()
    if isinstance(obj, Environment):
        return obj
    try:
        field = obj._meta.get_field("environment")
    except FieldDoesNotExist:
        return None
    # Service.environment is a JSON field of variables, not a relation.
    if not field.is_relation or field.related_model is not Environment:
        return None
    if getattr(obj, field.attname) is None:
        return None
    return getattr(obj, field.name)


def _environment_name(environment):
    if environment is None:
        return ""
    return str(getattr(environment, "name", environment))[:40]


def _jsonable(value):
    """Return ``value`` as it reads back from a JSONField (what is hashed)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _append(entry):
    """Chain ``entry`` onto the head and insert it (serialized, see above).

    Hot path: every operation state change calls it. The head and the
    insert are plain SQL (three statements where the database can
    ``UPDATE ... RETURNING``), which costs about a quarter of the ORM
    equivalent.
    """
    using = router.db_for_write(AuditEntry)
    conn = connections[using]
    # Outside a transaction a concurrent SQLite writer may still refuse the
    # lock after its busy timeout; inside one the caller's transaction has to
    # be retried as a whole, so errors propagate.
    attempts = 1 if conn.in_atomic_block else 5
    for attempt in range(attempts):
        try:
            # No savepoint: a failed append must fail the caller's change.
            with transaction.atomic(using=using, savepoint=False):
                entry.pk, entry.prev_hash = _advance_head(conn)
                entry.created = timezone.now()
                entry.hash = entry.compute_hash()
                sql = _statements(conn)
                with conn.cursor() as cursor:
                    cursor.execute(
                        sql["insert"],
                        [
                            field.get_db_prep_save(getattr(entry, field.attname), conn)
                            for field in AuditEntry._meta.concrete_fields
                        ],
                    )
                    cursor.execute(sql["set_hash"], [entry.hash, _HEAD])
            entry._state.adding, entry._state.db = False, using
            return entry
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


_sql_cache = {}


def _statements(conn):
    """Return the SQL of an append on ``conn`` (built once per database)."""
    sql = _sql_cache.get(conn.alias)
    if sql is not None:
        return sql
    qn = conn.ops.quote_name
    head = AuditHead._meta
    head_table, last_id, hash_, pk = (
        qn(head.db_table),
        qn(head.get_field("last_id").column),
        qn(head.get_field("hash").column),
        qn(head.pk.column),
    )
    entry = AuditEntry._meta
    columns = [qn(field.column) for field in entry.concrete_fields]
    advance = f"UPDATE {head_table} SET {last_id} = {last_id} + 1 WHERE {pk} = %s"
    # UPDATE ... RETURNING: PostgreSQL, and SQLite from 3.35 (the version
    # from which Django returns columns from an INSERT too).
    returning = conn.vendor in ("postgresql", "sqlite") and (
        conn.features.can_return_columns_from_insert
    )
    sql = {
        "advance": advance,
        "advance_returning": (
            f"{advance} RETURNING {last_id}, {hash_}" if returning else None
        ),
        "read_head": f"SELECT {last_id}, {hash_} FROM {head_table} WHERE {pk} = %s",
        "insert": "INSERT INTO {} ({}) VALUES ({})".format(
            qn(entry.db_table), ", ".join(columns), ", ".join(["%s"] * len(columns))
        ),
        "set_hash": f"UPDATE {head_table} SET {hash_} = %s WHERE {pk} = %s",
    }
    _sql_cache[conn.alias] = sql
    return sql


def _advance_head(conn):
    """Take the head's lock; return ``(id of the new entry, hash before it)``.

    The first statement is a write, so SQLite takes its write lock before
    anything is read (as ``portal.operations._in_mutex`` does) and
    PostgreSQL locks the row until commit, which is what a ``SELECT ... FOR
    UPDATE`` would do, in one statement fewer.
    """
    sql = _statements(conn)
    with conn.cursor() as cursor:
        if sql["advance_returning"]:
            cursor.execute(sql["advance_returning"], [_HEAD])
            rows = cursor.fetchall()
        else:
            cursor.execute(sql["advance"], [_HEAD])
            rows = None
            if cursor.rowcount:
                cursor.execute(sql["read_head"], [_HEAD])
                rows = cursor.fetchall()
        if rows:
            return tuple(rows[0])
    # The first entry (or the head row was lost): continue the chain from
    # what is stored.
    last = (
        AuditEntry.objects.using(conn.alias)
        .order_by("-id")
        .values_list("id", "hash")
        .first()
    ) or (0, "")
    heads = AuditHead.objects.using(conn.alias)
    try:
        with transaction.atomic(using=conn.alias):
            heads.create(pk=_HEAD, last_id=last[0], hash=last[1])
    except IntegrityError:
        pass  # another writer created it first
    heads.filter(pk=_HEAD).update(last_id=F("last_id") + 1)
    return heads.values_list("last_id", "hash").get(pk=_HEAD)


# --- Verifying ----------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One break in the chain: the entry it concerns and what is wrong."""

    entry_id: int
    message: str

    def __str__(self):
        return f"entry {self.entry_id}: {self.message}"


def verify_chain(*, using=None):
    """Recompute the chain; return a list of :class:`Problem` (empty: intact)."""
    using = using or router.db_for_read(AuditEntry)
    problems = []
    prev_id, prev_hash = 0, ""
    entries = AuditEntry.objects.using(using).order_by("id")
    for entry in entries.iterator(chunk_size=2000):
        if entry.pk > prev_id + 1:
            missing = (
                f"entry {prev_id + 1} is"
                if entry.pk == prev_id + 2
                else f"entries {prev_id + 1} to {entry.pk - 1} are"
            )
            problems.append(Problem(prev_id + 1, f"missing: {missing} gone (deleted)"))
        if entry.prev_hash != prev_hash:
            before = f"entry {prev_id}" if prev_id else "the start of the log"
            problems.append(
                Problem(
                    entry.pk,
                    f"prev_hash {entry.prev_hash[:12] or '(empty)'} does not match "
                    f"{before} ({prev_hash[:12] or 'no hash'}): an entry before "
                    "it was deleted, inserted or rewritten",
                )
            )
        if entry.compute_hash() != entry.hash:
            problems.append(
                Problem(
                    entry.pk,
                    "hash mismatch: the entry was changed after it was written",
                )
            )
        prev_id, prev_hash = entry.pk, entry.hash
    head = AuditHead.objects.using(using).filter(pk=_HEAD).first()
    if head is None:
        if prev_id:
            problems.append(Problem(prev_id, "the head row of the chain is missing"))
    elif head.last_id > prev_id:
        missing = (
            f"entry {head.last_id} is"
            if head.last_id == prev_id + 1
            else f"entries {prev_id + 1} to {head.last_id} are"
        )
        problems.append(
            Problem(prev_id + 1, f"missing: {missing} gone (the newest deleted)")
        )
    elif head.last_id < prev_id:
        problems.append(
            Problem(
                prev_id,
                f"beyond the head of the chain (entry {head.last_id}): "
                "written around the audit log",
            )
        )
    elif head.hash != prev_hash:
        problems.append(
            Problem(
                prev_id,
                "hash differs from the one the head recorded: the newest entry "
                "was rewritten",
            )
        )
    return problems


def chain_head(*, using=None):
    """Return ``(number of entries, hash of the newest)``."""
    using = using or router.db_for_read(AuditEntry)
    last = (
        AuditEntry.objects.using(using)
        .order_by("-id")
        .values_list("hash", flat=True)
        .first()
    )
    return AuditEntry.objects.using(using).count(), last or ""


# --- Snapshots and differences -----------------------------------------------


def snapshot(obj, *, m2m=None):
    """Return ``{field: value}`` of ``obj``'s fields, as stored in an entry.

    Concrete fields but the primary key, then many-to-many ones; times to
    the second. A relation is the related object's ``str()`` (a sorted list
    for many-to-many), so an entry stays readable after ids change hands.
    ``m2m`` gives values that are not saved yet (``form.cleaned_data``);
    others are read from the database. Secrets are not redacted here:
    compare first, then :func:`redact_values`.
    """
    values = {}
    meta = obj._meta
    for field in meta.concrete_fields:
        if field.primary_key:
            continue
        if field.is_relation:
            if getattr(obj, field.attname) is None:
                values[field.name] = None
            else:
                values[field.name] = str(getattr(obj, field.name))
        else:
            value = field.value_from_object(obj)
            if isinstance(value, datetime.datetime):
                # To the second: the admin's date and time inputs drop the
                # microseconds, which is no change worth an entry.
                value = value.replace(microsecond=0)
            values[field.name] = _jsonable(value)
    for field in meta.many_to_many:
        if m2m is not None and field.name in m2m:
            related = m2m[field.name] or []
        elif obj.pk is None:
            related = []
        else:
            related = getattr(obj, field.name).all()
        values[field.name] = sorted(str(item) for item in related)
    return values


def redact_values(values):
    """Return a snapshot (or diff) with secret-looking values replaced.

    A field named like a secret (``password``) is hidden whole; dict and
    list values (service environments, override values, settings) go
    through :func:`stacks.secrets.redact`, which hides secret-named keys
    and ``NAME=value`` items.
    """
    result = {}
    for name, value in values.items():
        if is_secret_name(name):
            result[name] = _hide(value)
        else:
            result[name] = redact(value)
    return result


def _hide(value):
    if isinstance(value, list) and len(value) == 2:  # a diff pair
        return [REDACTED if v not in (None, "") else v for v in value]
    return REDACTED if value not in (None, "") else value


def diff(before, after, fields=None):
    """Return ``{field: [old, new]}`` for the fields that differ, redacted.

    ``fields`` limits the comparison (a form's ``changed_data``). Values are
    compared before redaction, so a changed secret shows as a changed field
    even though both sides read ``********``.
    """
    changes = {
        name: [before.get(name), value]
        for name, value in after.items()
        if (fields is None or name in fields) and before.get(name) != value
    }
    return redact_values(changes)


def _cascade(obj, using):
    """Return ``{app_label.model: count}`` a delete of ``obj`` also removes."""
    collector = Collector(using=using)
    collector.collect([obj])
    counts = {}
    for model, instances in collector.data.items():
        label = model._meta.label_lower
        counts[label] = counts.get(label, 0) + len(instances)
    for queryset in collector.fast_deletes:
        label = queryset.model._meta.label_lower
        counts[label] = counts.get(label, 0) + queryset.count()
    own = obj._meta.label_lower
    counts[own] = counts.get(own, 1) - 1
    return {label: n for label, n in sorted(counts.items()) if n}


# --- Admin ------------------------------------------------------------------


class AuditedAdminMixin:
    """Record admin saves and deletes, with the user and the field diff.

    Put it before ``admin.ModelAdmin`` in the bases. A change records, among
    the fields the form reports changed (``changed_data``), those that
    differ between the row before the save and the object after it
    (many-to-many values from the form); an addition and a deletion record
    every field. Limiting the diff to ``changed_data`` keeps out what a form
    rewrites without a change, such as a timestamp losing its microseconds.
    Inline rows get entries of their own. The actions are
    ``audit_actions``'s values (``role.granted`` for a role assignment,
    say).
    """

    audit_actions = {
        "created": "object.created",
        "changed": "object.changed",
        "deleted": "object.deleted",
    }

    def _audit(self, request, kind, obj, data, *, ref=None):
        ref = ref or object_ref(obj)
        record(
            self.audit_actions[kind],
            actor=request.user,
            environment=ref["environment"],
            data=data,
            object_type=ref["object_type"],
            object_id=ref["object_id"],
            object_repr=ref["object_repr"],
        )

    @staticmethod
    def _before(obj):
        """Return the stored row of ``obj`` as a snapshot, or None."""
        if obj.pk is None:
            return None
        stored = type(obj)._base_manager.filter(pk=obj.pk).first()
        return None if stored is None else snapshot(stored)

    def save_model(self, request, obj, form, change):
        before = self._before(obj) if change else None
        super().save_model(request, obj, form, change)
        after = snapshot(obj, m2m=_form_m2m(form))
        if before is None:
            self._audit(request, "created", obj, {"fields": redact_values(after)})
            return
        changes = diff(before, after, form.changed_data)
        if changes:
            self._audit(request, "changed", obj, {"changes": changes})

    def save_formset(self, request, form, formset, change):
        parent = str(form.instance)[:200]
        forms = {id(f.instance): f for f in formset.forms}
        deleting = {id(f) for f in formset.deleted_forms} if formset.can_delete else ()
        before = {}
        for inline_form in formset.initial_forms:
            instance = inline_form.instance
            if instance.pk is None:
                continue
            if id(inline_form) in deleting or inline_form.has_changed():
                before[id(instance)] = (object_ref(instance), self._before(instance))
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            fields = snapshot(obj, m2m=_form_m2m(forms.get(id(obj))))
            self._audit(
                request,
                "created",
                obj,
                {"fields": redact_values(fields), "parent": parent},
            )
        for obj, _names in formset.changed_objects:
            _ref, old = before.get(id(obj), (None, None))
            if old is None:
                continue
            inline_form = forms.get(id(obj))
            changes = diff(
                old,
                snapshot(obj, m2m=_form_m2m(inline_form)),
                inline_form.changed_data if inline_form is not None else None,
            )
            if changes:
                self._audit(
                    request, "changed", obj, {"changes": changes, "parent": parent}
                )
        for obj in formset.deleted_objects:
            ref, old = before.get(id(obj), (None, None))
            if ref is None:
                continue
            self._audit(
                request,
                "deleted",
                obj,
                {"fields": redact_values(old or {}), "parent": parent},
                ref=ref,
            )

    def delete_model(self, request, obj):
        using = router.db_for_write(type(obj))
        ref, fields, cascade = object_ref(obj), snapshot(obj), _cascade(obj, using)
        super().delete_model(request, obj)
        data = {"fields": redact_values(fields)}
        if cascade:
            data["cascade"] = cascade
        self._audit(request, "deleted", obj, data, ref=ref)

    def delete_queryset(self, request, queryset):
        # The delete_selected action runs outside a transaction: make the
        # deletion and its entries one.
        using = router.db_for_write(queryset.model)
        with transaction.atomic(using=using):
            gone = [
                (obj, object_ref(obj), snapshot(obj), _cascade(obj, using))
                for obj in queryset
            ]
            super().delete_queryset(request, queryset)
            for obj, ref, fields, cascade in gone:
                data = {"fields": redact_values(fields)}
                if cascade:
                    data["cascade"] = cascade
                self._audit(request, "deleted", obj, data, ref=ref)


def _form_m2m(form):
    """Return the many-to-many values a model form is about to save."""
    if form is None or not hasattr(form, "cleaned_data"):
        return None
    names = {f.name for f in form._meta.model._meta.many_to_many}
    cleaned = form.cleaned_data
    return {name: cleaned[name] for name in names if name in cleaned}
