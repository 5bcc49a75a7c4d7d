# herd: the commands a newcomer needs. `make run` serves hello on port 8000; `make test` is
# what CI runs.
CARGO ?= cargo

.PHONY: run test lint fmt bench measure measure-ws measure-pinned measure-reload measure-lifecycle measure-attacks measure-metrics measure-stream measure-files measure-tls compare-builds fleet fuzz clean

run:
	$(CARGO) run --release --example hello

test: lint
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --lib --bins --tests
	$(CARGO) test --workspace --doc

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --quiet

fmt:
	$(CARGO) fmt --all

bench:
	$(CARGO) bench --bench policies
	$(CARGO) bench --bench app

# herd's hello cluster against nginx: req/s, p99, syscalls per request, memory.
measure:
	bash benches/measure_http.sh

measure-pinned:
	bash benches/measure_pinned.sh

# WebSocket echo msgs/s: herd's ws_echo example against a tokio-tungstenite echo server.
measure-ws:
	$(CARGO) bench --bench ws

# Keep-alive clients across reloads: wrk's errors for herd (SIGHUP) and nginx (-s reload).
measure-reload:
	bash benches/measure_reload_keepalive.sh

measure-lifecycle:
	python3 benches/measure_lifecycle.py

# Hostile clients: chunked floods, a pipelining flood, slowloris (herd vs nginx).
measure-attacks:
	python3 benches/measure_attacks.py
# What the workers' metric counting costs: req/s on/off alternating, syscalls per request.
measure-metrics:
	bash benches/measure_metrics.sh
# Streamed bodies (1 GiB down and up) and the worker's RSS idle vs peak.
measure-stream:
	bash benches/measure_stream.sh

# Three herd hosts in network namespaces behind HAProxy (root): rolling deploys and a killed
# host under new-connection load; prints scenario, requests, failed, p99.
fleet:
	python3 benches/fleet.py

# A large file over loopback: herd's files example (sendfile) against nginx `sendfile on`.
measure-files:
	bash benches/measure_files.sh

# HTTPS keep-alive (rustls on the loop) against nginx with ssl, same certificate and cores.
measure-tls:
	bash benches/measure_tls.sh

# The keep-alive hot path of an older build (BEFORE=path/to/hello) against this one.
compare-builds:
	bash benches/compare_builds.sh $(BEFORE)

# The HTTP parser's fuzz target for a minute (cargo install cargo-fuzz; RUSTC_BOOTSTRAP lets a
# stable toolchain use the sanitizer flags cargo-fuzz needs).
FUZZ_TIME ?= 60
fuzz:
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run http_request -- -dict=http.dict -max_total_time=$(FUZZ_TIME)

clean:
	$(CARGO) clean
