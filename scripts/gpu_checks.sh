#!/usr/bin/env bash
# What one short GPU lease checks and measures (docs/benchmarks.md, "On a GPU"), in one go:
#   1. the CUDA-only tests and a pretraining run on the GPU (bf16 autocast, channels_last,
#      views made on the GPU);
#   2. the GPU benchmarks the CPU sections leave open (objective step and NNCLR step against
#      lightly's at the issues' scale, the batched augmentation on the GPU);
#   3. quality runs, many at once (scripts/bench_quality.py --device cuda --jobs N --deadline S):
#      the groups in QUALITY_RUNS (see below), each group's report, and the cache's records.
# Usage, from the repository root on the GPU machine:
#   bash scripts/gpu_checks.sh DATA_DIR OUT_DIR [QUALITY_SECONDS]
# DATA_DIR holds the files the runs read (bloodmnist.npz, pneumoniamnist.npz,
# pathmnist_train_first1000.npz, he_patches_96x96_unlabeled.npz from ../shared/data); OUT_DIR
# gets the logs and a tarball of the quality cache's records (specs, training and
# evaluation JSON; no encoders), which `tar xzf` into a local cache makes readable by
# bench_quality.py --device cuda --no-train. QUALITY_RUNS (below) overrides what trains.
set -u
DATA=$(realpath "$1")
OUT=$(realpath "$2")
QSEC=${3:-300}  # no quality run starts after this many seconds
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
T0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - T0 )) s: $*"; }

# the tests read ../shared/data; the DATA files stand in for it
mkdir -p ../shared/data/medmnist ../shared/data/histology
ln -sf "$DATA/bloodmnist.npz" "$DATA/pathmnist_train_first1000.npz" ../shared/data/medmnist/ 2>/dev/null
ln -sf "$DATA/he_patches_96x96_unlabeled.npz" ../shared/data/histology/ 2>/dev/null

{
  stamp "machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, timm, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc
  stamp "CUDA tests"
  timeout 150 python3 -m pytest -q -p no:cacheprovider -rs tests/eval/test_knn.py tests/eval/test_features.py \
    tests/reliability/test_numerical_faults.py tests/test_device.py tests/augment/test_gpu.py \
    tests/scripts/test_benchmarks_smoke.py -k "cuda or CUDA or device or Device or gpu" 2>&1 | tail -15
  stamp "pretrain on the GPU (demo config, embedded sample)"
  python3 -m medssl data sample sample_data >/dev/null 2>&1
  timeout 120 python3 -m medssl pretrain configs/demo.yaml --no-progress train.device=cuda out_dir=/tmp/run_demo 2>&1 | tail -8
  ls /tmp/run_demo 2>&1 | head
  stamp "done"
} > "$OUT/checks.log" 2>&1

{
  stamp "objective step at the issue's scale (ResNet-18, 32 px, batch 256, |Q| 65536)"
  timeout 150 python3 scripts/bench_objectives.py --backbone resnet18 --image-size 32 --batch 256 --queue 65536 \
    --iters 20 --warmup 5 --device cuda 2>&1 | tail -30
  stamp "NNCLR step against lightly's at the issue's scale (96 px, batch 256, |Q| 65536)"
  timeout 150 python3 scripts/bench_train_step.py --image-size 96 --batch 256 --queue 65536 --iters 20 --warmup 5 \
    --device cuda --split-views 2>&1 | tail -12
  stamp "augmentation throughput with the CUDA column"
  timeout 120 python3 scripts/bench_augment.py --sizes 28 64 96 --images 300 --batch-size 256 --batches 3 \
    --threads 1 --data "$DATA/he_patches_96x96_unlabeled.npz" 2>&1 | tail -20
  stamp "done"
} > "$OUT/bench.log" 2>&1

stamp "quality" > "$OUT/quality.log"
# QUALITY_RUNS: one bench_quality.py argument line per concurrent group (each with its own
# --jobs; 14 workers in all fit the machine's 16 cores). The default is what the ninth round
# (2026-11-30, CPU only) left open: the 300-step table under BloodMNIST's colour-keeping config
# has three CPU seeds of pNNCLR, SNCLR and PSM, two of SimCLR and none of NNCLR, and lightly's
# rows at 300 steps have one CPU seed (the GPU twins of all of them, 3 seeds, check the CPU
# table and complete it); the colour ablation's peer and light-colour rows at both budgets.
# Earlier leases ran "--plan table --split test --steps 100 300 --seeds 0 1 2 --jobs 10" and
# "--plan ablate-nn-lightly --split val --steps 300 --seeds 0 1 --jobs 4".
QUALITY_RUNS=${QUALITY_RUNS:-"--plan table --split test --steps 300 --seeds 0 1 2 --rows 'medssl simclr' 'medssl nnclr' 'medssl pnnclr' 'medssl snclr' 'medssl psm' 'lightly simclr' 'lightly nnclr' --jobs 8
--plan ablate-colour --split val --steps 100 300 --seeds 0 1 --rows 'lightly simclr' 'lightly simclr, no colour ops' 'simclr + no colour ops' 'pnnclr + no colour ops' 'simclr + light colour' 'pnnclr + light colour' --jobs 4
--plan table --dataset pathmnist-1000 --split cv --steps 100 --seeds 0 1 2 --jobs 2"}
# one CPU thread per worker; a run started just before the deadline still has 180 s to
# finish (a 300-step run under this load), then the workers are stopped so the reports and
# the tarball always come back
export OMP_NUM_THREADS=1
Q="timeout $((QSEC + 180)) python3 scripts/bench_quality.py --cache /tmp/qc --data-dir $DATA --device cuda --deadline $QSEC"
n=0
while IFS= read -r line; do
  [ -z "$line" ] && continue
  n=$((n + 1))
  eval "$Q $line" > "$OUT/quality_$n.log" 2>&1 &
  sleep 5
done <<< "$QUALITY_RUNS"
wait
stamp "reports" >> "$OUT/quality.log"
while IFS= read -r line; do
  [ -z "$line" ] && continue
  # the same report, from the cache, without training (a --jobs option is harmless there)
  eval "python3 scripts/bench_quality.py --cache /tmp/qc --data-dir $DATA --device cuda --no-train $line" \
    >> "$OUT/quality.log" 2>&1
done <<< "$QUALITY_RUNS"
(cd /tmp/qc && tar czf "$OUT/quality_records.tgz" --exclude='*.safetensors' --exclude=sample_data .)
stamp "end" >> "$OUT/quality.log"
