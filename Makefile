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
# and stop-, restart-, status-, logs- for each of the six stacks. They run
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

.PHONY: $(foreach verb,start stop restart status logs,$(addprefix $(verb)-,$(STACKS)))

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

.PHONY: backup-status backup-full backup-service backup-list backup-schedule crontab

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

crontab:
	.venv/bin/python manage.py crontab $(CRONTAB_ARGS)

# --- Credentials -------------------------------------------------------------
# make validate-credentials [ENVIRONMENT=demo] [STRICT=1] [PORTAL_USER=U]
# runs `manage.py check_credentials --env $(ENVIRONMENT)`: every variable the
# environment's services and backup tiers refer to is set, and no credential is
# empty, a well-known value, too short or shared between services. Exit 1 when a
# start would be refused (any problem in a protected environment; with STRICT=1
# any problem), 2 when the check cannot run. validate-credentials-<env> (the
# seed's names: validate-credentials-prod, -staging, ...) is the strict check of
# <env> (a name or an alias). CREDENTIALS_ARGS passes more options ("--json",
# "--stack core"). `make scan-secrets` runs `manage.py scan_secrets $(SCAN_ARGS)`:
# hard-coded secrets in configs/, rendered/ and the stored configuration.
STRICT ?=
CREDENTIALS_ARGS ?=
SCAN_ARGS ?=
CREDENTIALS_CMD = .venv/bin/python manage.py check_credentials

.PHONY: validate-credentials scan-secrets

validate-credentials:
	$(CREDENTIALS_CMD) --env $(ENVIRONMENT) $(if $(PORTAL_USER),--user $(PORTAL_USER)) $(if $(STRICT),--strict) $(CREDENTIALS_ARGS)

validate-credentials-%:
	$(CREDENTIALS_CMD) --env $* --strict $(if $(PORTAL_USER),--user $(PORTAL_USER)) $(CREDENTIALS_ARGS)

scan-secrets:
	.venv/bin/python manage.py scan_secrets $(SCAN_ARGS)
