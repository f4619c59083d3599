#!/bin/sh
# The image's entrypoint, and its HEALTHCHECK with --health.
#
# The app runs as a non-root user and keeps everything in its field store, $MODELGIF_HOME (/data). When
# that is not writable (Docker creates a missing bind-mounted host folder owned by root), every page
# would fail: stop at once instead, saying what to do. The health check fails on it too (a store that
# turns read-only while the app runs), not only when the app stops answering.
set -u
store=${MODELGIF_HOME:-/data}

# Empty when the store (and its subfolders that exist) take a new file; else why not, e.g. "Permission denied".
store_problem() {
    mkdir -p "$store" 2>/dev/null
    for dir in "$store" "$store/fields" "$store/locks"; do
        [ "$dir" = "$store" ] || [ -d "$dir" ] || continue
        if ! err=$(mktemp -p "$dir" .write-test.XXXXXX 2>&1); then
            echo "${err##*: }"
            return
        fi
        rm -f "$err"
    done
}

if [ "${1:-}" = --health ]; then
    problem=$(store_problem)
    if [ -n "$problem" ]; then
        echo "unhealthy: cannot write to the field store $store ($problem)"
        exit 1
    fi
    exec python -c "import sys, urllib.request
sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read().strip() != b'ok')"
fi

problem=$(store_problem)
if [ -n "$problem" ]; then
    owner=$(stat -c %u "$store" 2>/dev/null || echo "?")
    cat >&2 <<EOF
ModelGiF Explorer cannot write to its field store $store ($problem): the folder is owned by uid $owner
and this container runs as uid $(id -u). Docker creates a host folder given to -v that does not exist
yet owned by root. Either create the folder yourself and run the container as yourself:

    mkdir -p "\$HOME/modelgif-data"
    docker run --gpus all -p 8501:8501 --user "\$(id -u):\$(id -g)" -v "\$HOME/modelgif-data:/data" modelgif

(if Docker already made it as root: sudo chown "\$(id -u):\$(id -g)" "\$HOME/modelgif-data"), or keep
the data in a named Docker volume, which Docker makes writable for the app's user:

    docker run --gpus all -p 8501:8501 -v modelgif-data:/data modelgif
EOF
    exit 2
fi

# A --user uid that has no account here gets HOME=/; caches that default to ~ then go to /tmp.
[ -w "${HOME:-/}" ] || export HOME=/tmp
exec "$@"
