#!/usr/bin/env bash
# Builds an unpatched-sigstore skopeo: the judge of tests/e2e/test_sign.py.
#
# Debian bookworm's skopeo 1.9.3 is built against golang-github-containers-image 5.23.1 with a
# Debian-local patch (debian/patches/disable-sigstore.patch) that rejects every sigstore
# signature ("Debian-local change: sigstore disabled") because sigstore/sigstore is not packaged.
# This script rebuilds the same skopeo from Debian's own sources with only that patch reverted:
#
#   1. apt: `apt-get build-dep skopeo` (golang-go and every golang-*-dev skopeo builds with)
#      and `apt-get source` of skopeo and golang-github-containers-image, the versions this
#      machine has installed. deb-src entries are derived at run time from this machine's own
#      apt sources into a private apt configuration (nothing under /etc/apt is changed).
#   2. dpkg-source -x applies Debian's patches; disable-sigstore.patch is then reverted
#      (`patch -R`) in that private copy of containers/image.
#   3. The two packages the revert needs and Debian lacks are vendored next to this script
#      (skopeo_sigstore/gopath, see its README.md): sigstore/sigstore v1.4.2 pkg/signature +
#      pkg/cryptoutils and go-tuf v0.5.1 encrypted, the versions containers/image 5.23.1's
#      go.mod names, copied unmodified; plus a fail-closed stand-in for boulder's goodkey.
#   4. `go build ./cmd/skopeo` in GOPATH mode, dh-golang style: GO111MODULE=off,
#      GOPATH=<private tree>:/usr/share/gocode, GOPROXY=off (no network for Go).
#
# The binary lands in ~/.cache/rules_shiko/skopeo-sigstore/<key>/skopeo, key = hash of this
# script, the vendored tree, skopeo's Debian source version and the architecture. When it
# is there already nothing is done (idempotent; a lock makes concurrent runs wait).
#
#   build_skopeo_sigstore.sh          build when missing; prints the binary's path
#   build_skopeo_sigstore.sh --path   prints where the binary is (or would be); builds nothing
#
# Needs root for apt (as tests/run_all.sh does). Takes ~1 min of go build on 2 cores, plus the
# apt installs on a fresh machine (see docs/supply-chain.md for measured times).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vendored="$here/skopeo_sigstore/gopath"
cache_root="${SHIKO_CACHE:-$HOME/.cache/rules_shiko}/skopeo-sigstore"

die() { echo "build_skopeo_sigstore: $*" >&2; exit 1; }

[ -d "$vendored/src" ] || die "$vendored/src: missing (the vendored sigstore sources)"
command -v dpkg-query >/dev/null || die "dpkg-query: not found (needs a Debian machine)"
skopeo_src_version="$(dpkg-query -W -f '${source:Version}' skopeo 2>/dev/null)" \
  || die "Debian package skopeo: not installed (apt-get install skopeo)"
arch="$(dpkg --print-architecture)"
key="$( { cat "${BASH_SOURCE[0]}"; (cd "$vendored" && find . -type f | LC_ALL=C sort | xargs sha256sum);
          echo "skopeo=$skopeo_src_version arch=$arch"; } | sha256sum | cut -c1-16)"
out_dir="$cache_root/$key"
binary="$out_dir/skopeo"

if [ "${1:-}" = "--path" ]; then
  echo "$binary"
  exit 0
fi
[ $# -eq 0 ] || die "unknown argument: $1 (only --path)"

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "$binary: missing, and building it needs root (apt-get build-dep/source)"

started=$(date +%s)
work="$(mktemp -d "$cache_root/.build.XXXXXX")"
trap 'rm -rf "$work" "$out_dir.tmp"' EXIT

# A private apt configuration: this machine's sources with deb-src added, own lists.
apt_dir="$work/apt"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial"
: > "$apt_dir/sources.list"
if [ -f /etc/apt/sources.list ]; then
  sed -n 's/^[[:space:]]*deb[[:space:]]\+/deb-src /p' /etc/apt/sources.list > "$apt_dir/sources.list"
  cat /etc/apt/sources.list >> "$apt_dir/sources.list"
fi
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  case "$f" in
    *.sources) sed 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb deb-src/' "$f" > "$apt_dir/sources.list.d/$(basename "$f")" ;;
    *.list) { sed -n 's/^[[:space:]]*deb[[:space:]]\+/deb-src /p' "$f"; cat "$f"; } > "$apt_dir/sources.list.d/$(basename "$f")" ;;
  esac
done
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
          -o "Dir::State::Lists=$apt_dir/lists" -o "APT::Sandbox::User=root")
echo "build_skopeo_sigstore: apt-get update (private lists with deb-src)" >&2
apt-get "${apt_opts[@]}" update -q >&2 || die "apt-get update (with deb-src) failed"
echo "build_skopeo_sigstore: apt-get build-dep skopeo" >&2
DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" build-dep -y -q --no-install-recommends skopeo >&2 \
  || die "apt-get build-dep skopeo failed"
for p in dpkg-dev patch; do  # installed only when missing: nothing else on the machine is upgraded
  if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "$p" >&2 \
      || die "apt-get install $p failed"
  fi
done
image_src_version="$(dpkg-query -W -f '${source:Version}' golang-github-containers-image-dev)" \
  || die "golang-github-containers-image-dev: not installed by build-dep"

src="$work/src"
mkdir -p "$src"
echo "build_skopeo_sigstore: apt-get source skopeo=$skopeo_src_version golang-github-containers-image=$image_src_version" >&2
(cd "$src" && apt-get "${apt_opts[@]}" source -q --download-only \
   "skopeo=$skopeo_src_version" "golang-github-containers-image=$image_src_version" >&2) \
  || die "apt-get source failed"
# apt checked every file's hash against the signed Sources index; the .dsc's own OpenPGP
# signature needs the uploader's key (not installed), hence the warning dpkg-source prints.
gopath="$work/gopath"
mkdir -p "$gopath/src/github.com/containers"
cp -a "$vendored/src/." "$gopath/src/"
(cd "$src" && dpkg-source -x skopeo_*.dsc "$gopath/src/github.com/containers/skopeo" >/dev/null 2>&1) \
  || die "dpkg-source -x skopeo failed"
(cd "$src" && dpkg-source -x golang-github-containers-image_*.dsc "$gopath/src/github.com/containers/image" >/dev/null 2>&1) \
  || die "dpkg-source -x golang-github-containers-image failed"
image="$gopath/src/github.com/containers/image"
grep -q '^disable-sigstore.patch' "$image/debian/patches/series" \
  || die "golang-github-containers-image $image_src_version: no disable-sigstore.patch in its series"
(cd "$image" && patch -R -p1 --no-backup-if-mismatch < debian/patches/disable-sigstore.patch >&2) \
  || die "reverting disable-sigstore.patch failed"
if grep -rq 'Debian-local change: sigstore disabled' "$image/signature"; then
  die "containers/image still has 'sigstore disabled' after the revert"
fi

echo "build_skopeo_sigstore: go build ./cmd/skopeo (GOPATH mode, GOPROXY=off)" >&2
rm -rf "$out_dir.tmp"
mkdir -p "$out_dir.tmp"
(cd "$gopath/src/github.com/containers/skopeo" \
  && env GO111MODULE=off GOFLAGS= GOPROXY=off GOPATH="$gopath:/usr/share/gocode" \
       GOCACHE="$cache_root/gocache" go build -trimpath -o "$out_dir.tmp/skopeo" ./cmd/skopeo >&2) \
  || die "go build failed"
if grep -q 'Debian-local change: sigstore disabled' "$out_dir.tmp/skopeo"; then
  die "the built skopeo still holds the Debian sigstore stub"
fi
"$out_dir.tmp/skopeo" --version >/dev/null || die "the built skopeo does not run"
{
  echo "skopeo source: $skopeo_src_version"
  echo "containers/image source: $image_src_version (disable-sigstore.patch reverted)"
  echo "go: $(go version)"
  echo "vendored: sigstore/sigstore v1.4.2, theupdateframework/go-tuf v0.5.1 encrypted"
  echo "build seconds: $(( $(date +%s) - started ))"
  echo "loadavg at end: $(cat /proc/loadavg)"
} > "$out_dir.tmp/BUILD-INFO"
rm -rf "$out_dir"
mv "$out_dir.tmp" "$out_dir"
echo "build_skopeo_sigstore: built in $(( $(date +%s) - started ))s" >&2
echo "$binary"
