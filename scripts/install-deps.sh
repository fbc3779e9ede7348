#!/usr/bin/env bash
# Installs the Debian 12 packages kvmini builds and tests with, if any is missing.
set -euo pipefail
pkgs=(gcc make libc6-dev linux-libc-dev pkg-config
      liblzma-dev zlib1g-dev libzstd-dev liblz4-dev libbz2-dev
      libcriterion-dev liburing-dev libcjson-dev busybox-static cpio clang-format
      clang-14 libfuzzer-14-dev libclang-rt-14-dev)
[ "${1:-}" = "--bench" ] && pkgs+=(qemu-system-x86 hyperfine fio)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
