"""Configuration files written to hurt: each gets one clear error, never a traceback.

Undecodable bytes, control characters, alias bombs, self-referring anchors,
deep nesting, long dependency chains, and names or values of thousands of
characters. Every error names the file and the line (and, cut to a readable
length, the object); nothing is written.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from stacks.config import import_configs, validate_configs
from stacks.schema.loader import (
    MAX_DEPTH,
    MAX_EXPANDED_BYTES,
    ConfigError,
    Issue,
    load_yaml,
)

from .test_config_support import line_of, minimal, row_counts, write_config

ROOT = Path(settings.BASE_DIR)


def issues_of(path):
    """Return the issues of validating ``path`` (which must fail)."""
    with pytest.raises(ConfigError) as info:
        validate_configs(path)
    return info.value.issues


def with_bytes(path, old, new):
    """Replace ``old`` by ``new`` once in the file; return the line changed."""
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    return data.count(b"\n", 0, data.index(old)) + 1


# -- bytes that are not UTF-8 or not YAML


def test_invalid_utf8_names_the_line_and_the_byte_offset(tmp_path):
    path = write_config(tmp_path, minimal())
    line = with_bytes(path, b"image: redis:7-alpine", b"image: redis:7-\xffalpine")
    offset = path.read_bytes().index(b"\xff")
    column = offset - path.read_bytes().rindex(b"\n", 0, offset)
    assert [str(i) for i in issues_of(path)] == [
        f"{path}:{line}: not valid UTF-8: byte 0xff at byte offset {offset} "
        f"(line {line}, byte {column} of the line) cannot be decoded; save the "
        "file as UTF-8"
    ]


def test_invalid_utf8_in_a_companion_file_names_that_file(tmp_path):
    write_config(tmp_path, minimal())
    companion = tmp_path / "retention-policies.yaml"
    companion.write_bytes(b"policies:\n  nightly:\n    keep: \xc3\x28\n")
    issues = issues_of(tmp_path / "stacks.yaml")
    assert [(i.file, i.line) for i in issues] == [(str(companion), 3)]
    assert issues[0].message.startswith(
        "not valid UTF-8: byte 0xc3 at byte offset 31 (line 3, byte 11 of the line)"
    )


@pytest.mark.django_db
def test_import_command_refuses_invalid_utf8_and_writes_nothing(tmp_path):
    path = write_config(tmp_path, minimal())
    line = with_bytes(path, b"description: Core", b"description: C\xe9ur")
    with pytest.raises(CommandError) as info:
        call_command("import_configs", "--file", str(path), stdout=io.StringIO())
    assert str(info.value).startswith(
        f"1 error; nothing was imported:\n{path}:{line}: not valid UTF-8: byte 0xe9"
    )
    assert all(count == 0 for count in row_counts().values())


@pytest.mark.django_db(transaction=True)
def test_manage_py_import_configs_exits_non_zero_without_a_traceback(tmp_path):
    path = write_config(tmp_path, minimal())
    line = with_bytes(path, b"description: Core", b"description: \xff")
    result = subprocess.run(
        [sys.executable, "manage.py", "import_configs", "--file", str(path)],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PORTAL_TEST_DB": str(connection.settings_dict["NAME"]),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{path}:{line}: not valid UTF-8" in result.stderr
    assert all(count == 0 for count in row_counts().values())


def test_control_character_names_the_line(tmp_path):
    path = write_config(tmp_path, minimal())
    line = with_bytes(path, b"description: Core", b"description: Co\x07re")
    offset = path.read_bytes().index(b"\x07")
    assert [str(i) for i in issues_of(path)] == [
        f"{path}:{line}: invalid YAML: control characters are not allowed: #x0007 "
        f"at byte offset {offset}"
    ]


def test_empty_stacks_file_is_an_error(tmp_path):
    path = tmp_path / "stacks.yaml"
    path.write_text("# nothing yet\n")
    assert [str(i) for i in issues_of(path)] == [f"{path}: the file is empty"]


# -- aliases, anchors and nesting


BOMB_SCRIPT = """
import json, os, resource, sys, time
import django
django.setup()
from stacks.config import validate_configs
from stacks.schema.loader import ConfigError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.monotonic()
try:
    validate_configs(sys.argv[1])
    issues = []
except ConfigError as exc:
    issues = [str(i) for i in exc.issues]
print(json.dumps({
    "seconds": time.monotonic() - start,
    "grew_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
    "issues": issues,
}))
"""


def test_alias_bomb_is_refused_fast_without_expanding(tmp_path):
    # A 1 MB string aliased 5,000 times in a command: 5 GB once expanded
    # (as JSON for the database, say).
    text = 'x-big: &big "' + "A" * 1_000_000 + '"\n'
    text += yaml.safe_dump(minimal(), sort_keys=False).replace(
        "    gpu: true\n", "    gpu: true\n    command:\n" + "    - *big\n" * 5000
    )
    path = tmp_path / "stacks.yaml"
    path.write_text(text)
    line = line_of(path, "x-big: &big")
    # A fresh process, so its peak memory is this load's alone.
    result = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, str(path)],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    limit = max(MAX_EXPANDED_BYTES, 4 * path.stat().st_size)
    [issue] = measured["issues"]
    head = (
        f"{path}:{line}: invalid YAML: anchor 'big' defined on this line appears "
        "5,001 times once its aliases are expanded: the document would be "
    )
    tail = (
        f" bytes, more than the limit of {limit:,} bytes; anchor smaller values "
        "or use them less often"
    )
    assert issue.startswith(head) and issue.endswith(tail)
    # Each of the 5,001 copies is the string, its quotes not counted, and one.
    assert int(issue[len(head) : -len(tail)].replace(",", "")) > 5001 * 1_000_001
    assert measured["grew_kib"] < 100 * 1024
    assert measured["seconds"] < 10


def test_nested_alias_bomb_names_the_innermost_anchor(tmp_path):
    lines = ['lol: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 8)}]")
        previous = name
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    document, issues = load_yaml(path, name="laughs.yaml")
    assert document is None
    assert len(issues) == 1
    assert issues[0].line == 1
    assert issues[0].message.startswith(
        "invalid YAML: anchor 'a' defined on this line appears 19,173,961 times"
    )


def test_anchor_used_inside_itself_is_refused(tmp_path):
    data = minimal()
    write_config(tmp_path, data)
    path = tmp_path / "stacks.yaml"
    text = path.read_text().replace(
        "    gpu: true\n", "    gpu: true\n    labels: &loop\n      again: *loop\n"
    )
    path.write_text(text)
    line = line_of(path, "labels: &loop")
    assert [str(i) for i in issues_of(path)] == [
        f"{path}:{line}: invalid YAML: anchor 'loop' defined on this line is used "
        "inside itself; a configuration cannot refer to itself"
    ]


def test_nesting_deeper_than_the_limit_is_refused(tmp_path):
    path = write_config(tmp_path, minimal())
    deep = "".join(f"{' ' * (6 + i)}k{i}:\n" for i in range(MAX_DEPTH + 10))
    text = path.read_text().replace(
        "    gpu: true\n", f"    gpu: true\n    labels:\n{deep}"
    )
    path.write_text(text)
    issues = issues_of(path)
    assert [i.message for i in issues] == [
        f"invalid YAML: mappings and lists nested more than {MAX_DEPTH} levels "
        "deep (this line starts the next level)"
    ]
    # The document, services and vllm are the first three levels; the
    # mapping under labels, the fourth, starts on the line of k0.
    assert issues[0].line == line_of(path, f"k{MAX_DEPTH - 3}:")


def test_anchors_within_the_limit_load_as_shared_values(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(
        "x-check: &check {interval: 30s, retries: 3}\n"
        "a: {healthcheck: *check}\nb: {healthcheck: *check}\n"
    )
    document, issues = load_yaml(path)
    assert issues == []
    assert document["a"]["healthcheck"] == {"interval": "30s", "retries": 3}
    assert document["b"]["healthcheck"] == document["a"]["healthcheck"]


def test_long_dependency_chains_are_checked(tmp_path):
    # Deeper than Python's recursion limit, with a cycle at the far end.
    data = minimal()
    count = 1500
    for i in range(count):
        data["stacks"][f"s{i}"] = {"dependencies": [f"s{(i + 1) % count}"]}
    path = write_config(tmp_path, data)
    issues = issues_of(path)
    assert len(issues) == 1
    assert issues[0].path == f"stacks.s{count - 1}.dependencies"
    assert issues[0].message.startswith("dependency cycle between stacks: s0 -> s1")


# -- very long names and values


def test_a_10k_character_service_name_gives_one_short_error(tmp_path):
    name = "r" * 10_000
    path = write_config(tmp_path, minimal())
    text = path.read_text()
    # A key over 1024 characters must be written as an explicit "?" key.
    text = text.replace("  redis:\n", f"  ? {name}\n  :\n", 1)
    text = text.replace("    - redis\n", f"    - {name}\n", 1)
    path.write_text(text)
    issues = issues_of(path)
    assert [str(i) for i in issues] == [
        f"{path}:{line_of(path, '? rrr')}: services.{'r' * 40}…{'r' * 12}: name "
        "longer than 80 characters"
    ]
    # The issue itself keeps the whole name.
    assert issues[0].path == f"services.{name}"


def test_a_100k_character_image_gives_one_short_error(tmp_path):
    data = minimal()
    data["services"]["redis"]["image"] = "i" * 100_000
    path = write_config(tmp_path, data)
    assert [str(i) for i in issues_of(path)] == [
        f"{path}:{line_of(path, 'image: iii')}: services.redis.image: longer than "
        "255 characters"
    ]


def test_a_long_unknown_reference_is_cut_in_the_middle(tmp_path):
    data = minimal()
    data["services"]["litellm"]["depends_on"] = ["v" * 5000 + "end", "postgres"]
    path = write_config(tmp_path, data)
    text = str(issues_of(path)[0])
    assert text == (
        f"{path}:{line_of(path, '- vvv')}: services.litellm.depends_on: unknown "
        f"service '{'v' * 39}…{'v' * 8}end'"
    )


def test_issue_text_stays_bounded_and_names_the_object():
    value = " ".join(["word"] * 50_000)
    issue = Issue("stacks.yaml", 7, "services.web.command", f"bad {value}")
    text = str(issue)
    assert text.startswith("stacks.yaml:7: services.web.command: bad word word")
    assert len(text) < 500
    assert text.endswith("…")
    assert issue.message == f"bad {value}"


@pytest.mark.django_db
def test_hostile_files_leave_the_database_untouched(tmp_path):
    data = minimal()
    data["services"]["redis"]["image"] = "i" * 100_000
    path = write_config(tmp_path, data)
    with pytest.raises(ConfigError):
        import_configs(path)
    assert all(count == 0 for count in row_counts().values())
