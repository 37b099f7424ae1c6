# Clinic edge: gateway + HQ. `make demo` runs the whole system locally; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
APT_PACKAGES := mosquitto mosquitto-clients socat chromium postgresql iproute2 faketime mmdebstrap systemd-container openssl fonts-wqy-microhei coturn
STAMP := $(VENV)/.installed
MEDIA_TESTS := tests/integration/media tests/integration/gateway/media tests/e2e/test_call.py

.PHONY: all venv system-deps test test-unit bench demo lint docs clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# System packages the tests and the demo need, installed with apt only when missing.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto mosquitto-clients"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing="$$missing faketime"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	command -v systemd-nspawn >/dev/null || missing="$$missing systemd-container"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	command -v turnserver >/dev/null || missing="$$missing coturn"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# Debian starts mosquitto and postgresql as services on install; tests run their own on free ports
	@# (coturn too: the call tests start their own TURN server).

test: system-deps venv
	@# Two workers, a test file each at a time (module fixtures stay whole): most tests wait on processes and
	@# sockets, so the run takes about half the time on 2 cores.
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=25 $(MEDIA_TESTS:%=--ignore=%) tests
	@# The media tests after the rest, one at a time: two of them at once (each several aiortc peers encoding and
	@# decoding in Python) starved each other's event loops on 2 cores (ICE consent expired, alerts closed late).
	$(PY) -m pytest -q -p no:cacheprovider --durations=10 $(MEDIA_TESTS)

test-unit: venv
	$(PY) -m pytest -q tests/unit

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	cd ansible && ../$(VENV)/bin/ansible-lint --offline --profile production

bench: system-deps venv
	$(PY) -m bench

demo: system-deps venv
	$(PY) -m bench.demo

clean:
	rm -rf $(VENV) run .pytest_cache .hypothesis

docs: venv
	$(PY) -m docs.update_readme
