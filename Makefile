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

# --- Wipes -------------------------------------------------------------------
# make wipe-core [ENVIRONMENT=demo] [CONFIRM=demo/core] [DRY_RUN=1]
#   and wipe-inference, wipe-ai, wipe-ui, wipe-monitoring, wipe-testing-stack:
#   the stack's containers, volumes and networks;
# make wipe-db|wipe-cache|wipe-models|wipe-logs|wipe-test-results
#   [ENVIRONMENT=demo] [CONFIRM=demo/db]: the files of that data type's volumes;
# make wipe-dev|wipe-staging|wipe-prod|wipe-testing [CONFIRM=<env>/all]: every
#   container, volume and network of that environment.
# Without CONFIRM they print the exact plan and what to type, and change
# nothing; DRY_RUN=1 runs the wipe as a dry run. In a protected environment
# (production) the wipe then waits for another Approver (make approvals).
CONFIRM ?=
WIPE_CMD = .venv/bin/python manage.py wipe
WIPE_OPTS = $(if $(CONFIRM),--confirm $(CONFIRM)) $(if $(DRY_RUN),--dry-run) $(if $(PORTAL_USER),--user $(PORTAL_USER))
WIPE_STACKS := core inference ai ui monitoring
WIPE_DATA := db cache models logs test-results
WIPE_ENVIRONMENTS := dev=development staging=staging prod=production testing=testing

.PHONY: $(addprefix wipe-,$(WIPE_STACKS)) wipe-testing-stack $(addprefix wipe-,$(WIPE_DATA)) wipe-dev wipe-staging wipe-prod wipe-testing approvals

$(addprefix wipe-,$(WIPE_STACKS)): wipe-%:
	$(WIPE_CMD) stack $* --env $(ENVIRONMENT) $(WIPE_OPTS)

wipe-testing-stack:
	$(WIPE_CMD) stack testing --env $(ENVIRONMENT) $(WIPE_OPTS)

$(addprefix wipe-,$(WIPE_DATA)): wipe-%:
	$(WIPE_CMD) data $* --env $(ENVIRONMENT) $(WIPE_OPTS)

wipe-dev wipe-staging wipe-prod wipe-testing: wipe-%:
	$(WIPE_CMD) environment --env $(patsubst $*=%,%,$(filter $*=%,$(WIPE_ENVIRONMENTS))) $(WIPE_OPTS)

# make approvals [PORTAL_USER=approver]: what waits for that user's approval;
# approve with `manage.py approve_operation <id> --user <approver>`.
approvals:
	.venv/bin/python manage.py approve_operation --list $(if $(PORTAL_USER),--user $(PORTAL_USER))
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

.PHONY: backup-status backup-full backup-service backup-list backup-schedule backup-verify backup-alerts backup-drill backup-restore crontab

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

# make backup-drill SERVICE=postgres [RECORD=<id>] [ENVIRONMENT=demo]: restore
# the newest (or the named) backup into a throw-away copy of the service and
# compare it with its manifest; non-zero when it does not match. Without
# SERVICE, every service of verification.restore_test.test_services.
RECORD ?=
SNAPSHOT ?=
CONFIRM ?=
DRY_RUN ?=
backup-drill:
	$(BACKUP_CMD) drill $(if $(SERVICE),--service $(SERVICE),--scheduled) $(if $(RECORD),--record $(RECORD)) $(BACKUP_OPTS)

# make backup-restore SERVICE=postgres (RECORD=<id> | SNAPSHOT=<id>)
#   [ENVIRONMENT=demo] [DRY_RUN=1] [CONFIRM=<env>/<service>]: restore a backup
# onto the live service. Without CONFIRM it prints the exact plan and what to
# type, and changes nothing; DRY_RUN=1 runs it as a dry run. In a protected
# environment it waits for another Approver.
backup-restore:
	@[ -n "$(SERVICE)" ] && [ -n "$(RECORD)$(SNAPSHOT)" ] || { echo "usage: make backup-restore SERVICE=<service> (RECORD=<id> | SNAPSHOT=<id>) [ENVIRONMENT=<env>] [DRY_RUN=1] [CONFIRM=<env>/<service>]" >&2; exit 2; }
	$(BACKUP_CMD) restore --service $(SERVICE) $(if $(RECORD),--record $(RECORD)) $(if $(SNAPSHOT),--snapshot $(SNAPSHOT)) $(if $(DRY_RUN),--dry-run) $(if $(CONFIRM),--confirm $(CONFIRM)) $(BACKUP_OPTS)

crontab:
	.venv/bin/python manage.py crontab $(CRONTAB_ARGS)

# --- Retention ---------------------------------------------------------------
# make retention-status|retention-test|retention-cleanup|retention-schedule|retention-backup [ENVIRONMENT=demo]
# make retention-cleanup-service SERVICE=postgres [ENVIRONMENT=demo]
# They run `manage.py retention <action> --env $(ENVIRONMENT)`. retention-test
# is the dry run: it measures what would go and what stays and deletes
# nothing. retention-cleanup backs up first when the policy says so, and in a
# protected environment waits for an approval. RETENTION_ARGS passes more
# options, e.g. "--enqueue --wait". PORTAL_USER as for stacks.
RETENTION_ARGS ?=
RETENTION_CMD = .venv/bin/python manage.py retention
RETENTION_OPTS = --env $(ENVIRONMENT) $(if $(PORTAL_USER),--user $(PORTAL_USER)) $(RETENTION_ARGS)

.PHONY: retention-status retention-test retention-cleanup retention-cleanup-service retention-schedule retention-backup

retention-status:
	$(RETENTION_CMD) status $(RETENTION_OPTS)

retention-test:
	$(RETENTION_CMD) test $(RETENTION_OPTS)

retention-cleanup:
	$(RETENTION_CMD) cleanup $(RETENTION_OPTS)

retention-cleanup-service:
	@[ -n "$(SERVICE)" ] || { echo "usage: make retention-cleanup-service SERVICE=<service> [ENVIRONMENT=<env>]" >&2; exit 2; }
	$(RETENTION_CMD) cleanup --service $(SERVICE) $(RETENTION_OPTS)

retention-schedule:
	$(RETENTION_CMD) schedule $(RETENTION_OPTS)

retention-backup:
	$(RETENTION_CMD) backup $(RETENTION_OPTS)

# --- GPU status --------------------------------------------------------------
# make gpu-status [ENVIRONMENT=demo]: sample the environment's GPUs once, print
# what holds their memory and store/publish the sample (the page shows it).
# make gpu-sampler: the long-running sampler scripts/demo.sh starts.
# make gpu-probe [GPU_PROBE_ARGS="--docker-host ssh://gpu-01 --json"]: one
# sample from each source (NVML, nvidia-smi, a GPU container); exits 1 when
# none finds a GPU.
GPU_PROBE_ARGS ?=

.PHONY: gpu-status gpu-sampler gpu-probe

gpu-status:
	.venv/bin/python manage.py sample_gpus --once --env $(ENVIRONMENT)

gpu-sampler:
	.venv/bin/python manage.py sample_gpus

gpu-probe:
	scripts/gpu_probe $(GPU_PROBE_ARGS)

# --- Networks ----------------------------------------------------------------
# make check-network-conflicts|validate-networks|check-network-health|cleanup-networks
#     [ENVIRONMENT=demo] [PORTAL_USER=admin] [DRY_RUN=1] [NETWORK_ARGS=...]
# Without ENVIRONMENT on the command line (or in the environment) they run
# for every environment the user may run them in. They exit non-zero on a
# conflict, a failed validation or probe, or a network that could not be
# removed. cleanup-networks removes the portal's orphaned networks; DRY_RUN=1
# only lists them. NETWORK_ARGS passes more options, e.g. "--strict" or
# "--enqueue --wait".
DRY_RUN ?=
NETWORK_ARGS ?=
NETWORK_OPTS = $(if $(filter command line environment environment override,$(origin ENVIRONMENT)),--env $(ENVIRONMENT)) $(if $(PORTAL_USER),--user $(PORTAL_USER)) $(NETWORK_ARGS)

.PHONY: check-network-conflicts validate-networks check-network-health cleanup-networks

check-network-conflicts:
	.venv/bin/python manage.py check_network_conflicts $(NETWORK_OPTS)

validate-networks:
	.venv/bin/python manage.py validate_networks $(NETWORK_OPTS)

check-network-health:
	.venv/bin/python manage.py check_network_health $(NETWORK_OPTS)

cleanup-networks:
	.venv/bin/python manage.py cleanup_networks $(if $(DRY_RUN),--dry-run) $(NETWORK_OPTS)
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
