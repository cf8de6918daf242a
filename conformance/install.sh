#!/usr/bin/env bash
# What `make conformance` needs from Debian: gcc and the kernel source
# packages linux-source-6.1 and linux-source-6.12 (their tarballs land in
# /usr/src). Installs what is missing when run as root; otherwise says, in
# one line, what to install.
set -euo pipefail
need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc)
for v in 6.1 6.12; do
	[ -e "/usr/src/linux-source-$v.tar.xz" ] || need+=("linux-source-$v")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "conformance: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
	echo "conformance: missing ${need[*]}: install them (as root: apt-get install ${need[*]}), then run make conformance again"
	exit 2
fi
