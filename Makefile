# zfw - developer entry points.  Every target installs what it needs first.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
# CI sets ZFW_REQUIRE_PRIV=1: privileged tests then fail instead of skipping.
ZFW_REQUIRE_PRIV ?= 0
export ZFW_REQUIRE_PRIV

.PHONY: all deps build test demo bench lint man clean

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	$(CARGO) build --release --all-targets

test: build
	$(CARGO) test --release

demo: build
	bash scripts/demo.sh

bench: build
	./target/release/zfw-bench

# Real traffic through a namespace router, with and without zfw (root; about
# 7 min, ZFW_TRAFFIC_QUICK=1 about 2).  docs/BENCH.md.
.PHONY: bench-traffic
bench-traffic: build
	./target/release/zfw-traffic

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

clean:
	$(CARGO) clean
