#!/usr/bin/env bash
# The GPU measurements of ghostsearch on any CUDA machine, in parts that can run one at a time:
#
#   DATA_DIR=/path/to/cifar10 bash scripts/gpu_figures.sh latency bench variants jobs search fidelity
#
# DATA_DIR holds train/<class>/*.jpg and test/<class>/*.jpg. Results go under $OUT (default
# results/gpu). `search` stops after 480 s; rerun it and it resumes the same study from
# results/gpu-search/study.db. JOBS="1 2 4" picks the worker counts of `jobs` (default 1 2 4 8);
# FIDELITY="..." replaces the arguments of `fidelity`. DEVICE=cpu QUICK=1 runs every part on
# tiny settings, to check the script without a GPU (its figures mean nothing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-results/gpu}
data=${DATA_DIR:?set DATA_DIR to the JPEG CIFAR-10 folder (train/, test/)}
device=${DEVICE:-cuda}
quick=${QUICK:-0}
mkdir -p "$out"
py() { echo "+ python $*" >&2; python "$@"; }
if [ "$quick" = 1 ]; then
  small=(--train-subset 256 --epochs 2) pbatch=(--batch-size 64)
  lat=(--runs 5 --warmup 1) table=(--archs 3 --eval 2 --runs 3)
  bench=(--searched 1 --naive-batch 32 --workers 0) jobs=(--jobs 1 2 --trials-per-job 1)
  search=(--trials 3 --n-jobs 2) fidelity=(--archs 3 --epochs 1 --factor 2 --seeds 2)
  batches=(--batch-size 64 32) variants=fp32
else
  small=() pbatch=() lat=(--runs 200 --warmup 20) table=(--archs 20 --eval 50)
  bench=(--searched 2 --naive-batch 128 --workers 8)
  read -ra jobs_k <<< "${JOBS:-1 2 4 8}"
  jobs=(--jobs "${jobs_k[@]}" --trials-per-job 2)
  search=(--trials 40 --n-jobs 4 --timeout 480)
  read -ra fidelity <<< "${FIDELITY:---archs 12 --epochs 5 --factor 4 --seeds 3}"
  batches=(--batch-size 512 1024) variants=cuda-graphs,fp32,no-cudnn
fi
common=(--data imagefolder --data-dir "$data" --device "$device")

for part in "$@"; do
  case $part in
    latency)  # reference GhostNets at batch 1 and 256, then the per-op table and its error
      py scripts/latency.py --device "$device" --batch 1 256 "${lat[@]}" \
        --json "$out/latency-reference-$device.json"
      py scripts/build_latency_table.py --space ghostnet --device "$device" "${table[@]}" \
        --out "$out/latency/ghostnet-$device.json" ;;
    bench)  # per-phase trial times of 3 architectures, the naive loop, a profiled first step
      py scripts/bench_proxy.py "${common[@]}" "${small[@]}" "${pbatch[@]}" "${bench[@]}" \
        --jobs --profile "$out/profile" --json "$out/bench-proxy-$device.json" ;;
    variants)  # what the warm-up and the steady epoch are made of, and larger batches
      py scripts/bench_proxy.py "${common[@]}" "${small[@]}" "${batches[@]}" --searched 0 \
        --naive-archs 0 --variants "default,$variants" --jobs \
        --json "$out/bench-variants-$device.json" ;;
    jobs)  # trials per hour with K concurrent workers
      py scripts/bench_proxy.py "${common[@]}" "${small[@]}" "${pbatch[@]}" --searched 0 \
        --naive-archs 0 "${jobs[@]}" --json "$out/bench-jobs-$device.json" ;;
    search)  # a 40-trial search at 200 MFLOPs, report and best_arch.json under $out/search
      mkdir -p results/gpu-search
      py scripts/search.py --budget 200MFLOPs "${common[@]}" "${small[@]}" "${pbatch[@]}" \
        "${search[@]}" --study-name gpu-200M --out "$out/search" \
        --storage sqlite:///results/gpu-search/study.db ;;
    fidelity)  # Kendall tau / Spearman rho of the proxy against a 4x longer schedule
      py scripts/proxy_fidelity.py --budget 200MFLOPs "${common[@]}" "${small[@]}" \
        "${pbatch[@]}" "${fidelity[@]}" --json "$out/fidelity-$device.json" ;;
    *) echo "error: unknown part '$part': choose from latency bench variants jobs search fidelity" >&2
       exit 2 ;;
  esac
done
