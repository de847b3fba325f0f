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
