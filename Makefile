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

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

clean:
	$(CARGO) clean
