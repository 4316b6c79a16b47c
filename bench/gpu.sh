#!/usr/bin/env bash
# Every GPU figure in one run (python -m bench.gpu), style transfer first, within 8 minutes of device time:
# `bench/gpu.sh` on the GPU box, `bench/gpu.sh --smoke` anywhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python=python3
cd "$here/.."  # the benchmarks run as modules of the checkout
exec "$python" -m bench.gpu "$@"
