# shellcheck shell=bash
# Shared by scripts/test and scripts/demo (sourced, not run): find a Python 3.11+,
# create .venv at the repository root if it is missing, and install the package into
# it when pyproject.toml is newer than the last successful install.

# The interpreter used to create .venv: $PYTHON, else python3.11, else python3.
find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: mailagents needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_venv() {
    if [[ -x .venv/bin/python ]]; then
        return 0
    fi
    local python
    python=$(find_python)
    echo "Creating .venv with $($python --version 2>&1)" >&2
    if ! "$python" -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        # Debian ships the venv module's pip bootstrap separately (python3.X-venv).
        local pkg
        pkg="python$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
        if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
            echo "python -m venv failed: installing $pkg with apt-get" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null ||
                { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"; }
            "$python" -m venv .venv
        else
            echo "error: '$python -m venv' failed; on Debian/Ubuntu run: sudo apt-get install $pkg" >&2
            return 1
        fi
    fi
}

# ensure_installed SPEC: pip install -e SPEC (for example '.[test,docs]') unless the
# stamp for that SPEC is newer than pyproject.toml. The stamp lives inside .venv, so a
# fresh .venv always installs.
ensure_installed() {
    local spec=$1 stamp
    stamp=".venv/.mailagents-installed-$(printf '%s' "$spec" | tr -c 'A-Za-z0-9' '_')"
    if [[ -f $stamp && ! pyproject.toml -nt $stamp ]]; then
        return 0
    fi
    echo "Installing $spec into .venv" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install --quiet -e "$spec"
    touch "$stamp"
}
