#!/usr/bin/env bash
# Docker smoke test: the image as a GPU host's user runs it, on the CPU. Not part of .ci/run: it needs
# root, a Docker engine and a few GB of downloads (torch with its CUDA libraries).
#
# Sets up what it needs on a Debian machine like the CI's (docker.io from apt, dockerd started, a
# debootstrap stand-in for python:3.11-slim-bookworm when the registry cannot be reached:
# .ci/docker-base.sh), builds the image, then checks, each in a fresh container:
#   bind    the README's command with a host folder that did not exist: created by the user, run with
#           --user as that user (uid $SMOKE_UID, not 1000, so any host uid is covered); healthy, answers on
#           the published port, not root, a field extracted in the container lands in the host folder,
#           Home and every page run without an error on that store (Streamlit's AppTest)
#   volume  the named-volume form with the image's own user: healthy, uid 1000
#   root    a missing host folder without --user (Docker creates it owned by root): the container stops
#           at once with exit code 2 and the message that says what to do
#   health  the bind container's store made read-only for it while it runs: the health check turns unhealthy
# Prints a summary; exits non-zero on any failure. Rerunnable: removes what it made (not the image).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

image=${SMOKE_IMAGE:-modelgif:smoke}
uid=${SMOKE_UID:-4321}
prefix=modelgif-smoke
failures=0
summary=()

ok() { summary+=("ok    $*"); echo "ok    $*"; }
fail() { summary+=("FAIL  $*"); echo "FAIL  $*" >&2; failures=$((failures + 1)); }
die() { echo "docker-smoke: $*" >&2; exit 1; }
report() {
  echo
  echo "== docker smoke summary (${image}) =="
  printf '%s\n' "${summary[@]}"
  if [ "$failures" -eq 0 ]; then echo "PASS"; else echo "FAILED: $failures check(s)"; fi
}

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages, starts dockerd and plays a host user with setpriv)"

# ---------------------------------------------------------------- the engine and the base image
need=()
command -v dockerd >/dev/null && command -v docker >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "docker-smoke: installing ${need[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }; then
    die "apt-get install ${need[*]} failed"
  fi
fi
if ! docker info >/dev/null 2>&1; then
  echo "docker-smoke: starting dockerd (log: /var/log/dockerd.log)"
  # Without this script's open files: a daemon that inherits a caller's lock (flock LOCK cmd) holds it forever.
  ( for fd in /proc/self/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-"; done 2>/dev/null
    exec nohup dockerd >/var/log/dockerd.log 2>&1 ) &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || die "dockerd did not start; see /var/log/dockerd.log"
fi
start=$(date +%s)
base=$(.ci/docker-base.sh | tee /dev/stderr | tail -1) || die "no python:3.11-slim-bookworm base image"
base_line="base: ${base#docker-base: }, $(($(date +%s) - start)) s"

remove_containers() {
  docker rm -f "$prefix-bind" "$prefix-volume" "$prefix-root" >/dev/null 2>&1
  docker volume rm -f "$prefix-data" >/dev/null 2>&1
}
remove_containers  # and the folders, of an earlier run that was killed
rm -rf "${TMPDIR:-/var/tmp}/$prefix".*
work=$(mktemp -d "${TMPDIR:-/var/tmp}/$prefix.XXXXXX")
chmod 755 "$work"  # the played host user reaches its home inside
# shellcheck disable=SC2154  # rc is set inside the trap
trap 'rc=$?; remove_containers; rm -rf "$work"; report; exit $rc' EXIT
ok "$base_line"

# ---------------------------------------------------------------- build
start=$(date +%s)
if docker build -t "$image" . >"$work/build.log" 2>&1; then
  build_s=$(($(date +%s) - start))
  size=$(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1 / 1e9}')
  ok "build: ${build_s} s, image ${size}"
  # What the package's build warns about (pyproject's license as a table was one). The image's pip install hides
  # the build backend's output, so build the wheel again in the image, verbosely, and read that.
  if docker run --rm --user 0 --entrypoint sh "$image" -c \
      'cp -r /app /tmp/src && pip wheel --no-deps -v /tmp/src -w /tmp/wheel' >"$work/wheel.log" 2>&1; then
    if grep -qiE "deprecat|warn.*license" "$work/wheel.log"; then
      grep -iE "deprecat|warn.*license" "$work/wheel.log" | head -5 >&2
      fail "build: the package's build warns (above)"
    else
      ok "build: the package builds without a deprecation or license warning ($(grep -o 'setuptools-[0-9.]*' "$work/wheel.log" | head -1))"
    fi
  else
    tail -20 "$work/wheel.log" >&2; fail "build: pip wheel of the package failed in the image"
  fi
else
  tail -30 "$work/build.log" >&2
  fail "build (log above)"
  exit 1
fi

# Waits for a container's health to settle; prints healthy, unhealthy, or exited:CODE.
wait_health() {
  local name=$1 limit=$2 want=$3 state
  for _ in $(seq "$limit"); do
    state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.State.Health.Status}}' "$name" 2>/dev/null)
    case $state in
      exited*) echo "exited:$(echo "$state" | cut -d' ' -f2)"; return ;;
      *" $want") echo "$want"; return ;;
    esac
    sleep 1
  done
  echo "${state##* }"
}
pid1_uid() { docker exec "$1" awk '/^Uid:/ {print $2}' /proc/1/status; }
# The checks use a 2 s health interval (the image's is 30 s); the check itself is the image's.
fast_health=(--health-interval=2s)

# ---------------------------------------------------------------- bind: the README's command, a fresh folder
# A tiny timm checkpoint made in the container (an upload's path; nothing is downloaded).
make_checkpoint="
import timm, torch
from safetensors.torch import save_file
torch.manual_seed(0)
save_file(timm.create_model('test_resnet', num_classes=10).state_dict(), '/tmp/tiny.safetensors')"
# Home and every page, run by Streamlit's AppTest in the container on its store: no exception, no st.error.
check_pages="
from pathlib import Path
from streamlit.testing.v1 import AppTest
at = AppTest.from_file('app.py', default_timeout=180).run()
bad = [f'Home: {e.value}' for e in list(at.exception) + list(at.error)]
pages = sorted(p.as_posix() for p in Path('app_pages').glob('[!_]*.py'))
bad += [] if pages else ['no page files in app_pages/']
for page in pages:
    at.switch_page(page).run()
    bad += [f'{page}: {e.value}' for e in list(at.exception) + list(at.error)]
print(f'{len(pages)} pages;', '\\n'.join(bad))
raise SystemExit(bool(bad))"
check_bind() {
  install -d -o "$uid" -g "$uid" "$work/home"
  data="$work/home/modelgif-data"
  [ ! -e "$data" ] || die "$data exists"
  # README: mkdir -p "$HOME/modelgif-data", as the user
  setpriv --reuid="$uid" --regid="$uid" --clear-groups mkdir -p "$data"
  docker run -d --name "$prefix-bind" -p 127.0.0.1::8501 --user "$uid:$uid" -v "$data:/data" "${fast_health[@]}" \
    "$image" >/dev/null
  state=$(wait_health "$prefix-bind" 240 healthy)
  if [ "$state" = healthy ]; then ok "bind: healthy with a fresh host folder"; else
    fail "bind: health is '$state', not healthy (the checks that need it are skipped)"
    docker logs --tail 30 "$prefix-bind" >&2
    return 1
  fi
  port=$(docker port "$prefix-bind" 8501/tcp | head -1 | sed 's/.*://')
  answer=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/_stcore/health', timeout=10).read().decode())" 2>&1 | tail -1)
  if [ "$answer" = ok ]; then ok "bind: the app answers on the published port ($port)"; else
    fail "bind: /_stcore/health on port $port answered '$answer'"; fi
  got=$(pid1_uid "$prefix-bind")
  if [ "$got" = "$uid" ]; then ok "bind: the app runs as the host user (uid $got), not root"; else
    fail "bind: the app runs as uid '$got', not $uid"; fi

  docker exec "$prefix-bind" python -c "$make_checkpoint" >"$work/ckpt.log" 2>&1 \
    || { cat "$work/ckpt.log" >&2; fail "bind: could not make a checkpoint in the container"; }
  if docker exec "$prefix-bind" modelgif extract /tmp/tiny.safetensors --arch test_resnet --num-classes 10 \
      --input-size 3,32,32 --anchors digits:8 --steps 4 -q --format json >"$work/extract.json" 2>"$work/extract.err"; then
    field=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[0]['path'])" "$work/extract.json")
    host_field="$data/${field#/data/}"
    if [[ $field == /data/fields/* ]] && [ -f "$host_field" ] && [ "$(stat -c %u "$host_field")" = "$uid" ]; then
      ok "bind: a field extracted in the container is in the host folder, owned by the user ($(basename "$host_field" | cut -c1-16)...)"
    else
      fail "bind: the field $field is not in $data as uid $uid"
    fi
  else
    cat "$work/extract.err" >&2; fail "bind: modelgif extract failed in the container"
  fi
  # The shipped zoo (/app/assets), read as the host user: the demo's models.
  if docker exec "$prefix-bind" modelgif extract zoo:resnet-victim --anchors digits:8 --steps 4 -q \
      >"$work/zoo.out" 2>&1; then
    ok "bind: a field of the shipped zoo's zoo:resnet-victim extracted as the host user"
  else
    tail -5 "$work/zoo.out" >&2; fail "bind: the shipped zoo's zoo:resnet-victim cannot be extracted (above)"
  fi
  if docker exec -w /app "$prefix-bind" python -c "$check_pages" >"$work/pages.log" 2>&1; then
    ok "bind: Home and the $(grep -o '^[0-9]* pages' "$work/pages.log") run without an error on the mounted store"
  else
    tail -20 "$work/pages.log" >&2; fail "bind: a page shows an error (above)"
  fi
}
check_bind; bind_up=$?

# ---------------------------------------------------------------- volume: the named-volume form
docker run -d --name "$prefix-volume" -v "$prefix-data:/data" "${fast_health[@]}" "$image" >/dev/null
state=$(wait_health "$prefix-volume" 240 healthy)
if [ "$state" = healthy ]; then ok "volume: healthy with a new named volume"; else
  fail "volume: health is '$state', not healthy"; docker logs --tail 30 "$prefix-volume" >&2; fi
got=$(pid1_uid "$prefix-volume")
if [ "$got" = 1000 ]; then ok "volume: the app runs as the image's user (uid 1000), not root"; else
  fail "volume: the app runs as uid '$got', not 1000"; fi
docker rm -f "$prefix-volume" >/dev/null

# ---------------------------------------------------------------- root: a missing folder, no --user
missing="$work/missing/modelgif-data"
docker run --name "$prefix-root" -v "$missing:/data" "$image" >"$work/root.log" 2>&1
code=$(docker inspect -f '{{.State.ExitCode}}' "$prefix-root")
owner=$(stat -c %u "$missing" 2>/dev/null)
# shellcheck disable=SC2016  # the message's literal command
if [ "$owner" = 0 ] && [ "$code" = 2 ] && grep -q "cannot write to its field store /data (Permission denied)" "$work/root.log" \
    && grep -q -- '--user "$(id -u):$(id -g)"' "$work/root.log" && grep -q -- '-v modelgif-data:/data' "$work/root.log"; then
  sed 's/^/        | /' "$work/root.log"
  ok "root: a root-owned /data stops the container (exit 2) with the message above, which says what to do"
else
  cat "$work/root.log" >&2
  fail "root: folder owner uid '$owner', exit code '$code', message above (want 0, 2, what to do)"
fi

# ---------------------------------------------------------------- health: the store turns unwritable
if [ "$bind_up" -eq 0 ]; then
  chown 0:0 "$data"
  state=$(wait_health "$prefix-bind" 60 unhealthy)
  last=$(docker inspect -f '{{range .State.Health.Log}}{{.Output}}{{end}}' "$prefix-bind" | grep unhealthy | tail -1)
  if [ "$state" = unhealthy ] && [[ $last == *"cannot write to the field store /data (Permission denied)"* ]]; then
    ok "health: unhealthy once /data is not writable for the app ($last)"
  else
    fail "health: '$state' after /data turned root-owned (last check: '$last')"
  fi
else
  fail "health: not checked (the bind container never became healthy)"
fi

[ "$failures" -eq 0 ]
