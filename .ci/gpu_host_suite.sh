#!/usr/bin/env bash
# The whole test suite on a CUDA host whose image already has torch, timm and the scientific stack
# (an NVIDIA H200 host's, docs/PERFORMANCE.md): the packages it lacks travel as wheels in .whl/ (34 MB), fetched
# here at the pins of requirements*.txt and of this venv (2026-11-27):
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux1_x86_64 -d .whl \
#     streamlit==1.67.0 umap-learn==0.5.12 pynndescent==0.7.0 plotly==7.1.0 captum==0.9.0 altair==6.3.0 \
#     itsdangerous==2.2.0 pydeck==0.9.3 python-multipart==0.0.34 starlette==1.10.0 uvicorn==0.54.0 \
#     watchdog==7.1.0 websockets==17.4 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
#     referencing==0.37.0 rpds-py==2026.9.1
# Run from the repository root; results land in $OUT (default ./gpu-suite-out). PYTEST_ARGS picks tests.
OUT=${OUT:-gpu-suite-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/env.txt"
python3 -c "import torch,timm,captum,streamlit,umap,huggingface_hub as h,sys;print(sys.version.split()[0],torch.__version__,timm.__version__,captum.__version__,streamlit.__version__,h.__version__,torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/env.txt"
python3 -c "from modelgif_core import resolve_device;print('auto ->', resolve_device('auto'))" 2>&1 | tee -a "$OUT/env.txt"
timeout "${SUITE_S:-400}" python3 -m pytest -q -p no:cacheprovider -rfEs --durations=15 --junitxml="$OUT/junit.xml" ${PYTEST_ARGS:-} > "$OUT/suite.txt" 2>&1
echo "suite rc=$?" | tee -a "$OUT/suite.txt"
tail -60 "$OUT/suite.txt"
