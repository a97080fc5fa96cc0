#!/usr/bin/env bash
# GPU benchmarks on a machine with JAX (CUDA) and no TensorFlow, no Keras, no network.
#
# Here (with network), once, in the repository root:
#   benchmarks/gpu.sh --prepare        # wheels -> .whl/, CIFAR-10 copy -> .gpu_data/cifar10
#                                      # (both listed in .git/info/exclude)
# There (carry .whl and .gpu_data), in the repository root:
#   benchmarks/gpu.sh --data-dir .gpu_data/cifar10 --out "$OUT"
#
# What it does:
#   1. installs the carried wheels (keras, namex, optree: what keras needs that the GPU
#      image lacks; absl-py, h5py, ml-dtypes, numpy, packaging, rich, pillow are there)
#      with `pip install --no-index --no-deps` into a private folder, then keras_lrn
#      itself with --no-deps;
#   2. the throughput table (benchmarks/throughput.py, JAX backend) for LruNet-14,
#      ResNet56-S16U1, SWRN-28-10-6, EpsilonResNet-110 and RLA-ResNet50 in float32 and
#      mixed bfloat16 (a model that is not registered is skipped with a message);
#   3. one real CIFAR-10 training run: ResNet-56, 15 epochs, the full training and test
#      sets, numpy input pipeline (no TensorFlow), test top-1 and wall time
#      (benchmarks/efficiency.py);
#   4. writes OUT/throughput.jsonl, OUT/train/efficiency.{csv,jsonl,png} and the
#      markdown table OUT/gpu.md (benchmarks/gpu_report.py).
#
# GPU_SH_DRY=1: CPU dry mode -- tiny batches, 2 timed steps, a 1-epoch training run of
# 2 steps on 256 images -- to check the whole no-TensorFlow path without a GPU.
# GPU_SH_MODELS overrides the throughput models (registry names, space separated).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
WHEELS=${GPU_SH_WHEELS:-.whl}
DATA_DIR=.gpu_data/cifar10
OUT=${OUT:-gpu_out}
PREPARE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA_DIR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --prepare) PREPARE=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$PREPARE" = 1 ]; then
  SRC=${GPU_SH_DATA_SRC:-../shared/datasets/cifar10}
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" keras==3.15.1 namex==0.1.0 optree==0.20.0
  mkdir -p "$(dirname "$DATA_DIR")"
  rm -rf "$DATA_DIR" && cp -r "$SRC" "$DATA_DIR"
  if [ -d .git/info ]; then
    for p in "/$WHEELS/" "/${DATA_DIR%%/*}/"; do
      grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
    done
  fi
  du -sh "$WHEELS" "$DATA_DIR"
  exit 0
fi

DRY=${GPU_SH_DRY:-0}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3

# 1. Keras and keras_lrn, offline.
SITE=${GPU_SH_SITE:-/tmp/keras_lrn_site}
if ! $PY -c "import keras" 2>/dev/null; then
  echo "== installing the carried wheels from $WHEELS"
  ls "$WHEELS"/*.whl >/dev/null
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! $PY -c "import keras_lrn.callbacks" 2>/dev/null; then
  echo "== installing keras_lrn (--no-deps)"
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade \
    --target "$SITE" .
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
$PY - <<'EOF'
import importlib.util, jax, keras, keras_lrn
tf = importlib.util.find_spec("tensorflow") is not None
print(f"keras {keras.__version__} ({keras.backend.backend()}), jax {jax.__version__}, "
      f"devices {jax.devices()}, tensorflow importable: {'yes' if tf else 'no'}")
EOF

# 2. Throughput, float32 and mixed bfloat16.
MODELS=${GPU_SH_MODELS:-"lrunet14_cifar10 resnet56_s16u1 swrn28_10_6_cifar10 epsilon_resnet110 rla_resnet50"}
if [ "$DRY" = 1 ]; then
  TP_ARGS=(--batch-size 4 --steps 2 --warmup 1 --rounds 1)
else
  TP_ARGS=(--batch-size 128 --steps 20 --warmup 3 --rounds 3)
fi
: > "$OUT/throughput.jsonl"
for m in $MODELS; do
  if ! $PY -c "import sys; from keras_lrn import models; sys.exit(sys.argv[1] not in models.list_models())" "$m"; then
    echo "== skip $m: not registered"
    echo "{\"model\": \"$m\", \"skipped\": \"not registered\"}" >> "$OUT/throughput.jsonl"
    continue
  fi
  for policy in float32 bfloat16; do
    echo "== throughput $m $policy"
    mp=(); [ "$policy" = bfloat16 ] && mp=(--mixed-precision bfloat16)
    $PY benchmarks/throughput.py --backend jax --model "$m" "${TP_ARGS[@]}" "${mp[@]}" \
      --results "$OUT/throughput.jsonl" \
      || echo "{\"model\": \"$m\", \"policy\": \"$policy\", \"failed\": true}" >> "$OUT/throughput.jsonl"
  done
done

# 3. ResNet-56 on CIFAR-10, numpy pipeline.
if [ "$DRY" = 1 ]; then
  TR_ARGS=(--epochs 1 --subset 256 --test-subset 256 --steps-per-epoch 2 --batch-size 32)
else
  TR_ARGS=(--epochs 15 --subset 0 --test-subset 0 --batch-size 128)
fi
echo "== training resnet56 on CIFAR-10 (${TR_ARGS[*]})"
rm -f "$OUT/train/efficiency.jsonl"
$PY benchmarks/efficiency.py --models resnet56 "${TR_ARGS[@]}" --data-dir "$DATA_DIR" \
  --pipeline numpy --out "$OUT/train"

# 4. The markdown table.
$PY benchmarks/gpu_report.py "$OUT" | tee "$OUT/gpu.md"
