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
