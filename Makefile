# The one way in (STYLE rule 11). `make help` lists every target.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3.11
VENV := .venv
LSVENV := .venv-localstack
SCANVENV := .venv-scan
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Some machines' pip configuration names local mirrors that may be absent; pip warns about each
# package. Hide only that warning (pipefail keeps pip's exit status).
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.DEFAULT_GOAL := help
.PHONY: help venv up down demo status test test-unit bench lint typecheck clean \
        synth deploy diff chaos traces

help: ## list every target
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	@echo "[venv] creating $(VENV) for the services, the CLI and the tests (about a minute)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --progress-bar off -q --upgrade pip $(QUIET_PIP)
	@echo "[venv] installing the project and its test tools into $(VENV)..."
	@$(BIN)/pip install --progress-bar off -q -e '.[test]' $(QUIET_PIP)
	@touch $@
	@echo "[venv] $(VENV) ready"

# A tool's environment of its own, from its locked requirements: $(call side_venv,DIR,WHAT)
define side_venv
@echo "[venv] creating $(1) for $(2), with its own pins..."
@test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
@$(1)/bin/pip install --progress-bar off -q --upgrade pip $(QUIET_PIP)
@$(1)/bin/pip install --progress-bar off -q -r $< $(QUIET_PIP)
@touch $@
@echo "[venv] $(1) ready"
endef

$(LSVENV)/.installed: deploy/local/localstack-requirements.txt
	$(call side_venv,$(LSVENV),LocalStack (a few minutes))

$(SCANVENV)/.installed: deploy/aws/scan-requirements.txt
	$(call side_venv,$(SCANVENV),the infrastructure scanner (checkov))

STACK_VENVS := $(BIN)/.installed $(LSVENV)/.installed
venv: $(STACK_VENVS) $(SCANVENV)/.installed ## create the three virtual environments (test does it when needed)

up: $(STACK_VENVS) ## run the whole stack in the foreground: LocalStack, topology, databases, Procfile
	@$(BIN)/python -m deploy.local.up

down: ## stop anything a `make up` left running
	@$(BIN)/python -m deploy.local.down

demo: $(BIN)/.installed ## a narrated scenario of every service and failure path, against `make up`
	@$(BIN)/python -m deploy.local.demo

traces: $(BIN)/.installed ## receive OTLP/HTTP on 127.0.0.1:4318 and print each trace; TRACES_ARGS="--svg DIR"
	@$(BIN)/python -m deploy.local.traces $(TRACES_ARGS)

status: $(BIN)/.installed ## show every queue and DLQ (school status) of SCHOOL_ENV (default dev)
	@AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-http://127.0.0.1:4566} \
	 AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-test} \
	 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/school status

test: venv ## the whole suite on SQLite; DB=postgres make test runs it on PostgreSQL
	@$(BIN)/pytest $(PYTEST_ARGS)

test-unit: $(BIN)/.installed ## unit tests only (no LocalStack, no database)
	@$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# matplotlib (the chart) is the `bench` extra: installed on the first `make bench` only, so the
# services, the tests and CI never carry it.
$(BIN)/.bench-installed: $(BIN)/.installed
	@echo "[venv] installing the bench's chart library (matplotlib) into $(VENV)..."
	@$(BIN)/pip install --progress-bar off -q -e '.[test,bench]' $(QUIET_PIP)
	@touch $@

bench: $(STACK_VENVS) $(BIN)/.bench-installed ## consumers vs raw SQS, calls per hop, API latency (~10 min); BENCH_ARGS, DB=postgres
	@$(BIN)/python -m bench $(BENCH_ARGS)

chaos: $(STACK_VENVS) ## fault-injection run on a stack of its own; CHAOS_EVENTS, CHAOS_SEED, DB=postgres
	@$(BIN)/python -m deploy.local.chaos

lint: $(BIN)/.installed ## ruff on everything
	@$(BIN)/ruff check .

typecheck: $(BIN)/.installed ## mypy on the shared library and the CDK app
	@$(BIN)/mypy shared deploy/aws

# --- AWS (README: Deploying to AWS) ------------------------------------------------------------
# The CDK CLI runs from the npm registry at a pinned version that reads the cloud assembly of
# the pinned aws-cdk-lib (pyproject.toml); it needs Node.js, which jsii needs for synth anyway.
CDK := npx --yes aws-cdk@2.1148.1
DEPLOY_ENV ?= prod
STACKS := platform messaging enrollment payment assignment notification analytics
export DEPLOY_ENV
# jsii prints a long warning on every run under Node 20, which it still runs on (README).
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION ?= 20

synth: $(BIN)/.installed ## synthesize every AWS stack into cdk.out/ (offline, no credentials)
	@command -v node >/dev/null || { echo "make synth: the CDK needs Node.js on PATH" >&2; exit 2; }
	@$(BIN)/python -m deploy.aws.app

deploy: ## cdk deploy of one stack: SERVICE=<service>, or platform / messaging (first)
	$(call cdk,deploy)

diff: ## cdk diff of one stack against what is deployed: SERVICE=<name> as for deploy
	$(call cdk,diff)

define cdk
@case " $(STACKS) " in *" $(SERVICE) "*) ;; *) \
  echo "make $(1): SERVICE must name one stack: $(STACKS) (got '$(SERVICE)')" >&2; exit 2;; esac
@$(MAKE) --no-print-directory synth
@command -v npx >/dev/null || { echo "make $(1): the CDK CLI needs npx (Node.js)" >&2; exit 2; }
@echo "[$(1)] School-$(DEPLOY_ENV)-$(SERVICE) with the CDK CLI ($(CDK))"
@$(CDK) $(1) --app cdk.out School-$(DEPLOY_ENV)-$(SERVICE) --exclusively $(CDK_ARGS)
endef

clean: ## remove var/ (databases, mail, logs), cdk.out/ and the virtual environments
	rm -rf var cdk.out $(VENV) $(LSVENV) $(SCANVENV)
