#!/bin/bash
# Install what building and testing zfw needs on Debian 12 (idempotent).
set -euo pipefail

PKGS=(build-essential pkg-config libelf-dev zlib1g-dev clang llvm iproute2 bpftool
      make netcat-openbsd iputils-ping procps util-linux ethtool)
# tests/crash.rs: kills zfw between two bpf() calls (strace -e inject=bpf:signal=SIGKILL)
PKGS+=(strace)
# make bench-traffic: nftables masquerade is the baseline zfw's masquerade is measured against
PKGS+=(nftables)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps: no Rust toolchain (cargo) found; install one with rustup (Rust >= 1.80)" >&2
    exit 1
fi
# bpffs is where zfw pins its maps
if ! mountpoint -q /sys/fs/bpf 2>/dev/null && [ "$(id -u)" -eq 0 ]; then
    mount -t bpf bpf /sys/fs/bpf || true
fi
echo "install-deps: ok"
