"""Peak memory of one path, measured where it cannot be confused with the others.

On the CPU a path's peak is read in a fresh process that builds only that path and runs it
once (``python -m nndsl.bench.memory``, the path and options as JSON on stdin): the peak
resident size (Linux's ``VmHWM``, reset after the imports) above the resident size before
the build, so weights, workspace and activations count and the other paths' do not. On CUDA
it is torch's own count: ``max_memory_allocated`` over one call, above what was allocated
before it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE_TIMEOUT_S = 600


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def supported() -> bool:
    return _status_kb("VmHWM") is not None


def probe(path, options) -> tuple[int | None, str | None]:
    """(peak bytes, None) for ``path`` built from ``options`` in a fresh process, or
    (None, why not)."""
    if not supported():
        return None, "peak memory is read from /proc (Linux only)"
    msg = json.dumps({"path": path.__dict__, "options": options.to_json()})
    try:
        r = subprocess.run([sys.executable, "-m", "nndsl.bench.memory"], input=msg,
                           capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"the memory probe took over {PROBE_TIMEOUT_S} s"
    try:
        got = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        got = None
    if not isinstance(got, dict):
        tail = (r.stderr.strip().splitlines() or [""])[-1][:200]
        return None, f"the memory probe failed (exit {r.returncode}){': ' + tail if tail else ''}"
    return got.get("peak"), got.get("error")


def cuda_peak(built) -> int:
    import torch
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    built.call()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _main() -> int:
    import gc
    import importlib
    for name in ("torch", "onnxruntime"):    # loaded before the baseline, as in the parent
        importlib.import_module(name)

    from nndsl.bench.paths import Options, PathSpec
    from nndsl.errors import NndslError
    d = json.loads(sys.stdin.read())
    path, options = PathSpec(**d["path"]), Options.from_json(d["options"])
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")   # the peak so far becomes the current size
    except OSError:
        print(json.dumps({"peak": None, "error": "the peak resident size cannot be reset here "
                                                 "(/proc/self/clear_refs)"}))
        return 0
    base = _status_kb("VmRSS")
    try:
        path.build(options).call()
    except NndslError as e:
        print(json.dumps({"peak": None, "error": e.message.splitlines()[0]}))
        return 0
    peak = _status_kb("VmHWM")
    print(json.dumps({"peak": (peak - base) * 1024}))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
