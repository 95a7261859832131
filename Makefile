# The two commands a newcomer needs: `make demo` and `make test`. Both start the real services
# (PostgreSQL, Kafka, schema registry) with scripts/services first; that is idempotent and takes
# seconds when they are already up.
.PHONY: test test-unit test-integration soak soak-short test-pg-versions fuzz fuzz-smoke demo build lint check-monitoring services-up services-down bench

GO ?= go
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e /test/ -e /bench)

build:
	$(GO) build -o bin/procon-cdc ./cmd/procon-cdc

test: lint check-monitoring test-unit fuzz-smoke test-integration soak-short test-pg-versions

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The alert rules and their unit tests; the Grafana dashboard's JSON and queries and the metric
# reference of docs/monitoring.md against metrics/*.go. promtool is in Debian's prometheus
# package (.ci/run installs it).
check-monitoring:
	@command -v promtool >/dev/null || { echo "promtool is missing: install Debian's prometheus package (see .ci/run) or Prometheus's release"; exit 1; }
	promtool check rules docs/monitoring/procon-rules.yml
	promtool test rules docs/monitoring/procon-rules.test.yml
	scripts/check-monitoring docs/monitoring/grafana-dashboard.json docs/monitoring/procon-rules.yml docs/monitoring.md

# With the services' environment: a few package tests (engine's caches through reconnects) need
# the real services, and under CI=true a test that lacks them fails rather than skips.
test-unit: services-up
	eval "$$(scripts/services env)" && $(GO) test -race -count=1 $(UNIT_PKGS)

# Every fuzz target for a few seconds each (scripts/fuzz); `make fuzz FUZZTIME=10m` is a long
# campaign, which prints each target's executions. FUZZ_PARALLEL is -parallel (default 1).
FUZZ_SMOKE_TIME ?= 3s
FUZZTIME ?= 10m
FUZZ_PARALLEL ?= 1

fuzz-smoke:
	GO=$(GO) scripts/fuzz $(FUZZ_SMOKE_TIME) $(FUZZ_PARALLEL)

fuzz:
	GO=$(GO) scripts/fuzz $(FUZZTIME) $(FUZZ_PARALLEL)

test-integration: services-up
	eval "$$(scripts/services env)" && $(GO) test -p 1 -count=1 -timeout 25m ./test/...

# The tests PostgreSQL's version can change, against the oldest and newest supported versions
# (the rest of make test runs on 15): each version's server is started beside the running
# services on its own port (scripts/test-pg-versions), tested and stopped: about 2.5 minutes for
# both on an idle 2-core machine. The Debezium differential test (every type and event kind,
# byte for byte); kill -9 (TestKill9's twelve kills, with a tail another pipeline wrote, and
# three standbys taking over from ten SIGKILLs); faults (a PostgreSQL restart mid-stream, a
# Kafka outage, an idle slot's WAL); and what 13 refuses. Exactly-once's fifty kills test
# Procon's side, which no server version changes.
PG_VERSIONS ?= 13 18
PG_VERSIONS_COMPAT ?= ^TestDebeziumCompat$$
# The differential test's pipelines there: json (keys hashed to 3 partitions), schemas
# (transaction metadata, heartbeats, messages, every table) and modes-b (skipped.operations:
# Debezium's narrower publication, a message prefix filter) see what a server version changes;
# the other modes only convert the same text differently, and run on 15. All seven pass on 13
# and 18 too (PG_VERSIONS_COMPAT_PIPELINES= runs them: about 40 s more per version).
PG_VERSIONS_COMPAT_PIPELINES ?= json,schemas,modes-b
PG_VERSIONS_INTEGRATION ?= ^(TestKill9|TestKill9TwoPipelinesOneTopic|TestStandbyTakeover|TestKafkaDown|TestResumeIgnoresForeignTail|TestPostgresRestart|TestIdleSlot|TestMessageSettingsRefusedBefore14)$$

test-pg-versions: services-up
	GO=$(GO) PROCON_COMPAT_PIPELINES=$(PG_VERSIONS_COMPAT_PIPELINES) scripts/test-pg-versions "$(PG_VERSIONS)" '$(PG_VERSIONS_COMPAT)' '$(PG_VERSIONS_INTEGRATION)'

# A mixed workload through two procon-cdc (at-least-once and exactly-once) while a fault is
# injected every 20-60 s, then the full check (docs/soak.md). SOAK_SEED replays a run's random
# choices (the seed is printed); the report and plot go to SOAK_OUT.
SOAK_DURATION ?= 30m
SOAK_SEED ?=
SOAK_OUT ?= $(CURDIR)/docs/soak
SOAK_TIMEOUT ?= 2h

soak: services-up
	eval "$$(scripts/services env)" && SOAK_DURATION=$(SOAK_DURATION) SOAK_SEED=$(SOAK_SEED) SOAK_OUT=$(SOAK_OUT) \
		$(GO) test -p 1 -count=1 -v -timeout $(SOAK_TIMEOUT) -run '^TestSoak$$' ./test/integration/

# make test's soak: 3 minutes (about 3.5 with the checks), its report in a temporary directory.
soak-short:
	out=$$(mktemp -d) && $(MAKE) soak SOAK_DURATION=3m SOAK_OUT=$$out SOAK_TIMEOUT=15m

demo: services-up
	scripts/demo

# procon-cdc against Debezium and pg_recvlogical, side by side (bench/README.md). A quick run:
# make bench BENCH_SCALE=0.1; some scenarios: make bench SCENARIOS="drain-small steady".
bench:
	bench/run $(SCENARIOS)

services-up:
	scripts/services up

services-down:
	scripts/services down
