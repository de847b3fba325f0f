"""Check that the audit log is intact: every hash, every link, no gaps.

    manage.py verify_audit

Prints ``audit log intact: N entries, head <hash>`` and exits 0, or prints
each problem (the entry and what is wrong with it) and exits 1. Safe to run
from cron: it only reads.
"""

from django.core.management import CommandError

from portal.audit import chain_head, verify_chain
from portal.management.base import PortalCommand


class Command(PortalCommand):
    help = "Verify the hash chain of the audit log; exit 1 if it was tampered with."

    def handle(self, *args, **options):
        problems = verify_chain()
        if problems:
            for problem in problems:
                self.stderr.write(str(problem))
            count = len(problems)
            raise CommandError(
                f"audit log broken: {count} problem{'s' if count != 1 else ''}"
            )
        entries, head = chain_head()
        self.stdout.write(
            self.style.SUCCESS(
                f"audit log intact: {entries} entr{'y' if entries == 1 else 'ies'}, "
                f"head {head[:12] or '-'}"
            )
        )
