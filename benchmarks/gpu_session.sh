#!/usr/bin/env bash
# What a session with the GPU machine (the `device` tool) runs, kept in the repository so that it survives
# sandbox resets (session 12 found the git-ignored .devcarry/ of earlier sessions gone).
#
#   bash benchmarks/gpu_session.sh prepare             # here: copy what GPU runs need from ../shared (~21 MB)
#   bash benchmarks/gpu_session.sh tests               # on the device (carry [".devcarry"]): GPU tests
#   bash benchmarks/gpu_session.sh pipe CONFIG [S]     # on the device: crnet pipeline CONFIG for at most S s
#                                                      # (default 540, at most 560); a later call resumes from the
#                                                      # stage markers
#
# ../shared does not travel to the device, so `prepare` copies the GALPROP reference run crml_base (tests and the
# GALPROP timing in benchmark tables) and GALPROP's internals of crml_base (the emulated-kernel test) into the
# git-ignored .devcarry/shared, which the device commands point CRNET_SHARED at. Results are copied under $OUT.
#
# The device tool (/work/.library/device/README.md) ends a command at 600 s and brings back at most 8 files from
# $OUT, so `pipe` keeps S below that (the rest is for packing) and packs the run's small outputs (reports, timings,
# figures, stage markers) into one archive, $OUT/pipe_results.tar.gz (here: tar xzf it into
# benchmarks/results/<name>), beside the whole log, $OUT/pipeline_log.txt. Exit status of `pipe`: 0 the pipeline
# finished, 3 it was stopped at S s (call `pipe` again to resume), otherwise the pipeline's own. Resuming needs the
# same machine: the run directory ([run] out, git-ignored) stays on the device, which is given back 30 s after a
# call (and after 30 min held), so make the next `pipe` call at once; a fresh machine starts the run from the start.
set -euo pipefail
if [ -n "${OUT:-}" ]; then  # a relative $OUT is the caller's, not the repository root's
  mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
fi
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
    limit="${3:-540}"
    if ! [[ "$limit" =~ ^[1-9][0-9]*$ ]] || (( limit > 560 )); then
      echo "pipe: SECONDS must be 1..560 (the device ends a command at 600 s), got '$limit'" >&2
      exit 2
    fi
    out_dir=$OUT
    export CRNET_SHARED="$PWD/$CARRY" PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
    # the run directory as the pipeline resolves it (a config that does not load fails here, before any work)
    run_dir=$(python -c "import sys; from crnet.pipeline_config import load_config as c; print(c(sys.argv[1]).out)" \
      "$config")
    set +e
    # the whole log under $OUT (it comes back even if the device ends the command) and on stdout (the call's tail)
    timeout -k 20 "$limit" python -c "from crnet.cli import app; app()" pipeline "$config" 2>&1 \
      | tee "$out_dir/pipeline_log.txt"
    rc=${PIPESTATUS[0]}
    set -e
    # small outputs only, as one file: reports, timings, figures, markers, and the closure tests'
    # evaluation/closure/*/closure.npz that benchmarks/oracle_table4.py reads (--results <name>/evaluation once
    # unpacked in benchmarks/results/<name>); stores and models stay on the device
    packed="no archive: $run_dir does not exist"
    if [ -d "$run_dir" ]; then
      if (cd "$run_dir" && find . -type f \( -name '*.md' -o -name '*.json' -o -name '*.png' -o -name '*.txt' \
            -o -name 'closure.npz' \) -size -5M -print0 | tar -czf "$out_dir/pipe_results.tar.gz" --null -T -); then
        size=$(stat -c %s "$out_dir/pipe_results.tar.gz")
        packed="outputs of $run_dir in pipe_results.tar.gz ($size bytes)"
        (( size < 16 * 1024 * 1024 )) || packed="$packed: over 16 MiB, it will not come back"
      else
        packed="could not pack $run_dir"
      fi
    fi
    case $rc in
      0) what="finished" ;;
      124) what="stopped at the ${limit} s limit: call pipe again now (same machine) to resume"; rc=3 ;;
      137) what="killed (SIGKILL: 20 s after the time limit, or out of memory)" ;;
      *) what="failed" ;;
    esac
    echo "pipeline exit $rc: $what; $packed" | tee -a "$out_dir/pipeline_log.txt"
    exit "$rc"
    ;;
  *)
    echo "usage: $0 prepare | tests | pipe CONFIG [SECONDS]" >&2
    exit 2
    ;;
esac
