"""Operation pages and admin: anonymous, no role, role, role elsewhere."""

import re

import pytest
from django.urls import reverse

from portal.choices import OperationStatus, Role
from portal.models import Operation, RoleAssignment
from portal.operations import request_operation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operation(redis_conn, operator, environment, stack):
    return request_operation(
        "test.steps",
        user=operator,
        environment=environment,
        stack=stack,
        parameters={"steps": 4},
    )


@pytest.fixture
def prod_operation(redis_conn, make_user, other_environment, stack):
    admin = make_user("root", is_superuser=True)
    return request_operation(
        "test.steps", user=admin, environment=other_environment, stack=stack
    )


def login(client, user):
    client.force_login(user)
    return client


# --- list --------------------------------------------------------------------


def test_list_anonymous_redirects_to_login(client, operation):
    response = client.get(reverse("portal:operation_list"))
    assert response.status_code == 302
    assert "/login/" in response.url


def test_list_without_role_shows_nothing(client, stranger, operation):
    response = login(client, stranger).get(reverse("portal:operation_list"))
    assert response.status_code == 200
    assert list(response.context["operations"]) == []


def test_list_shows_visible_environments_only(
    client, viewer, operation, prod_operation
):
    response = login(client, viewer).get(reverse("portal:operation_list"))
    assert list(response.context["operations"]) == [operation]
    assert b"dev/core" in response.content
    assert b"Queue wait" in response.content


def test_list_filters_by_environment_and_status(
    client, make_user, operation, prod_operation
):
    admin = make_user("boss", is_superuser=True)
    login(client, admin)
    url = reverse("portal:operation_list")
    assert list(client.get(url, {"env": "prod"}).context["operations"]) == [
        prod_operation
    ]
    assert list(client.get(url, {"status": "succeeded"}).context["operations"]) == []
    assert len(client.get(url, {"status": "active"}).context["operations"]) == 2


# --- detail ------------------------------------------------------------------


def test_detail_anonymous_redirects(client, operation):
    response = client.get(operation.get_absolute_url())
    assert response.status_code == 302


def test_detail_without_role_is_forbidden(client, stranger, operation):
    assert login(client, stranger).get(operation.get_absolute_url()).status_code == 403


def test_detail_with_view_role(client, viewer, operation):
    response = login(client, viewer).get(operation.get_absolute_url())
    assert response.status_code == 200
    content = response.content.decode()
    assert f'data-ws-path="/ws/operations/{operation.pk}/"' in content
    # The plan, as a table: one row per key.
    plan = content[content.index('data-field="plan"') :]
    assert re.search(
        r'<tr data-key="steps"><th scope="row">Steps</th><td>'
        r'<span class="data-number">4</span></td></tr>',
        plan,
    )
    assert "js/operation_log.js" in content
    assert not response.context["can_cancel"]


def test_detail_role_on_other_environment_is_forbidden(client, viewer, prod_operation):
    assert (
        login(client, viewer).get(prod_operation.get_absolute_url()).status_code == 403
    )


def test_log_text(client, viewer, operation, run_jobs):
    run_jobs("default")
    response = login(client, viewer).get(
        reverse("portal:operation_log_text", args=[operation.pk])
    )
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    assert [line.split(None, 4)[4] for line in body.splitlines()] == [
        f"step {n} of 4" for n in range(1, 5)
    ]


# --- cancel ------------------------------------------------------------------


def test_cancel_is_post_only(client, operator, operation):
    url = reverse("portal:operation_cancel", args=[operation.pk])
    assert login(client, operator).get(url).status_code == 405


def test_cancel_anonymous_redirects(client, operation):
    url = reverse("portal:operation_cancel", args=[operation.pk])
    assert client.post(url).status_code == 302
    operation.refresh_from_db()
    assert operation.status == OperationStatus.QUEUED


def test_cancel_viewer_is_forbidden(client, viewer, operation):
    url = reverse("portal:operation_cancel", args=[operation.pk])
    assert login(client, viewer).post(url).status_code == 403
    operation.refresh_from_db()
    assert operation.status == OperationStatus.QUEUED


def test_cancel_by_operator(client, operator, operation):
    detail = login(client, operator).get(operation.get_absolute_url())
    assert detail.context["can_cancel"]
    url = reverse("portal:operation_cancel", args=[operation.pk])
    response = client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == operation.get_absolute_url()
    operation.refresh_from_db()
    assert operation.status == OperationStatus.CANCELED
    assert f"Canceled operation {operation.pk}" in response.content.decode()


def test_cancel_operator_of_other_environment_is_forbidden(
    client, operator, prod_operation
):
    url = reverse("portal:operation_cancel", args=[prod_operation.pk])
    assert login(client, operator).post(url).status_code == 403


# --- host check --------------------------------------------------------------


def test_host_check_queues_for_operator(client, redis_conn, operator, environment):
    response = login(client, operator).post(
        reverse("portal:host_check"), {"env": "dev"}
    )
    operation = Operation.objects.get(kind="host.check")
    assert response.status_code == 302
    assert response.url == operation.get_absolute_url()


def test_host_check_viewer_is_forbidden(client, redis_conn, viewer, environment):
    response = login(client, viewer).post(reverse("portal:host_check"), {"env": "dev"})
    assert response.status_code == 403
    assert not Operation.objects.exists()


# --- admin -------------------------------------------------------------------


def test_admin_lists_visible_operations_only(
    client, make_user, environment, operation, prod_operation
):
    staff = make_user("stu", Role.VIEWER, environment, is_staff=True)
    response = login(client, staff).get(reverse("admin:portal_operation_changelist"))
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [operation]
    url = reverse("admin:portal_operation_change", args=[prod_operation.pk])
    assert client.get(url).status_code in (302, 403)


def test_admin_cancel_action_asks_for_the_cancel_verb(
    client, make_user, environment, operation
):
    staff = make_user("stu", Role.VIEWER, environment, is_staff=True)
    url = reverse("admin:portal_operation_changelist")
    data = {"action": "cancel_selected", "_selected_action": [str(operation.pk)]}
    response = login(client, staff).post(url, data, follow=True)
    assert "Not allowed to cancel" in response.content.decode()
    operation.refresh_from_db()
    assert operation.status == OperationStatus.QUEUED

    RoleAssignment.objects.create(
        user=staff, role=Role.OPERATOR, environment=environment
    )
    response = client.post(url, data, follow=True)
    assert "Cancel requested for 1 operation" in response.content.decode()
    operation.refresh_from_db()
    assert operation.status == OperationStatus.CANCELED


def test_role_admin_limited_to_environment_admins(
    client, make_user, environment, other_environment
):
    RoleAssignment.objects.create(
        user=make_user("x"), role=Role.VIEWER, environment=other_environment
    )
    plain = make_user("plain", Role.OPERATOR, environment, is_staff=True)
    url = reverse("admin:portal_roleassignment_changelist")
    assert login(client, plain).get(url).status_code == 403

    boss = make_user("boss", Role.ADMIN, environment, is_staff=True)
    response = login(client, boss).get(url)
    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert shown and all(grant.environment == environment for grant in shown)

    add = reverse("admin:portal_roleassignment_add")
    target = make_user("newbie")
    response = client.post(
        add, {"user": target.pk, "environment": other_environment.pk, "role": "viewer"}
    )
    assert response.status_code == 200  # form error: not a choice
    assert not RoleAssignment.objects.filter(user=target).exists()
    response = client.post(
        add, {"user": target.pk, "environment": environment.pk, "role": "viewer"}
    )
    assert response.status_code == 302
    assert RoleAssignment.objects.get(user=target).environment == environment
