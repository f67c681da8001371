# Two commands on a fresh machine: `make run` and `make test`. Each makes .venv on first use.
# `make run` installs the runtime only; `make test` adds the dev tools (linters, test
# libraries, validators) on top. EXTRAS=postgres,redis adds those extras to `make run`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
EXTRAS ?=

.PHONY: run test lint typecheck unit bench bench-replicas soak flame clean browser systemd caddy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	touch $(RUNTIME)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUNTIME)

run: $(RUNTIME)
	$(BIN)/open-clanker gateway

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Browser tests need Debian's chromium; CI runs as root and installs it here.
browser:
	@test -x /usr/bin/chromium || { test "$$(id -u)" = 0 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "chromium missing: browser tests will be skipped (run as root to install it)"

# tests/test_deploy_manifests.py checks the unit with Debian's systemd-analyze (no systemd
# needs to run); installed here like chromium. Without it that test fails and says so.
systemd:
	@command -v systemd-analyze >/dev/null || { test "$$(id -u)" = 0 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null; } || echo "systemd-analyze missing: the systemd unit test will fail (run as root to install it)"

# tests/test_deployment_replicas.py validates deploy/Caddyfile with Debian's caddy and runs it
# in front of two gateways; installed here like systemd. Without it those two tests skip.
caddy:
	@command -v caddy >/dev/null || { test "$$(id -u)" = 0 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends caddy >/dev/null; } || echo "caddy missing: the live Caddyfile tests will be skipped (run as root to install it)"

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck browser systemd caddy unit

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# 1, 2 and 3 replicas on one PostgreSQL + Redis (a few minutes; docs/replicas.md). Needs
# OPENCLAW_BENCH_POSTGRES_URL and OPENCLAW_BENCH_REDIS_URL (or the OPENCLAW_TEST_ ones).
bench-replicas: $(STAMP)
	$(BIN)/python -m bench.replicas

# 100,000 messages into one gateway, RSS and p99 per 10,000 (docs/benchmarks.md, "Soak").
soak: $(STAMP)
	$(BIN)/python -m bench.soak

# py-spy flame graph of the gateway during the sequential run; FLAME=docs/flame-before.svg to
# write the other one.
FLAME ?= docs/flame-after.svg
flame: $(STAMP)
	@test -x $(BIN)/py-spy || $(BIN)/python -m pip install --quiet py-spy
	$(BIN)/python -m bench.flame $(FLAME)

clean:
	rm -rf $(VENV) build *.egg-info
