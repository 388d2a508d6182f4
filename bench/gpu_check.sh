#!/usr/bin/env bash
# fastgan's GPU check: one script for an H200 machine (Python 3.12, torch 2.11, Triton 3.6, no network), run from a
# copy of the repository as the working directory, inside 8 minutes:
#   1. environment (nvidia-smi, `fastgan info`)
#   2. build the extension with its CUDA kernels (the JIT path, FASTGAN_BUILD_CUDA=1; pip install -e as fallback)
#   3. `pytest -m cuda tests/`
#   4. the benchmark suite on CUDA (`fastgan bench --device cuda`, preset $FASTGAN_GPU_CHECK_SIZES, default large)
#      with a deadline (each op a fair share of the time left) so that it ends in time, then each bench/bench_<op>.py that takes --device, while time is left
# Everything lands under $OUT in at most 6 files, no subfolders:
#   gpu_check.log    the whole console output          summary.md      what passed, and the benchmark tables
#   gpu_check.tar.gz results/<gpu-name>/ (JSON, CSV, markdown, plots) and logs/ (build, tests, info, op scripts)
#   bench.json, bench_time.png, bench_speedup.png      copies of the suite's main results, to read at once
# To commit the numbers afterwards:  tar -xzf gpu_check.tar.gz -C bench results  (then git add bench/results/<gpu>)
#
# Dry run on a CPU-only machine: FASTGAN_GPU_CHECK_DRY_RUN=1 OUT=/tmp/out PYTHON=.venv/bin/python bash bench/gpu_check.sh
# (CPU extension, the cuda-marked tests skip, the suite at the small preset on CPU with the quick timing profile).
set -u -o pipefail

START=$(date +%s)
DRY=${FASTGAN_GPU_CHECK_DRY_RUN:-0}
BUDGET=${FASTGAN_GPU_CHECK_BUDGET:-480}          # seconds for everything: 8 minutes of work, then packing up
OUT=${OUT:-$PWD/gpu_check_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/fastgan_gpu_check.XXXXXX")
mkdir -p "$STAGE/logs" "$STAGE/results"
touch "$STAGE/started"
LOG="$OUT/gpu_check.log"
SUMMARY="$STAGE/summary.md"
exec > >(tee "$LOG") 2>&1

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
note() { echo "$*" | tee -a "$SUMMARY" >/dev/null; echo "[$(elapsed)s] $*"; }
# Cap a step at min(its own limit, the time left less a reserve for the steps after it).
cap() { local want=$1 reserve=$2 l; l=$(( $(left) - reserve )); [ "$l" -lt "$want" ] && want=$l; [ "$want" -lt 5 ] && want=5; echo "$want"; }

if [ "$DRY" = "1" ]; then
    DEVICE=cpu; SIZES=${FASTGAN_GPU_CHECK_SIZES:-small}
    export FASTGAN_BUILD_CUDA=0 FASTGAN_BENCH_QUICK=1
else
    DEVICE=cuda; SIZES=${FASTGAN_GPU_CHECK_SIZES:-large}
    export FASTGAN_BUILD_CUDA=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
    export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}   # only the GPU at hand: a faster build
fi
[ "$DRY" = "1" ] || export FASTGAN_CACHE=${FASTGAN_CACHE:-$STAGE/cache}   # a fresh build on the GPU machine
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"           # the repository copy, installed or not

echo "# fastgan GPU check ($([ "$DRY" = "1" ] && echo "DRY RUN on CPU" || echo "CUDA"), $(date -Is))" > "$SUMMARY"
# A copy without .git cannot name its commit: pass FASTGAN_COMMIT=$(git rev-parse --short=12 HEAD) along.
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo "${FASTGAN_COMMIT:-unknown}")
export FASTGAN_COMMIT=$COMMIT
note "- commit: $COMMIT; device $DEVICE; sizes $SIZES; budget ${BUDGET}s"

# 1. environment -------------------------------------------------------------------------------------------------
( nvidia-smi || echo "nvidia-smi: not available" ) > "$STAGE/logs/nvidia-smi.txt" 2>&1
head -n 15 "$STAGE/logs/nvidia-smi.txt"
"$PY" -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.is_available())" \
    2>&1 | tee "$STAGE/logs/python.txt"

# 2. build ---------------------------------------------------------------------------------------------------------
BUILD_OK=0
T=$(cap 240 200)
echo "[$(elapsed)s] building the extension (JIT, limit ${T}s)"
if timeout "$T" env FASTGAN_VERBOSE_BUILD=1 "$PY" - > "$STAGE/logs/build.log" 2>&1 <<'EOF'
import sys
import fastgan._ext as ext
ok = ext.load()
status = ext.status()
print("loaded:", ok, "|", status[1], "|", status[2].get("path"), status[2].get("stamp"))
sys.exit(0 if ok else 1)
EOF
then
    BUILD_OK=1
else
    tail -n 30 "$STAGE/logs/build.log"
    if [ "$DRY" != "1" ]; then
        T=$(cap 200 200)
        echo "[$(elapsed)s] JIT build failed; trying pip install --no-build-isolation --no-deps -e . (limit ${T}s)"
        if timeout "$T" "$PY" -m pip install --no-build-isolation --no-deps -e . > "$STAGE/logs/pip_install.log" 2>&1 \
            && "$PY" -c "import fastgan._ext as e, sys; sys.exit(0 if e.load() else 1)" >> "$STAGE/logs/pip_install.log" 2>&1; then
            BUILD_OK=1
        else
            tail -n 30 "$STAGE/logs/pip_install.log"
        fi
    fi
fi
tail -n 1 "$STAGE/logs/build.log"
note "- build: $([ $BUILD_OK = 1 ] && echo ok || echo FAILED, see logs/build.log) (at $(elapsed)s)"
"$PY" -m fastgan info > "$STAGE/logs/fastgan_info.txt" 2>&1
cat "$STAGE/logs/fastgan_info.txt"

# 3. cuda-marked tests ---------------------------------------------------------------------------------------------
T=$(cap 150 200)
# Several workers where pytest-xdist is installed: the Triton kernels' first compiles dominate, and they are CPU work.
PAR=""
[ "$DRY" != "1" ] && "$PY" -c "import xdist" 2>/dev/null && PAR="-n 8"
echo "[$(elapsed)s] pytest -m cuda tests/ $PAR (limit ${T}s)"
timeout "$T" "$PY" -m pytest -m cuda tests/ -q $PAR --durations=10 -p no:cacheprovider -o addopts="" \
    > "$STAGE/logs/pytest_cuda.log" 2>&1
RC=$?
tail -n 25 "$STAGE/logs/pytest_cuda.log"
note "- pytest -m cuda tests/: exit $RC$([ $RC = 124 ] && echo ' (time limit)'); $(tail -n 1 "$STAGE/logs/pytest_cuda.log") (at $(elapsed)s)"

# 4. the benchmark suite -------------------------------------------------------------------------------------------
# The suite gets what is left less the op scripts' reserve (OPS_RESERVE); no new case after its deadline.
OPS_RESERVE=${FASTGAN_GPU_CHECK_OPS_RESERVE:-150}
DEADLINE=$(( $(left) - OPS_RESERVE - 30 ))
[ "$DEADLINE" -lt 30 ] && DEADLINE=30
T=$(cap $(( DEADLINE + 60 )) 15)
echo "[$(elapsed)s] fastgan bench --device $DEVICE --sizes $SIZES (deadline ${DEADLINE}s, limit ${T}s)"
FASTGAN_BENCH_DEADLINE=$DEADLINE timeout "$T" "$PY" -m fastgan bench --device "$DEVICE" --sizes "$SIZES" \
    --out "$STAGE/results" > "$STAGE/logs/bench.log" 2>&1
RC=$?
note "- fastgan bench: exit $RC$([ $RC = 124 ] && echo ' (time limit)') (at $(elapsed)s)"
MAIN_JSON=$(ls -t "$STAGE"/results/*/*.json 2>/dev/null | head -n 1)
if [ -n "$MAIN_JSON" ]; then
    cp "$MAIN_JSON" "$OUT/bench.json"
    BASE=${MAIN_JSON%.json}
    [ -f "${BASE}_time.png" ] && cp "${BASE}_time.png" "$OUT/bench_time.png"
    [ -f "${BASE}_speedup.png" ] && cp "${BASE}_speedup.png" "$OUT/bench_speedup.png"
    { echo; cat "${BASE}.md"; } >> "$SUMMARY"
else
    tail -n 40 "$STAGE/logs/bench.log"
fi

# 5. the ops' own scripts, while time is left ----------------------------------------------------------------------
# The open issues' targets first (bias_act: GB/s; mixgan: loss and batched-step ratios), then the rest; on the GPU
# with the quick profile (no torch.compile: the suite above timed it), each bounded by its own deadline.
for script in bench/bench_bias_act.py bench/bench_mixgan.py $(ls bench/bench_*.py | grep -v -e bias_act -e mixgan); do
    [ -f "$script" ] || continue
    name=$(basename "$script" .py)
    if [ "$DRY" = "1" ]; then note "- $name: not run in a dry run"; continue; fi
    if [ "$(left)" -lt 45 ]; then note "- $name: not run (time budget)"; continue; fi
    if ! grep -q -- "--device" "$script"; then note "- $name: not run (takes no --device option)"; continue; fi
    T=$(cap 75 20)
    QUICK=""; grep -q -- "--quick" "$script" && QUICK="--quick"
    echo "[$(elapsed)s] $script --device $DEVICE $QUICK (limit ${T}s)"
    FASTGAN_BENCH_DEADLINE=$(( T - 25 )) timeout "$T" "$PY" "$script" --device "$DEVICE" $QUICK \
        > "$STAGE/logs/$name.log" 2>&1
    RC=$?
    tail -n 15 "$STAGE/logs/$name.log"
    note "- $name: exit $RC$([ $RC = 124 ] && echo ' (time limit)') (at $(elapsed)s)"
done
# Scripts that write their own JSON under bench/results/ in this copy: keep them too.
if [ -d bench/results ]; then
    find bench/results -newer "$STAGE/started" -type f -print0 2>/dev/null | xargs -0 -r cp --parents -t "$STAGE/logs" 2>/dev/null
fi

# pack up ------------------------------------------------------------------------------------------------------------
note "- total: $(elapsed)s"
cp "$SUMMARY" "$OUT/summary.md"
rm -rf "$STAGE/cache"
tar -czf "$OUT/gpu_check.tar.gz" -C "$STAGE" results logs summary.md
rm -rf "$STAGE"
echo "[$(elapsed)s] done: $(ls "$OUT" | tr '\n' ' ')"
echo
sed -n '1,12p' "$OUT/summary.md"
