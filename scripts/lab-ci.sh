#!/usr/bin/env bash
# The nested lab in CI (and on a fresh machine): install what the lab needs from Debian, prepare
# both lab kernels (taken from ~/.cache/tsvmm/lab when present, else downloaded and built), then
# run the lab test tier inside the lab on both kernels.
#   bash scripts/lab-ci.sh              everything
#   LAB_CI_KERNELS=stock bash ...       one kernel only
#   LAB_CI_NO_APT=1 bash ...            skip apt-get (packages already installed)
# Exit status: 0 when every step passed, else the first failing step's status.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
kernels=${LAB_CI_KERNELS:-sw-protected stock}
status=0

step() { echo "== lab-ci: $*"; }
fail() { echo "== lab-ci: FAILED: $1 (status $2)"; [ "$status" -ne 0 ] || status=$2; }

# qemu-system-x86: the lab itself. busybox-static: fallback when Debian's archive is unreachable.
# build-essential flex bison bc libelf-dev xz-utils: the sw-protected kernel build.
# debian-archive-keyring: verifies the private apt index the kernels come from.
LAB_PACKAGES="qemu-system-x86 busybox-static build-essential flex bison bc libelf-dev xz-utils debian-archive-keyring"
if [ -z "${LAB_CI_NO_APT:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "apt-get install $LAB_PACKAGES"
    t=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    timeout 900 apt-get -o DPkg::Lock::Timeout=300 update -qq &&
      timeout 1200 apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $LAB_PACKAGES >/dev/null ||
      fail "apt-get install" 81
    step "apt-get: $((SECONDS - t)) s"
  else
    step "not root or no apt-get: assuming $LAB_PACKAGES are installed"
  fi
fi

if [ ! -f dist/test/lab/run.js ] || [ ! -f dist/vmm/cli/main.js ]; then
  step "npm run build:ts"
  timeout 600 npm run -s build:ts || fail "npm run build:ts" 1
fi

for k in $kernels; do
  step "prepare the $k kernel"
  t=$SECONDS
  timeout 4200 node bin/tsvmm.js lab --prepare-only --kernel "$k"
  rc=$?
  [ $rc -eq 0 ] || fail "prepare $k" $rc
  step "prepare $k: $((SECONDS - t)) s"
done

step "tsvmm lab from the outside (test/lab/host: arguments, statuses, failure reports)"
t=$SECONDS
timeout 1800 node --test --test-concurrency=1 --test-timeout=600000 dist/test/lab/host/
rc=$?
[ $rc -eq 0 ] || fail "test/lab/host" $rc
step "test/lab/host: $((SECONDS - t)) s"

for k in $kernels; do
  step "lab tier on the $k kernel"
  t=$SECONDS
  timeout 2400 node bin/tsvmm.js lab --kernel "$k" --timeout 1500 -- node dist/test/lab/run.js
  rc=$?
  [ $rc -eq 0 ] || fail "lab tier on $k" $rc
  step "lab tier on $k: $((SECONDS - t)) s"
done

step "finished in $((SECONDS - started)) s with status $status"
exit $status
