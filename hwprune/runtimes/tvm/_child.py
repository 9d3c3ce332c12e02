"""Compile and export a CUDA library in a child process.

TVM only embeds compiled CUDA kernels when its CUDA runtime is loaded; on a machine
without the NVIDIA driver that needs a compile-only ``libcuda.so.1`` stub loaded into the
process (see :func:`hwprune.runtimes.tvm._enable_cuda_codegen`). That stays in this child,
never in the caller's process. Protocol: argv = ONNX path, target JSON, output folder;
the last stdout line is a JSON object, either the :class:`LinkInfo` or
``{"error": ..., "hint": ..., "type": ...}`` with exit code 1.
"""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from hwprune.errors import HwpruneError
    from hwprune.runtimes import tvm as _tvm

    onnx_path, target_json, out_dir = argv
    try:
        target = json.loads(target_json)
        link = _tvm.compile_library_here(onnx_path, target, out_dir)
    except HwpruneError as exc:
        print(json.dumps({"error": str(exc), "hint": exc.hint, "type": type(exc).__name__}))
        return 1
    print(json.dumps(link.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
