#!/usr/bin/env bash
# fastgan's short GPU follow-up, for what bench/gpu_check.sh found: about 5 minutes on the H200 machine.
#   1. build the extension (JIT, CUDA kernels)
#   2. pytest -m cuda on the test files given in $RECHECK_TESTS (default: the files that failed last time)
#   3. bench/profile_case.py on the cases given in $RECHECK_PROFILES (';'-separated argument lists): host vs device
#      time per call and torch.profiler's table, to see what a launch-bound case spends its time on
#   4. bench/bench_mixgan.py --targets-only (issue 5's loss and batched-step ratios), while time is left
# Everything lands under $OUT: recheck.log (the console) and one log per step.
set -u -o pipefail
START=$(date +%s)
BUDGET=${FASTGAN_RECHECK_BUDGET:-300}
OUT=${OUT:-$PWD/gpu_recheck_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee "$OUT/recheck.log") 2>&1
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
say() { echo "[$(( $(date +%s) - START ))s] $*"; }
export FASTGAN_BUILD_CUDA=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export FASTGAN_CACHE=${FASTGAN_CACHE:-$(mktemp -d)} PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
TESTS=${RECHECK_TESTS:-tests/test_grouped.py tests/test_mix.py tests/test_mixture_gan_loss.py tests/test_gan_loss.py tests/test_bias_act.py}
PROFILES=${RECHECK_PROFILES:-"--op mixture_gan_step --sizes 5x64x3x32 --mode d_step --iters 10 --rows 25;--op mixture_gan_step --sizes 5x64x3x32 --mode g_step --iters 10 --rows 25;--op bias_act --sizes 64x128x32x32 --mode full --label lrelu --iters 30"}

say "build"
timeout 150 "$PY" -c "import fastgan._ext as e, sys; ok = e.load(); print('loaded:', ok, e.status()[2]); sys.exit(0 if ok else 1)" \
    > "$OUT/build.log" 2>&1 || { tail -n 30 "$OUT/build.log"; say "build FAILED"; exit 1; }
tail -n 1 "$OUT/build.log"

PAR=""; "$PY" -c "import xdist" 2>/dev/null && PAR="-n 8"
say "pytest -m cuda $TESTS $PAR"
timeout $(( $(left) > 160 ? 100 : $(left) - 60 )) "$PY" -m pytest -m cuda $TESTS -q $PAR -p no:cacheprovider -o addopts="" \
    > "$OUT/pytest.log" 2>&1
say "pytest exit $?: $(tail -n 1 "$OUT/pytest.log")"
grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -n 20

IFS=';' read -r -a CASES <<< "$PROFILES"
i=0
for case_args in "${CASES[@]}"; do
    i=$((i + 1))
    [ "$(left)" -lt 30 ] && { say "profile $i: not run (time)"; continue; }
    say "profile $i: $case_args"
    # shellcheck disable=SC2086
    timeout $(( $(left) - 20 )) "$PY" bench/profile_case.py $case_args > "$OUT/profile_$i.log" 2>&1
    grep "===" "$OUT/profile_$i.log" || tail -n 20 "$OUT/profile_$i.log"
done

if [ "$(left)" -gt 45 ]; then
    say "bench_mixgan --targets-only"
    timeout $(( $(left) - 10 )) "$PY" bench/bench_mixgan.py --device cuda --targets-only --rounds 5 \
        > "$OUT/bench_mixgan_targets.log" 2>&1
    grep -v "^W" "$OUT/bench_mixgan_targets.log" | tail -n 12
fi
say "done"
