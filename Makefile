.PHONY: setup test demo images

# Install packages, start dockerd and redis, create .venv, build the stand-in images.
setup:
	scripts/setup.sh

# Extra pytest arguments: make test ARGS="tests/images -k qdrant"
test:
	scripts/test.sh $(ARGS)

demo:
	scripts/demo.sh

# Rebuild what changed under configs/images/ (cached by content hash).
images:
	@[ -x .venv/bin/python ] || scripts/setup.sh
	.venv/bin/python scripts/build_images.py

# --- Stacks ------------------------------------------------------------------
# make start-core [ENVIRONMENT=demo] [PORTAL_USER=admin] [STACK_ARGS=...]
# and stop-, restart-, status-, logs-, stats-, diff- for each of the six stacks
# (stats: one resource sample per container; diff: what a start would change,
# exit status 1 when it would change anything). They run
# `manage.py stack` (an operation with its log, lock and audit trail);
# STACK_ARGS passes more options, e.g. "--with-dependencies", "--service
# postgres", "--remove" or "--enqueue --wait". Without PORTAL_USER the
# command acts as the system user (PORTAL_SYSTEM_USER, default portal-system),
# which scripts/demo.sh creates as Operator of the demo environment only: any
# other ENVIRONMENT needs PORTAL_USER=<a user with a role there>.
STACKS := core inference ai ui testing monitoring
ENVIRONMENT ?= demo
PORTAL_USER ?=
STACK_ARGS ?=
STACK_CMD = .venv/bin/python manage.py stack
STACK_OPTS = --env $(ENVIRONMENT) $(if $(PORTAL_USER),--user $(PORTAL_USER)) $(STACK_ARGS)

.PHONY: $(foreach verb,start stop restart status logs stats diff,$(addprefix $(verb)-,$(STACKS)))

$(addprefix start-,$(STACKS)): start-%:
	$(STACK_CMD) start $* $(STACK_OPTS)

$(addprefix stop-,$(STACKS)): stop-%:
	$(STACK_CMD) stop $* $(STACK_OPTS)

$(addprefix restart-,$(STACKS)): restart-%:
	$(STACK_CMD) restart $* $(STACK_OPTS)

$(addprefix status-,$(STACKS)): status-%:
	$(STACK_CMD) status $* $(STACK_OPTS)

$(addprefix logs-,$(STACKS)): logs-%:
	$(STACK_CMD) logs $* --follow $(STACK_OPTS)

$(addprefix stats-,$(STACKS)): stats-%:
	$(STACK_CMD) stats $* $(STACK_OPTS)

$(addprefix diff-,$(STACKS)): diff-%:
	$(STACK_CMD) diff $* $(STACK_OPTS)

# --- Pages -------------------------------------------------------------------
# make test-pages: the pages in chromium (the operator's journey, a viewer's
# 403, an admin's console, every page per role at 1400 and 420 px); every
# page's screenshot lands in .state/screenshots/ui/.
.PHONY: test-pages
test-pages:
	scripts/test.sh tests/browser/test_operator_console.py tests/browser/test_page_sizes.py $(ARGS)

# --- Backups -----------------------------------------------------------------
# make backup-status|backup-full|backup-list|backup-schedule [ENVIRONMENT=demo]
# make backup-service SERVICE=postgres [BACKUP_TYPE=full|schema|data] [ENVIRONMENT=demo]
# They run `manage.py backup <action> --env $(ENVIRONMENT)`; BACKUP_TYPE is the
# service's strategy (postgres full/schema/data, redis rdb/aof, ...).
# BACKUP_ARGS passes more options, e.g. "--backup-type differential",
# "--enqueue --wait", "--status failed --limit 100". PORTAL_USER as for stacks.
# backup-status exits non-zero when a scheduled backup is overdue, backup-full
# when any service's backup failed. `make crontab` prints the cron lines of
# every environment's schedule; CRONTAB_ARGS="--install" installs them.
SERVICE ?=
BACKUP_TYPE ?=
BACKUP_ARGS ?=
CRONTAB_ARGS ?=
BACKUP_CMD = .venv/bin/python manage.py backup
BACKUP_OPTS = --env $(ENVIRONMENT) $(if $(PORTAL_USER),--user $(PORTAL_USER)) $(BACKUP_ARGS)

.PHONY: backup-status backup-full backup-service backup-list backup-schedule backup-verify backup-alerts crontab

backup-status:
	$(BACKUP_CMD) status $(BACKUP_OPTS)

backup-full:
	$(BACKUP_CMD) full $(BACKUP_OPTS)

backup-service:
	@[ -n "$(SERVICE)" ] || { echo "usage: make backup-service SERVICE=<service> [BACKUP_TYPE=<strategy>] [ENVIRONMENT=<env>]" >&2; exit 2; }
	$(BACKUP_CMD) service --service $(SERVICE) $(if $(BACKUP_TYPE),--type $(BACKUP_TYPE)) $(BACKUP_OPTS)

backup-list:
	$(BACKUP_CMD) list $(BACKUP_OPTS)

backup-schedule:
	$(BACKUP_CMD) schedule $(BACKUP_OPTS)

# make backup-verify [ENVIRONMENT=demo] [SUBSET=auto|n/N|all|none]: check the
# repositories and re-read the next group of packs; non-zero on damage.
SUBSET ?= auto
backup-verify:
	$(BACKUP_CMD) verify --subset $(SUBSET) $(BACKUP_OPTS)

# make backup-alerts [ENVIRONMENT=demo]: open and clear the backup-age (RPO)
# alerts, notifying each change once; non-zero while one is open.
backup-alerts:
	$(BACKUP_CMD) alerts $(BACKUP_OPTS)

crontab:
	.venv/bin/python manage.py crontab $(CRONTAB_ARGS)
