#!/usr/bin/env bash
# Sets fastgan up on a fresh machine: a virtual environment in .venv holding torch, fastgan (editable) with its
# test and benchmark tools, and the compiled extension (C++ kernels always; CUDA kernels whenever a CUDA toolkit
# is found — a CUDA compile error fails this script). Safe to re-run: it does nothing when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${FASTGAN_VENV:-.venv}
export MAX_JOBS=${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}

# Everything the install depends on; an unchanged fingerprint means the environment is already up to date.
fingerprint=$( (cat pyproject.toml setup.py fastgan/_build.py; find csrc -type f | sort | xargs cat) | sha256sum | cut -c1-16)
stamp="$VENV/.fastgan-setup-$fingerprint"
if [ -f "$stamp" ] && "$VENV/bin/python" -c "import fastgan" 2>/dev/null; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "fastgan setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"

# torch first and outside the project's build: the extension must be compiled against the torch that runs it
# (hence --no-build-isolation below).
echo "fastgan setup: installing torch and build tools"
$PIP install -q "torch>=2.4" "setuptools>=77" wheel ninja

# torch's build helpers take CUDA_HOME from the nvcc on PATH; where that nvcc is a wrapper script, point them at
# the toolkit it runs.
if [ -z "${CUDA_HOME:-}" ]; then
  cuda_home=$("$VENV/bin/python" -c "import importlib.util as u; s=u.spec_from_file_location('b','fastgan/_build.py'); m=u.module_from_spec(s); s.loader.exec_module(m); print(m.find_cuda_home() or '')")
  [ -n "$cuda_home" ] && export CUDA_HOME="$cuda_home"
fi
echo "fastgan setup: building fastgan (CUDA toolkit: ${CUDA_HOME:-none}; this compiles C++/CUDA kernels, a few minutes)"
$PIP install -q --no-build-isolation -e ".[test,bench]"

rm -f "$VENV"/.fastgan-setup-*
touch "$stamp"
echo "fastgan setup: done ($VENV/bin/fastgan info prints what was built)"
