#!/usr/bin/env bash
# What a session with the GPU machine (the `device` tool) runs, kept in the repository so that it survives
# sandbox resets (session 12 found the git-ignored .devcarry/ of earlier sessions gone).
#
#   bash benchmarks/gpu_session.sh prepare             # here: copy what GPU runs need from ../shared (~21 MB)
#   bash benchmarks/gpu_session.sh tests               # on the device (carry [".devcarry"]): GPU tests
#   bash benchmarks/gpu_session.sh pipe CONFIG [S]     # on the device: crnet pipeline CONFIG for at most S s
#                                                      # (default 560); a later call resumes from the stage markers
#
# ../shared does not travel to the device, so `prepare` copies the GALPROP reference run crml_base (tests and the
# GALPROP timing in benchmark tables) and GALPROP's internals of crml_base (the emulated-kernel test) into the
# git-ignored .devcarry/shared, which the device commands point CRNET_SHARED at. Results are copied under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED_SRC="${CRNET_SHARED:-../shared}"
CARRY=.devcarry/shared

case "${1:-}" in
  prepare)
    rm -rf "$CARRY"
    mkdir -p "$CARRY/reference/galprop" "$CARRY/reference/galprop-internals"
    cp -r "$SHARED_SRC/reference/galprop/crml_base" "$CARRY/reference/galprop/"
    cp "$SHARED_SRC/reference/galprop/README.md" "$CARRY/reference/galprop/"
    cp -r "$SHARED_SRC/reference/galprop-internals/crml_base" "$CARRY/reference/galprop-internals/"
    cp "$SHARED_SRC/reference/galprop-internals/README.md" "$CARRY/reference/galprop-internals/"
    du -sh .devcarry
    ;;
  tests)
    : "${OUT:?run on the device, where \$OUT is set}"
    export CRNET_SHARED="$PWD/$CARRY" PYTHONPATH="$PWD"
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
    python -m pytest -q -m gpu -rs tests/ 2>&1 | tee "$OUT/gpu_tests.txt"
    ;;
  pipe)
    : "${OUT:?run on the device, where \$OUT is set}"
    config="${2:?pipe needs a config, e.g. configs/pipeline_gpu_ensemble_seed2.toml}"
    limit="${3:-560}"
    export CRNET_SHARED="$PWD/$CARRY" PYTHONPATH="$PWD"
    set +e
    timeout "$limit" python -c "from crnet.cli import app; app()" pipeline "$config" 2>&1 | tail -n 200 \
      > "$OUT/pipeline_log.txt"
    rc=${PIPESTATUS[0]}
    set -e
    run_dir=$(python -c "import tomllib,sys; print(tomllib.load(open(sys.argv[1],'rb'))['run']['out'])" "$config")
    # small outputs only (reports, timings, figures, markers); stores and models stay on the device
    (cd "$run_dir" && find . -type f \( -name '*.md' -o -name '*.json' -o -name '*.png' -o -name '*.txt' \) \
      -size -5M -print0 | xargs -0 -I{} cp --parents {} "$OUT/") || true
    echo "pipeline exit $rc (124 = stopped at the time limit; re-run to resume)" | tee -a "$OUT/pipeline_log.txt"
    ;;
  *)
    echo "usage: $0 prepare | tests | pipe CONFIG [SECONDS]" >&2
    exit 2
    ;;
esac
