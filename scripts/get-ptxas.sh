#!/bin/bash
# Puts NVIDIA's PTX assembler (ptxas) and SASS dumper (cuobjdump, with the nvdisasm it calls) in
# .tools/cuda/ without a GPU, so the tests can assemble every kernel for sm_90 as the driver does on
# an H100/H200: registers, spills and the instruction mix become visible with no GPU at hand.
# They come from Debian's nvidia-cuda-toolkit (non-free, 11.8: reads PTX ISA up to 7.8). Only that
# one package is fetched, with apt's own client, through the mirror this machine's apt already uses,
# in a private apt state: the system's sources and installed packages are left as they are.
# Best effort: prints why and exits 1 where that is not possible (another OS, no network); the
# tests that need ptxas then skip with that reason.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools/cuda
if [ -x "$dest/ptxas" ] && [ -x "$dest/cuobjdump" ] && [ -x "$dest/nvdisasm" ]; then echo "ptxas: $dest/ptxas (already there)"; exit 0; fi
command -v apt-get > /dev/null || { echo "get-ptxas: no apt-get here (not Debian)"; exit 1; }
. /etc/os-release
[ "${ID:-}" = debian ] && [ -n "${VERSION_CODENAME:-}" ] || { echo "get-ptxas: not a Debian release (${PRETTY_NAME:-unknown})"; exit 1; }
# The mirror and keyring of the system's main Debian source (deb822 or one-line form).
uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v -- -security | head -1)
[ -n "$uri" ] || uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null)
[ -n "$uri" ] || { echo "get-ptxas: no Debian mirror configured for apt"; exit 1; }
key=/usr/share/keyrings/debian-archive-keyring.gpg
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
echo "deb [signed-by=$key] $uri $VERSION_CODENAME non-free" > "$tmp/sources.list"
apt_private=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=$tmp/parts"
  -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o "APT::Sandbox::User=root" -qq)
apt-get "${apt_private[@]}" update
(cd "$tmp/deb" && apt-get "${apt_private[@]}" download nvidia-cuda-toolkit)
dpkg-deb -x "$tmp"/deb/nvidia-cuda-toolkit_*.deb "$tmp/x"
mkdir -p "$dest"
cp "$tmp/x/usr/bin/ptxas" "$tmp/x/usr/bin/cuobjdump" "$tmp/x/usr/bin/nvdisasm" "$dest/"
"$dest/ptxas" --version | tail -1
echo "ptxas: $dest/ptxas"
