#!/usr/bin/env bash
# Every GPU figure of the scale issue, in one command, on a machine with an NVIDIA GPU:
#
#   bash benchmarks/gpu.sh            # from the repository root; ~20-30 min on an H100
#
# It makes .venv-gpu with JAX's CUDA 12 build (same JAX version as constraints.txt), then:
#   1. benchmarks/scale.py --device gpu: patient-years/s at 1e3, 1e4, 1e5, 1e6 patients, the
#      100-replicate packed-vs-one-by-one MAP bootstrap, and the CPU/GPU crossover batch size
#      (the value for itp_pd.devices.GPU_MIN_BATCH)      → benchmarks/results/scale_gpu.json
#   2. benchmarks/fit.py on the GPU: the 120-patient NUTS benchmark (4 chains x 500+500)
#                                                         → benchmarks/results/fit_gpu.json
# and prints both JSON files. Nothing here runs in CI (which has no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv-gpu/bin/python ]; then
  "$PYTHON" -m venv .venv-gpu
  .venv-gpu/bin/python -m pip install -q --upgrade pip
  .venv-gpu/bin/python -m pip install -q -c constraints.txt -e .
  # The CUDA plugin of the pinned jaxlib (pip resolves the matching jax-cuda12-* wheels).
  .venv-gpu/bin/python -m pip install -q "jax[cuda12]==$(grep '^jax==' constraints.txt | cut -d= -f3)"
fi
.venv-gpu/bin/python -c "import jax; gpus = jax.devices('gpu'); print('GPU:', gpus)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
.venv-gpu/bin/python benchmarks/scale.py --device gpu --patients 1000 10000 100000 1000000 --crossover \
  --out benchmarks/results/scale_gpu.json
ITP_PD_DEVICE=gpu .venv-gpu/bin/python benchmarks/fit.py --out benchmarks/results/fit_gpu.json
echo "== scale_gpu.json"; cat benchmarks/results/scale_gpu.json
echo "== fit_gpu.json"; cat benchmarks/results/fit_gpu.json
