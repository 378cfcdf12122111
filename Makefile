# mdrelay: one entry point for people and CI.
#   make run    build (release) and run the relay on the built-in demo config (no internet)
#   make test   everything CI checks: format, lints, docs, all tests (installs nats-server from
#               the Debian packages when it is missing: the NATS bridge tests run a real one)
#   make bench  criterion micro-benchmarks (results in target/criterion), then the end-to-end
#               latency harness (table on stdout; e2e.md, e2e.json, latency.svg in target/bench-report)
#   make bench-idle  relay latency per consumer idle strategy (about 2 minutes)

CARGO ?= cargo
CONFIG ?= config/default.toml
# Cargo features every target builds with (`nats`: the NATS bridge).
FEATURES ?= nats

.PHONY: run build test fmt lint doc unit nats-server bench bench-idle clean

run: build
	./target/release/mdrelay run --config $(CONFIG)

build:
	$(CARGO) build --release --locked --features "$(FEATURES)"

test: fmt lint doc nats-server unit

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --locked --all-targets --features "$(FEATURES)" -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps --quiet --features "$(FEATURES)"

unit:
	$(CARGO) test --locked --all-targets --features "$(FEATURES)"

# The NATS bridge's integration tests start a real nats-server (Debian package; /usr/sbin).
nats-server:
	@command -v nats-server >/dev/null || test -x /usr/sbin/nats-server || \
	  (export DEBIAN_FRONTEND=noninteractive; \
	   (apt-get update -qq && apt-get install -y -qq nats-server) || \
	   (sudo -E apt-get update -qq && sudo -E apt-get install -y -qq nats-server))

bench:
	$(CARGO) bench --locked --bench codec --bench parse --bench hop --bench fanout
	$(CARGO) bench --locked --bench e2e
	@echo "bench report: target/criterion/ (micro-benchmarks), target/bench-report/ (e2e.md, e2e.json, latency.svg)"

bench-idle: build
	benches/idle_latency.sh

clean:
	$(CARGO) clean

.PHONY: fuzz soak

# Property-based fuzzing of the decoder, venue parsers, request parser and config loader
# (tests/it/fuzz.rs) with many more cases than `make test` runs (about 5 minutes here).
FUZZ_CASES ?= 20000
fuzz:
	MDRELAY_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --locked --release --test it fuzz

# Soak: the relay binary at full speed with reconnecting feeds and a slow subscriber; resident
# memory and descriptors must stay flat (tests/it/soak.rs; 60 s of it run in `make test`).
SOAK_SECS ?= 300
soak:
	MDRELAY_SOAK_SECS=$(SOAK_SECS) $(CARGO) test --locked --release --test it soak -- --nocapture
