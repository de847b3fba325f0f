"""Verification of the repositories with real restic: damage found and
attributed to exactly the records that need it, and the ledger's rotation."""

import os
from pathlib import Path

import pytest
from django.core.management import call_command

from backups.choices import ProofStatus
from backups.models import BackupConfigValue, BackupRecord, RepositoryCheck
from backups.operations import backup_service, verify_backups
from backups.restic import pack_group
from backups.tiers import repository
from backups.verify import groups_for, next_subset, parse_subset
from portal.operations import PlanError, run_inline
from stacks.models import Service
from tests.backups.test_runs import only_local, seed

pytestmark = [
    pytest.mark.django_db(transaction=True),
]

MORE = """
CREATE TABLE more_blobs (id int PRIMARY KEY, data bytea);
INSERT INTO more_blobs
  SELECT i, decode(string_agg(md5('more' || i::text || '-' || j::text), ''), 'hex')
    FROM generate_series(1, 20000) i, generate_series(1, 64) j GROUP BY i;
"""


def backup(env, operator):
    operation = run_inline(
        backup_service(
            env, Service.objects.get(name="postgres"), user=operator, enqueue=False
        )
    )
    assert operation.status == "succeeded", operation.error
    return BackupRecord.objects.get(operation=operation, tier__name="local")


def verify(env, operator, **kwargs):
    return run_inline(verify_backups(env, user=operator, enqueue=False, **kwargs))


def pack_file(repo, pack_id):
    return Path(repo.url) / "data" / pack_id[:2] / pack_id


def set_window(days, frequency="daily"):
    row = BackupConfigValue.objects.get(key="verification")
    row.value = {
        **row.value,
        "integrity": {
            **row.value.get("integrity", {}),
            "read_all_within_days": days,
            "check_frequency": frequency,
        },
    }
    row.save()


@pytest.fixture
def two_backups(running, operator, docker_client):
    """Back up postgres twice, with new data between; return (env, first,
    second, the packs only the second wrote)."""
    env = running("postgres")
    only_local(env)
    seed(docker_client, env)
    first = backup(env, operator)
    repo = repository(first.tier, env)
    before = repo.packs()
    seed(docker_client, env, MORE)
    second = backup(env, operator)
    after = repo.packs()
    new = {p: info for p, info in after.items() if p not in before}
    assert any(info.data_blobs for info in new.values())
    return env, first, second, new


@pytest.mark.docker
@pytest.mark.slow
def test_a_deleted_pack_fails_verification_and_damages_exactly_its_records(
    two_backups, operator
):
    env, first, second, new = two_backups
    repo = repository(first.tier, env)
    passed = verify(env, operator, subset="none")
    assert passed.status == "succeeded", passed.error
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.verified and second.verified

    victim = next(p for p, info in new.items() if info.data_blobs)
    os.remove(pack_file(repo, victim))

    failed = verify(env, operator, subset="none")
    assert failed.status == "failed"
    assert victim[:12] in failed.error
    check = RepositoryCheck.objects.get(operation=failed)
    assert check.status == ProofStatus.FAILED
    assert check.damaged_packs == [victim]
    assert check.damaged_records == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.damaged is None and first.restorable
    assert second.damaged is not None and not second.restorable
    assert victim[:12] in second.damage and "does not exist" in second.damage
    # The copies in the other tiers are intact and stay so.
    assert not BackupRecord.objects.filter(damaged__isnull=False).exclude(pk=second.pk)


@pytest.mark.docker
@pytest.mark.slow
def test_a_corrupt_pack_is_found_only_by_reading_its_group(two_backups, operator):
    env, first, second, new = two_backups
    repo = repository(first.tier, env)
    victim = max((p for p, i in new.items() if i.data_blobs), key=lambda p: new[p].size)
    path = pack_file(repo, victim)
    path.chmod(0o600)
    with open(path, "r+b") as f:
        f.seek(new[victim].size // 2)
        f.write(b"\0corrupt\0")

    groups = 4
    own = pack_group(victim, groups)
    other = own % groups + 1
    structure = verify(env, operator, subset=f"{other}/{groups}")
    # Another group's packs read fine: the damage is not seen yet.
    assert structure.status == "succeeded", structure.error
    second.refresh_from_db()
    assert second.damaged is None

    found = verify(env, operator, subset=f"{own}/{groups}")
    assert found.status == "failed"
    check = RepositoryCheck.objects.get(operation=found)
    assert check.damaged_packs == [victim]
    second.refresh_from_db()
    first.refresh_from_db()
    assert second.damaged is not None and "does not match" in second.damage
    assert first.damaged is None


@pytest.mark.docker
@pytest.mark.slow
def test_the_ledger_reaches_every_pack_over_one_rotation(
    running, operator, docker_client, capsys
):
    env = running("postgres")
    only_local(env)
    set_window(3)
    seed(docker_client, env)
    record = backup(env, operator)
    packs = repository(record.tier, env).packs()
    shares, subsets = [], []
    for _run in range(3):
        call_command("backup", "verify", "--env", env.name, "--user", operator.username)
        check = RepositoryCheck.objects.filter(environment=env).first()
        assert check.status == ProofStatus.PASSED, check.error
        subsets.append(check.subset)
        shares.append(check.coverage)
        group = parse_subset(check.subset)[0]
        expected = {p[:16] for p in packs if pack_group(p, 3) == group}
        assert set(check.packs_read) == expected
    assert subsets == ["1/3", "2/3", "3/3"]
    assert shares == sorted(shares) and shares[-1] == 1.0
    assert check.covered_packs == check.packs_total == len(packs)
    assert "ledger 100%" in capsys.readouterr().out
    # The fourth run starts the next turn.
    assert next_subset(env, record.tier, 3) == "1/3"


def test_groups_and_subsets(db):
    assert groups_for(7) == 7
    assert groups_for(7, "weekly") == 1
    assert groups_for(30, "hourly") == 256
    assert parse_subset("3/7") == (3, 7)
    for bad in ("0/7", "8/7", "1/257", "x", "3-7"):
        with pytest.raises(PlanError, match="Subset"):
            parse_subset(bad)
