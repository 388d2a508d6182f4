#!/usr/bin/env bash
# The test command: sets everything up (scripts/setup.sh), then runs the test suite. Without a GPU, Triton kernels
# run on CPU tensors under its interpreter and CUDA-marked tests skip, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${FASTGAN_VENV:-.venv}
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  export TRITON_INTERPRET=1
fi
set +e
"$VENV/bin/python" -m pytest -q "$@"
status=$?
set -e
if [ $status -eq 5 ]; then
  echo "fastgan tests: pytest collected no tests (exit 5): the selection is empty or tests/ is missing" >&2
  exit 1
fi
exit $status
