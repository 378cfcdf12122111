# mdrelay: one entry point for people and CI.
#   make run    build (release) and run the relay on the built-in demo config (no internet)
#   make test   everything CI checks: format, lints, docs, all tests (installs nats-server from
#               the Debian packages when it is missing: the NATS bridge tests run a real one;
#               installs the Python client in target/pyenv: `make pyenv`)
#   make bench  criterion micro-benchmarks (results in target/criterion), then the end-to-end
#               latency harness (table on stdout; e2e.md, e2e.json, latency.svg in target/bench-report)
#   make bench-idle  relay latency per consumer idle strategy (about 2 minutes)
#   make bench-instr instructions per message per stage (parse, encode, queue hop, fan-out) under
#                    valgrind's callgrind: deterministic, unmoved by the neighbours' load
#   make interop     other tools read what mdrelay writes, unchanged (tests/interop/run.sh): a
#                    Python venv in target/interop-venv with pinned PyPI packages (hftbacktest),
#                    then one step per check; about 2 minutes (3.5 the first time, for the venv)
#   make install     after `make build`: the binary, /etc/mdrelay configs, the systemd unit and
#                    its sysusers.d user (PREFIX=/usr/local, SYSCONFDIR=/etc, DESTDIR= for staging);
#                    runs no systemctl. `make uninstall` removes them but keeps configs and data.

CARGO ?= cargo
CONFIG ?= config/default.toml
# Cargo features every target builds with (`nats`: the NATS bridge).
FEATURES ?= nats

.PHONY: run build test fmt lint doc unit nats-server pyenv bench bench-idle bench-instr interop clean

run: build
	./target/release/mdrelay run --config $(CONFIG)

build:
	$(CARGO) build --release --locked --features "$(FEATURES)"

test: fmt lint doc nats-server pyenv unit

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

# The Python client (clients/python) installed in a virtual environment, with pandas (its
# to_pandas()) and websockets (the replay exchange's tests): what tests/it/python.rs runs.
# Redone only when the package's files change (the stamp); python3-venv comes from the Debian
# packages when `python3 -m venv` cannot create a venv with pip. From scratch: about 45 s.
PYENV := target/pyenv
PY_CLIENT := clients/python/pyproject.toml clients/python/README.md \
	clients/python/src/mdrelay_client/py.typed $(wildcard clients/python/src/mdrelay_client/*.py)
pyenv: $(PYENV)/.installed

$(PYENV)/.installed: $(PY_CLIENT)
	@test -x $(PYENV)/bin/pip || python3 -m venv $(PYENV) || { rm -rf $(PYENV); \
	  (export DEBIAN_FRONTEND=noninteractive; \
	   (apt-get update -qq && apt-get install -y -qq python3-venv) || \
	   (sudo -E apt-get update -qq && sudo -E apt-get install -y -qq python3-venv)) && \
	  python3 -m venv $(PYENV); }
	$(PYENV)/bin/pip install --quiet --disable-pip-version-check './clients/python[pandas]' \
	  websockets==17.4
	@touch $@

bench:
	$(CARGO) bench --locked --bench codec --bench parse --bench hop --bench fanout
	$(CARGO) bench --locked --bench e2e
	@echo "bench report: target/criterion/ (micro-benchmarks), target/bench-report/ (e2e.md, e2e.json, latency.svg)"

bench-idle: build
	benches/idle_latency.sh

# Profile `bench-instr` (Cargo.toml): release code with thin LTO, to build in minutes. N messages
# (default 20000); MDRELAY_INSTR_INPUT=<recording> for other Binance lines.
bench-instr:
	$(CARGO) build --locked --profile bench-instr --bin mdrelay
	$(CARGO) build --locked --profile bench-instr --bench instr --message-format=json \
	  | sed -n 's/.*"executable":"\([^"]*instr-[^"]*\)".*/\1/p' > target/bench-instr/instr.path
	benches/bench_instr.sh target/bench-instr/mdrelay "$$(cat target/bench-instr/instr.path)"

# Interop checks against other tools, installed from PyPI into target/interop-venv (needs
# python3 ≥ 3.11 with venv, and the network the first time). Steps: tests/interop/run.sh.
interop:
	CARGO="$(CARGO)" tests/interop/run.sh

clean:
	$(CARGO) clean

.PHONY: fuzz fuzz-cmin fuzz-seed fuzz-prop soak

# Coverage-guided fuzzing (cargo-fuzz + libFuzzer: needs the nightly toolchain and
# `cargo install cargo-fuzz`): every target of fuzz/fuzz_targets for FUZZ_SECS seconds each, one
# at a time, then per target executions, executions/s, edges covered and crashes (fuzz/run.sh).
# FUZZ_TARGETS picks some; FUZZ_RUNS=N also stops each target after N executions (whichever
# comes first). `make test` replays the committed corpus (fuzz/corpus) on stable.
FUZZ_SECS ?= 60
FUZZ_TARGETS ?= frame_decoder subscription venue_binance venue_coinbase venue_kraken \
	venue_kraken_v1 venue_binance_usdm venue_okx venue_bybit venue_gemini venue_hyperliquid \
	http_request config_loader line_reader
fuzz:
	FUZZ_RUNS=$(FUZZ_RUNS) fuzz/run.sh run $(FUZZ_SECS) $(FUZZ_TARGETS)

# Folds what `make fuzz` found (fuzz/target/corpus) into the committed corpus, minimized.
fuzz-cmin:
	fuzz/run.sh cmin $(FUZZ_TARGETS)

# (Re)writes the seed inputs (fixture lines, golden frames, config files) into fuzz/corpus;
# follow with `make fuzz-cmin`.
fuzz-seed:
	$(CARGO) test --locked --test it fuzz_corpus::write_fuzz_seeds -- --ignored --exact

# Property-based fuzzing (proptest, stable) of the decoder, venue parsers, request parser and
# config loader (tests/it/fuzz.rs) with many more cases than `make test` runs (about 5 minutes).
FUZZ_CASES ?= 20000
fuzz-prop:
	MDRELAY_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --locked --release --test it fuzz::

# Soak: the relay binary at full speed with reconnecting feeds and a slow subscriber; resident
# memory and descriptors must stay flat (tests/it/soak.rs; 60 s of it run in `make test`).
SOAK_SECS ?= 300
soak:
	MDRELAY_SOAK_SECS=$(SOAK_SECS) $(CARGO) test --locked --release --test it soak -- --nocapture

# Installation (README "Running as a service"). The binary goes to $(PREFIX)/bin, the unit and
# the sysusers.d entry to $(PREFIX)/lib (the vendor directories systemd searches, for /usr/local
# too; /etc/systemd/system stays the administrator's, for drop-ins), the configuration to
# $(SYSCONFDIR)/mdrelay (read-only under the unit's ProtectSystem=strict). The unit names
# /usr/local/bin and /etc/mdrelay; other PREFIX/SYSCONFDIR values are substituted. A config file
# that is already installed is kept (the operator's edits) and the new one lands beside it as
# `.new`. Build first as yourself (`make build`), then `sudo make install`: install never builds.
.PHONY: install uninstall
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=
BIN := target/release/mdrelay
UNIT_DIR = $(DESTDIR)$(PREFIX)/lib/systemd/system
SYSUSERS_DIR = $(DESTDIR)$(PREFIX)/lib/sysusers.d
CONF_DIR = $(DESTDIR)$(SYSCONFDIR)/mdrelay

install:
	@test -x $(BIN) || { echo "$(BIN) is missing: run \`make build\` first"; exit 1; }
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/mdrelay
	sed -e 's|/usr/local/bin/mdrelay|$(PREFIX)/bin/mdrelay|g' \
	  -e 's|/etc/mdrelay|$(SYSCONFDIR)/mdrelay|g' packaging/mdrelay.service > target/mdrelay.service
	install -D -m 0644 target/mdrelay.service $(UNIT_DIR)/mdrelay.service
	rm -f target/mdrelay.service
	install -D -m 0644 packaging/mdrelay.sysusers $(SYSUSERS_DIR)/mdrelay.conf
	@for f in mdrelay.toml:packaging/mdrelay.toml \
	          environments/production.toml:config/environments/production.toml; do \
	  dst=$(CONF_DIR)/$${f%%:*}; src=$${f#*:}; \
	  if [ -e "$$dst" ] && ! cmp -s "$$src" "$$dst"; then \
	    echo "install -D -m 0644 $$src $$dst.new  (keeping the existing $$dst)"; \
	    install -D -m 0644 "$$src" "$$dst.new"; \
	  else \
	    echo "install -D -m 0644 $$src $$dst"; install -D -m 0644 "$$src" "$$dst"; \
	  fi; \
	done
	@echo "next: systemd-sysusers; systemctl daemon-reload; systemctl enable --now mdrelay"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/mdrelay $(UNIT_DIR)/mdrelay.service $(SYSUSERS_DIR)/mdrelay.conf
	@echo "kept: $(CONF_DIR) (configuration), /var/lib/mdrelay (data), the mdrelay user"
