"""The backups page, the record page and the backup buttons: the four
permission cases for each, then what a permitted user gets."""

from datetime import timedelta

import pytest
from django.urls import reverse

from portal.models import Operation
from tests.backups.records import *  # noqa: F403

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_backup_environment, make_user, make_record):
    env = make_backup_environment("pages", tiers=("local", "remote"))
    other = make_backup_environment("pages-other")
    record = make_record(env, age=timedelta(hours=2))
    # Copied a minute ago: its data is as old as its source's.
    copy = make_record(
        env,
        tier="remote",
        copied_from=record,
        age=timedelta(minutes=1),
        bytes_added=None,
    )
    users = {
        "nobody": make_user("nobody"),
        "viewer": make_user("viewer", "viewer", env),
        "operator": make_user("operator", "operator", env),
        "elsewhere": make_user("elsewhere", "operator", other),
    }
    return env, record, copy, users


def _urls(env, record):
    return {
        "page": reverse("backups:environment_backups", args=[env.name]),
        "record": reverse("backups:record_detail", args=[record.pk]),
    }


GET_VIEWS = ["page", "record"]
POSTS = ["backup_service", "backup_environment", "verify_environment"]


def _post_url(env, view):
    return reverse(f"backups:{view}", args=[env.name])


@pytest.mark.parametrize("view", GET_VIEWS)
def test_get_view_anonymous_redirects_to_login(client, world, view):
    env, record, _copy, _users = world
    response = client.get(_urls(env, record)[view])
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("view", GET_VIEWS)
def test_get_view_without_role_forbidden(client, world, view):
    env, record, _copy, users = world
    client.force_login(users["nobody"])
    assert client.get(_urls(env, record)[view]).status_code == 403


@pytest.mark.parametrize("view", GET_VIEWS)
def test_get_view_with_role_on_other_environment_forbidden(client, world, view):
    env, record, _copy, users = world
    client.force_login(users["elsewhere"])
    assert client.get(_urls(env, record)[view]).status_code == 403


@pytest.mark.parametrize("view", GET_VIEWS)
def test_get_view_with_viewer_role_ok(client, world, view):
    env, record, _copy, users = world
    client.force_login(users["viewer"])
    assert client.get(_urls(env, record)[view]).status_code == 200


@pytest.mark.parametrize("view", POSTS)
def test_post_anonymous_redirects_to_login(client, world, view):
    env, *_rest = world
    response = client.post(_post_url(env, view), {"service": "postgres"})
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("view", POSTS)
@pytest.mark.parametrize("who", ["nobody", "viewer", "elsewhere"])
def test_post_without_backup_verb_forbidden(client, world, view, who):
    """No role, a viewer, and an operator of another environment get 403."""
    env, _record, _copy, users = world
    client.force_login(users[who])
    response = client.post(_post_url(env, view), {"service": "postgres"})
    assert response.status_code == 403
    assert not Operation.objects.exists()


@pytest.mark.parametrize("view", POSTS)
def test_post_get_not_allowed(client, world, view):
    env, _record, _copy, users = world
    client.force_login(users["operator"])
    assert client.get(_post_url(env, view)).status_code == 405


def test_operator_queues_a_service_backup(
    client, world, redis_conn, django_capture_on_commit_callbacks
):
    """The button requests the backup.service operation with the chosen
    strategy and type, and says so on the backups page."""
    env, _record, _copy, users = world
    client.force_login(users["operator"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            _post_url(env, "backup_service"),
            {"service": "postgres", "strategy": "schema", "backup_type": "full"},
            follow=True,
        )
    operation = Operation.objects.get()
    assert operation.kind == "backup.service"
    assert operation.service.name == "postgres"
    assert operation.parameters == {"strategy": "schema", "backup_type": "full"}
    assert operation.requested_by == users["operator"]
    assert operation.queue_name == "long"
    html = response.content.decode()
    assert f"Queued operation {operation.pk}: back up postgres (schema, full)." in html
    # It is listed as running, with a link and a progress bar.
    assert f'data-operation="{operation.pk}"' in html
    assert operation.get_absolute_url() in html


def test_operator_queues_a_verification_of_the_next_group(
    client, world, redis_conn, django_capture_on_commit_callbacks
):
    env, _record, _copy, users = world
    client.force_login(users["operator"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            _post_url(env, "verify_environment"), {"subset": "auto"}, follow=True
        )
    operation = Operation.objects.get()
    assert operation.kind == "backup.verify"
    assert operation.stack is None and operation.queue_name == "long"
    assert operation.plan["tiers"] == {"local": "1/7", "remote": "1/7"}
    html = response.content.decode()
    assert f"Queued operation {operation.pk}: verify local 1/7, remote 1/7." in html
    assert f'data-operation="{operation.pk}"' in html
    assert 'data-repository="local"' in html and "never checked" in html


def test_verification_subset_is_checked(client, world):
    env, _record, _copy, users = world
    client.force_login(users["operator"])
    response = client.post(
        _post_url(env, "verify_environment"), {"subset": "9/7"}, follow=True
    )
    assert "Not a verification request: subset:" in response.content.decode()
    assert not Operation.objects.exists()


def test_unknown_strategy_is_refused_with_the_plan_message(client, world, redis_conn):
    env, _record, _copy, users = world
    client.force_login(users["operator"])
    response = client.post(
        _post_url(env, "backup_service"),
        {"service": "postgres", "strategy": "rdb"},
        follow=True,
    )
    assert not Operation.objects.exists()
    assert (
        "Service postgres (pg_dump) has no &#x27;rdb&#x27; backup (it has: full, "
        "schema, data)." in response.content.decode()
    )


def test_operator_queues_every_service(
    client, world, redis_conn, django_capture_on_commit_callbacks
):
    """Back up everything: one operation per service with a strategy."""
    env, _record, _copy, users = world
    client.force_login(users["operator"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            _post_url(env, "backup_environment"),
            {"backup_type": "differential"},
            follow=True,
        )
    operations = Operation.objects.filter(environment=env)
    assert operations.filter(kind="backup.config").count() == 1
    names = sorted(op.service.name for op in operations.filter(kind="backup.service"))
    assert names == sorted(
        [
            "allure-results",
            "elasticsearch",
            "minio",
            "multimodal-worker",
            "postgres",
            "qdrant",
            "redis",
            "vllm",
        ]
    )
    assert {op.parameters["backup_type"] for op in operations} == {"differential"}
    assert "Queued 9 backup operation(s) in" in response.content.decode()


def test_page_shows_newest_good_backups_ages_and_failures(
    client, world, make_record, django_assert_max_num_queries
):
    env, record, copy, users = world
    make_record(env, service="redis", strategy="rdb", age=timedelta(days=3))
    failed = make_record(
        env,
        status="failed",
        tier="remote",
        age=timedelta(seconds=10),
        error="remote tier of x: unreachable: ssh: connect to host 10.0.0.9 port 22",
    )
    client.force_login(users["viewer"])
    # A constant number, whatever the records, tiers and checks.
    with django_assert_max_num_queries(26):
        response = client.get(_urls(env, record)["page"])
    html = response.content.decode()
    # postgres full in local: 2 h old, allowed 1 d 06 h.
    assert 'data-row="postgres/full/local"' in html
    assert ">2 h 00 min<" in html and ">1 d 06 h<" in html
    remote = html[html.index('data-row="postgres/full/remote"') :]
    assert remote[: remote.index("</tr>")].count(">2 h 00 min<") == 1
    assert ">3.0\xa0MB<" in html and ">200.0\xa0KB<" in html
    assert f">{record.snapshot_id[:8]}<" in html
    assert record.get_absolute_url() in html
    # redis rdb in local is 3 days old: overdue; in remote never backed up.
    assert (
        'data-row="redis/rdb/local" class="state-row-overdue"' in html
        and 'data-row="redis/rdb/remote" class="state-row-never"' in html
    )
    # The failed copy after the newest good one is listed with its error.
    assert f'data-record="{failed.pk}"' in html
    assert "unreachable: ssh: connect to host 10.0.0.9 port 22" in html
    assert "1 failed since" in html
    # A viewer sees no button.
    assert reverse("backups:backup_service", args=[env.name]) not in html
    assert "js/backup_progress.js" in html


def test_page_buttons_follow_role(client, world):
    env, record, _copy, users = world
    client.force_login(users["operator"])
    html = client.get(_urls(env, record)["page"]).content.decode()
    assert reverse("backups:backup_service", args=[env.name]) in html
    assert reverse("backups:backup_environment", args=[env.name]) in html
    assert '<option value="schema">schema</option>' in html
    assert '<option value="differential">differential</option>' in html


@pytest.mark.docker
def test_environment_page_links_to_backups(client, world, docker_client):
    env, record, _copy, users = world
    client.force_login(users["viewer"])
    html = client.get(
        reverse("stacks:environment_detail", args=[env.name])
    ).content.decode()
    assert f'href="{_urls(env, record)["page"]}" data-link="backups"' in html


def test_record_page_shows_manifest_copies_and_restore_commands(client, world):
    env, record, copy, users = world
    record.manifest = {"database": "multimodal", "rows": 2540, "engine": "postgresql"}
    record.tags = ["portal", f"env={env.name}", f"record={record.pk}"]
    record.repository = f"/srv/restic/{env.name}"
    record.save()
    client.force_login(users["viewer"])
    html = client.get(_urls(env, record)["record"]).content.decode()
    assert "&quot;rows&quot;: 2540" in html
    assert f"record={record.pk}</code>" in html
    # Both tiers of this backup, the copy linked.
    assert 'data-copy="local"' in html and 'data-copy="remote"' in html
    assert copy.get_absolute_url() in html
    # The commands, with the repository resolved for the environment and
    # never the password itself.
    local = env.settings["variables"]["BACKUP_LOCAL_PATH"]
    assert f"export RESTIC_REPOSITORY={local}/{env.name}" in html
    assert "read -rs -p &#x27;Repository password: &#x27; RESTIC_PASSWORD" in html
    assert f"restic snapshots --tag record={record.pk}" in html
    assert f"restic restore {record.snapshot_id} --target restore-{record.pk}" in html
    assert "/multimodal.full.dump" in html and "pg_restore" in html
    assert "The repository password is the value of BACKUP_REPOSITORY_PASSWORD" in html
    assert env.settings["variables"]["BACKUP_REPOSITORY_PASSWORD"] not in html


def test_record_page_of_a_copy_finds_it_by_the_source_record_tag(client, world):
    env, record, copy, users = world
    client.force_login(users["viewer"])
    html = client.get(_urls(env, copy)["record"]).content.decode()
    assert "restic -o &#x27;sftp.command=ssh -o BatchMode=yes" in html
    assert f"snapshots --tag record={record.pk}" in html
    assert "StrictHostKeyChecking=yes" in html


def test_record_page_of_a_failed_record_shows_the_error(client, world, make_record):
    env, _record, _copy, users = world
    failed = make_record(
        env, status="failed", error="local tier of x: the repository's storage is full"
    )
    client.force_login(users["viewer"])
    html = client.get(
        reverse("backups:record_detail", args=[failed.pk])
    ).content.decode()
    assert "the repository&#x27;s storage is full" in html
    assert "Only a succeeded backup can be restored." in html


def test_record_left_running_by_an_ended_operation_is_shown_failed(
    client, world, make_record
):
    env, _record, _copy, users = world
    left = make_record(env, status="running")
    client.force_login(users["viewer"])
    html = client.get(reverse("backups:record_detail", args=[left.pk])).content.decode()
    assert 'data-field="status">failed<' in html
    assert "Abandoned: the operation that took it ended without finishing it." in html


def test_dashboard_shows_each_services_last_backup_worst_first(
    client, world, make_record
):
    """The dashboard's backup panel: per environment the count of services
    by state, and each service with its newest good backup in any tier and
    its worst state over them; never backed up comes first."""
    env, record, copy, users = world
    make_record(env, service="redis", strategy="rdb", age=timedelta(days=3))
    client.force_login(users["viewer"])
    html = client.get(reverse("portal:dashboard")).content.decode()
    panel = html[html.index('data-panel="backups"') :]
    row = panel[panel.index(f'data-environment="{env.name}"') :]
    row = row[: row.index("</tr>")]
    postgres = row[row.index(f'data-backup="{env.name}/postgres"') :]
    assert postgres.startswith(f'data-backup="{env.name}/postgres" class="backup-ok"')
    assert "<strong>2 h 00 min</strong>" in postgres[: postgres.index("</li>")]
    redis = row[row.index(f'data-backup="{env.name}/redis"') :]
    # 3 days old in local (overdue), never in remote: never.
    assert redis.startswith(f'data-backup="{env.name}/redis" class="backup-never"')
    assert "<strong>3 d 00 h</strong>" in redis[: redis.index("</li>")]
    assert row.index(f"{env.name}/redis") < row.index(f"{env.name}/postgres")
    assert ">1 ok</span>" in row
    # The environment the viewer may not see is not there.
    assert "pages-other" not in panel
