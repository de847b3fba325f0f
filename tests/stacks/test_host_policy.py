"""What a service may ask of the Docker host: each environment's host_policy.

Privileged mode, host namespaces, devices, capabilities and bind mounts
outside the project are refused on import unless the environment allows
them by name; ``..`` and symbolic links that lead elsewhere are refused
whatever it says. The admin goes through the same rules (test_config_gate).
"""

import os
import re

import pytest
from django.conf import settings

from stacks.config import validate_configs
from stacks.schema.loader import ConfigError
from tests.conftest import RUN_ID

from .test_config_support import line_of, minimal, write_config


def errors(tmp_path, data):
    """Return the issues of ``data`` as text, one per line."""
    path = write_config(tmp_path, data)
    with pytest.raises(ConfigError) as excinfo:
        validate_configs(path)
    return path, [str(issue) for issue in excinfo.value.issues]


def allowed(tmp_path, data):
    validate_configs(write_config(tmp_path, data))


@pytest.mark.parametrize(
    "extra, asked, policy",
    [
        (
            {"privileged": True},
            "'privileged' is not allowed",
            {"allow": ["privileged"]},
        ),
        ({"pid": "host"}, "'pid: host' is not allowed", {"allow": ["pid:host"]}),
        ({"ipc": "host"}, "'ipc: host' is not allowed", {"allow": ["ipc: host"]}),
        (
            {"security_opt": ["seccomp=unconfined"]},
            "'security_opt: seccomp=unconfined' is not allowed",
            {"allow": ["security_opt: seccomp=unconfined"]},
        ),
        (
            {"cap_add": ["SYS_ADMIN"]},
            "capability SYS_ADMIN is not allowed",
            {"capabilities": ["CAP_SYS_ADMIN"]},
        ),
        (
            {"devices": ["/dev/fuse:/dev/fuse"]},
            "device /dev/fuse is not allowed",
            {"devices": ["/dev/fuse"]},
        ),
    ],
)
def test_host_request_refused_until_the_environment_allows_it(
    tmp_path, extra, asked, policy
):
    data = minimal()
    data["services"]["redis"]["extra"] = extra
    path, found = errors(tmp_path, data)
    key, value = next(iter(extra.items()))
    # The line of the key, or of the list item that asks.
    marker = f"- {value[0]}" if isinstance(value, list) else f"{key}:"
    line = line_of(path, marker, after="redis:")
    assert (
        f"{path}:{line}: services.redis.extra.{key}: in environment development, "
        in ("\n".join(found))
    )
    assert len(found) == 2  # development and production
    assert all(asked in issue for issue in found)
    where = "development" if "development" in found[0] else "production"
    assert f"environments.{where}.host_policy." in found[0]

    data["environments"]["development"]["host_policy"] = policy
    data["environments"]["production"]["host_policy"] = policy
    allowed(tmp_path, data)


def test_host_policy_is_per_environment(tmp_path):
    """Allowed in development only: production still refuses, at its line."""
    data = minimal()
    data["services"]["redis"]["extra"] = {"privileged": True}
    data["environments"]["development"]["host_policy"] = {"allow": ["privileged"]}
    _path, found = errors(tmp_path, data)
    assert len(found) == 1
    assert "in environment production, 'privileged' is not allowed" in found[0]


def test_override_asking_for_more_is_reported_at_the_override(tmp_path):
    data = minimal()
    data["environments"]["production"]["overrides"] = {
        "redis": {"extra": {"pid": "host"}}
    }
    path, found = errors(tmp_path, data)
    (issue,) = found
    line = line_of(path, "pid: host", after="overrides:")
    assert issue.startswith(
        f"{path}:{line}: environments.production.overrides.redis.extra.pid: in "
        "environment production, 'pid: host' is not allowed (add it to "
        "environments.production.host_policy.allow)"
    )


def test_bind_mount_outside_the_project_needs_the_policy(tmp_path):
    data = minimal()
    data["services"]["vllm"]["volumes"] = ["/var/log/app:/logs:ro"]
    path, found = errors(tmp_path, data)
    line = line_of(path, "/var/log/app")
    assert found[0] == (
        f"{path}:{line}: services.vllm.volumes: in environment development, bind "
        "mount source /var/log/app is outside the project directory and "
        "environments.development.host_policy.bind_mounts (add it there to allow it)"
    )
    # A parent folder allows what lies below it.
    for env in data["environments"].values():
        env["host_policy"] = {"bind_mounts": ["/var/log"]}
    allowed(tmp_path, data)


def test_bind_mount_inside_the_project_needs_nothing(tmp_path):
    data = minimal()
    data["services"]["vllm"]["volumes"] = [
        "./models:/models:ro",
        f"{settings.BASE_DIR}/configs/nginx.conf:/etc/nginx.conf:ro",
    ]
    allowed(tmp_path, data)


def test_bind_mount_going_up_is_refused_whatever_the_policy(tmp_path):
    data = minimal()
    data["services"]["vllm"]["volumes"] = ["./configs/../../etc:/etc-host:ro"]
    for env in data["environments"].values():
        env["host_policy"] = {"bind_mounts": ["/"]}
    _path, found = errors(tmp_path, data)
    assert "bind mount source './configs/../../etc' goes up with '..'" in found[0]


@pytest.fixture
def escaping_link():
    """A symbolic link inside the project that leads to /etc."""
    link = settings.BASE_DIR / ".state" / f"link-{RUN_ID}"
    link.parent.mkdir(exist_ok=True)
    os.symlink("/etc", link)
    yield link
    link.unlink()


def test_symlink_leading_out_of_the_project_is_refused(tmp_path, escaping_link):
    data = minimal()
    source = f"./.state/{escaping_link.name}/shadow"
    data["services"]["vllm"]["volumes"] = [f"{source}:/secret:ro"]
    _path, found = errors(tmp_path, data)
    assert (
        f"bind mount source '{source}' passes through the symbolic link "
        f"{escaping_link} and leads to /etc/shadow, outside the allowed paths"
    ) in found[0]


def test_system_symlink_is_no_escape_when_the_policy_names_the_path(tmp_path):
    """/var/run is a link to /run on Debian: naming /var/run/docker.sock in
    the policy allows exactly that socket."""
    data = minimal()
    data["services"]["vllm"]["volumes"] = ["/var/run/docker.sock:/var/run/docker.sock"]
    for env in data["environments"].values():
        env["host_policy"] = {"bind_mounts": ["/var/run/docker.sock"]}
    allowed(tmp_path, data)


@pytest.mark.parametrize(
    "policy, problem",
    [
        ({"allow": ["root"]}, "unknown name 'root' (one of: privileged, pid: host"),
        ({"bind_mounts": ["var/log"]}, "'var/log' is not an absolute path"),
        ({"devices": ["/dev/../etc"]}, "'/dev/../etc' goes up with '..'"),
        ({"everything": True}, "unknown key 'everything'"),
    ],
)
def test_bad_policy_entry_is_named(tmp_path, policy, problem):
    data = minimal()
    data["environments"]["development"]["host_policy"] = policy
    _path, found = errors(tmp_path, data)
    assert re.search(r"environments\.development\.host_policy", found[0])
    assert problem in found[0], found


@pytest.mark.parametrize("name", ["SECRET_KEY", "DATABASE_URL", "PORTAL_ANYTHING"])
def test_process_variables_may_not_pass_on_the_portals_own(tmp_path, name):
    data = minimal()
    data["environments"]["development"]["settings"] = {
        "process_variables": ["HF_TOKEN", name]
    }
    _path, found = errors(tmp_path, data)
    (issue,) = found
    assert issue.endswith(
        f"environments.development.settings.process_variables: {name} is a setting "
        "of the portal itself and is never passed to services"
    )


def test_portal_own_variables_list_every_variable_the_settings_read():
    """The list the checks use is the list settings.py reads."""
    text = (settings.BASE_DIR / "portal" / "settings.py").read_text()
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', text))
    read |= set(re.findall(r'os\.environ\.get\("([A-Z_]+)"', text))
    assert read <= set(settings.PORTAL_OWN_VARIABLES)


def test_real_configuration_declares_what_it_asks_of_the_host():
    validate_configs()
