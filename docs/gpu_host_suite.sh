#!/usr/bin/env bash
# The whole test suite on a CUDA host whose image already has torch, timm and the scientific stack
# (the lent H200's, docs/PERFORMANCE.md): the packages it lacks travel as wheels in .whl/, fetched here
# with `pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl` at the pins of
# requirements*.txt (streamlit and its server deps, umap-learn, pynndescent, plotly, captum).
# Run from the repository root; results land in $OUT (default ./gpu-suite-out). PYTEST_ARGS picks tests.
OUT=${OUT:-gpu-suite-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/env.txt"
python3 -c "import torch,timm,captum,streamlit,umap,huggingface_hub as h,sys;print(sys.version.split()[0],torch.__version__,timm.__version__,captum.__version__,streamlit.__version__,h.__version__,torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/env.txt"
python3 -c "from modelgif_core.fields import resolve_device;print('auto ->', resolve_device('auto'))" 2>&1 | tee -a "$OUT/env.txt"
timeout "${SUITE_S:-400}" python3 -m pytest -q -p no:cacheprovider -rfEs --durations=15 --junitxml="$OUT/junit.xml" ${PYTEST_ARGS:-} > "$OUT/suite.txt" 2>&1
echo "suite rc=$?" | tee -a "$OUT/suite.txt"
tail -60 "$OUT/suite.txt"
