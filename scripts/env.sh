# Sourced by scripts: puts the repo's venv first and points ONNX Runtime users at its library.
# shellcheck shell=bash
TREESITS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$TREESITS_ROOT/.venv/bin:$PATH"
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ort_lib=$(ls "$TREESITS_ROOT"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -n 1 || true)
  [ -n "$ort_lib" ] && export ORT_DYLIB_PATH="$ort_lib"
fi
