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
.PHONY: help venv browser up down demo status test test-unit bench lint typecheck clean \
        synth deploy diff chaos traces screenshots

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

# The web console's browser test drives Debian's chromium through its chromedriver
# (tests/support/browser.py), never a browser that Selenium downloads. Run as root (CI, the
# project's machines) this installs the two packages when either binary is missing; otherwise it
# prints the command and the test skips itself. Phony, but only two file tests once installed.
BROWSER_PKGS := chromium chromium-driver
BROWSER_APT := apt-get -o DPkg::Lock::Timeout=120
browser: ## Debian's chromium and chromedriver for the console's browser test (installs as root)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "[browser] /usr/bin/chromium or /usr/bin/chromedriver is missing: the console's browser test will be skipped."; \
	  echo "[browser] to run it, install them: sudo apt-get update && sudo apt-get install -y --no-install-recommends $(BROWSER_PKGS)"; \
	  exit 0; \
	fi; \
	echo "[browser] installing Debian's chromium and chromium-driver for the console's browser test (about a minute)..."; \
	log=$$(mktemp); \
	if ! { $(BROWSER_APT) -q update && DEBIAN_FRONTEND=noninteractive \
	       $(BROWSER_APT) -q install -y --no-install-recommends $(BROWSER_PKGS); } >"$$log" 2>&1; then \
	  cat "$$log"; rm -f "$$log"; echo "[browser] apt-get failed (above)" >&2; exit 1; \
	fi; \
	rm -f "$$log"; \
	echo "[browser] $$(/usr/bin/chromium --version 2>/dev/null) and its chromedriver ready"

up: $(STACK_VENVS) ## run the whole stack in the foreground: LocalStack, topology, databases, Procfile
	@$(BIN)/python -m deploy.local.up

down: ## stop anything a `make up` left running
	@$(BIN)/python -m deploy.local.down

demo: $(BIN)/.installed ## a narrated scenario of every service and failure path, against `make up`
	@$(BIN)/python -m deploy.local.demo

traces: $(BIN)/.installed ## receive OTLP/HTTP on 127.0.0.1:4318 and print each trace; TRACES_ARGS="--svg DIR"
	@$(BIN)/python -m deploy.local.traces $(TRACES_ARGS)

# The docs' pictures of the console, taken by its browser test on a stack of its own.
screenshots: $(STACK_VENVS) browser ## the console's browser test, saving its screenshots into docs/
	@CONSOLE_SCREENSHOTS=docs $(BIN)/pytest tests/e2e/test_console.py -k browser -q -p no:cacheprovider
	@ls -l docs/console-*.png

# The documentation site (mkdocs.yml, docs/): strict, so a broken link or anchor fails; offline,
# as no plugin of mkdocs.yml fetches anything. `make lint` builds it too.
.PHONY: docs
docs: $(BIN)/.installed ## build the documentation site into site/ (mkdocs --strict, offline); lint runs it
	@NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site
	@echo "[docs] site/ built: open site/index.html"
lint: docs

status: $(BIN)/.installed ## show every queue and DLQ (school status) of SCHOOL_ENV (default dev)
	@AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-http://127.0.0.1:4566} \
	 AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-test} \
	 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/school status

test: venv browser ## the whole suite on SQLite; DB=postgres make test runs it on PostgreSQL
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

# The AsyncAPI specification's own JSON Schema, which docs/asyncapi.json is checked against
# (deploy/asyncapi.py): @asyncapi/specs from the npm registry at a pinned version (the module's
# SPECS_VERSION), its tarball checked against a pinned SHA-256, only the 3.0.0 schema and the
# licence kept, in var/ (git-ignored: fetched, never committed). lint and the tests fetch it.
ASYNCAPI_SPECS := 6.11.1
ASYNCAPI_SPECS_SHA256 := 01af8744dc33c0c7eb2e908f6a955319ee58b70ecadc9387d1aeb16c0cd28928
ASYNCAPI_SCHEMA := var/asyncapi-specs-$(ASYNCAPI_SPECS)/3.0.0-without-id.json
$(ASYNCAPI_SCHEMA):
	@command -v npm >/dev/null || { echo "[asyncapi] fetching @asyncapi/specs needs npm (Node.js)" >&2; exit 2; }
	@echo "[asyncapi] fetching @asyncapi/specs@$(ASYNCAPI_SPECS) from the npm registry..."
	@rm -rf $(@D).part && mkdir -p $(@D).part
	@cd $(@D).part && npm pack --silent @asyncapi/specs@$(ASYNCAPI_SPECS) >/dev/null
	@echo "$(ASYNCAPI_SPECS_SHA256)  $(@D).part/asyncapi-specs-$(ASYNCAPI_SPECS).tgz" | sha256sum --check --quiet
	@tar -xzmf $(@D).part/asyncapi-specs-$(ASYNCAPI_SPECS).tgz -C $(@D).part package/LICENSE 'package/schemas/3.0.0-without-$$id.json'
	@mkdir -p $(@D) && mv $(@D).part/package/LICENSE $(@D)/LICENSE
	@mv '$(@D).part/package/schemas/3.0.0-without-$$id.json' $@ && rm -rf $(@D).part
	@echo "[asyncapi] $@ ready"
test test-unit lint: $(ASYNCAPI_SCHEMA)

lint: $(BIN)/.installed ## ruff, the import contracts, the AsyncAPI document and the docs site
	@$(BIN)/ruff check .
	@$(BIN)/lint-imports --no-cache
	@$(BIN)/python -m deploy.asyncapi --check --spec-schema $(ASYNCAPI_SCHEMA)

typecheck: $(BIN)/.installed ## mypy on the library, the services, deploy, the bench and the unit tests
	@$(BIN)/mypy shared services deploy bench tests/unit

# --- AWS (docs/aws.md) -------------------------------------------------------------------------
# The CDK CLI runs from the npm registry at a pinned version that reads the cloud assembly of
# the pinned aws-cdk-lib (pyproject.toml); it needs Node.js, which jsii needs for synth anyway.
CDK := npx --yes aws-cdk@2.1148.1
DEPLOY_ENV ?= prod
STACKS := platform identity messaging enrollment payment assignment notification analytics console
export DEPLOY_ENV
# The edge (docs/aws.md, the edge and the identity provider): an ACM certificate for *.DOMAIN_NAME in
# the deployment's region. Both or neither; without them every load balancer is internal.
export CERTIFICATE_ARN DOMAIN_NAME
# jsii prints a long warning on every run under Node 20, which it still runs on (docs/aws.md).
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION ?= 20

synth: $(BIN)/.installed ## synthesize every AWS stack into cdk.out/ (offline); CERTIFICATE_ARN, DOMAIN_NAME
	@command -v node >/dev/null || { echo "make synth: the CDK needs Node.js on PATH" >&2; exit 2; }
	@$(BIN)/python -m deploy.aws.app

deploy: ## cdk deploy of one stack: SERVICE=<service>, or platform / identity / messaging (first)
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
