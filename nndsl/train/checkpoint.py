"""The run folder and its checkpoints, written atomically and without pickle.

::

    RUN/config.json                    the resolved configuration
    RUN/metrics.jsonl                  one record per epoch (train_/val_/test_ keys)
    RUN/summary.json                   best epoch, final and test results, time
    RUN/checkpoints/last.safetensors   weights in the spec's names (``--weights`` takes them)
    RUN/checkpoints/last.state.safetensors   optimizer tensors, RNG states, epoch accumulators
    RUN/checkpoints/last.state.json    everything else: epoch, step, schedule, early stopping,
                                       the optimizer's non-tensor state, history
    RUN/checkpoints/best.*             the same, for the best epoch by ``monitor``
    RUN/plots/*.png                    loss, metric and learning-rate curves

Every file is written to a temporary name and renamed. The three files of a checkpoint carry
the same token (the global step and a write counter); a resume checks that they agree, so a run
killed between two of the renames is detected rather than resumed from mixed states.

Nested state (an optimizer's ``state_dict``) is split by :func:`pack` into JSON and a flat dict
of tensors; :func:`unpack` puts it back. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

from nndsl.errors import TrainError
from nndsl.fsutil import atomic_write_bytes, atomic_write_text


def pack(obj, tensors: dict | None = None, prefix: str = "t"):
    """``obj`` as JSON-able data plus a dict of tensors it refers to by key."""
    import torch
    if tensors is None:
        tensors = {}
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}.{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}, tensors
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: pack(v, tensors, prefix)[0] for k, v in obj.items()}}, tensors
        return {"__pairs__": [[pack(k, tensors, prefix)[0], pack(v, tensors, prefix)[0]]
                              for k, v in obj.items()]}, tensors
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, tensors, prefix)[0] for v in obj]}, tensors
    if isinstance(obj, list):
        return [pack(v, tensors, prefix)[0] for v in obj], tensors
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj, tensors
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def unpack(data, tensors: dict):
    if isinstance(data, list):
        return [unpack(v, tensors) for v in data]
    if isinstance(data, dict):
        if "__tensor__" in data:
            return tensors[data["__tensor__"]]
        if "__dict__" in data:
            return {k: unpack(v, tensors) for k, v in data["__dict__"].items()}
        if "__pairs__" in data:
            return {unpack(k, tensors): unpack(v, tensors) for k, v in data["__pairs__"]}
        if "__tuple__" in data:
            return tuple(unpack(v, tensors) for v in data["__tuple__"])
    return data


def _save_tensors(path: Path, tensors: dict, metadata: dict) -> None:
    from safetensors.torch import save
    atomic_write_bytes(path, save(tensors, metadata={k: str(v) for k, v in metadata.items()}))


def weights_for_file(state_dict) -> dict:
    """A module's state dict, as separate contiguous CPU tensors (safetensors refuses shared
    storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}


def save_checkpoint(folder: Path, tag: str, weights: dict, state: dict, token: str) -> None:
    """Write ``tag``'s three files: state tensors, weights, then the JSON (last)."""
    folder.mkdir(parents=True, exist_ok=True)
    data, tensors = pack(state)
    _save_tensors(folder / f"{tag}.state.safetensors", tensors, {"nndsl.token": token})
    _save_tensors(folder / f"{tag}.safetensors", weights_for_file(weights),
                  {"nndsl.token": token, "format": "pt"})
    atomic_write_text(folder / f"{tag}.state.json",
                      json.dumps({"token": token, "state": data}, indent=1) + "\n")


def load_checkpoint(folder: Path, tag: str = "last") -> tuple[dict, dict]:
    """(weights, state) of a checkpoint, after checking its files belong together."""
    from safetensors import SafetensorError, safe_open
    paths = [folder / f"{tag}.safetensors", folder / f"{tag}.state.safetensors",
             folder / f"{tag}.state.json"]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise TrainError(f"no checkpoint to resume: {missing[0]} is missing", code="E1218",
                         hint="resume a run folder written by `nndsl train --out DIR`")
    try:
        meta = json.loads(paths[2].read_text(encoding="utf-8"))
        out = []
        for p in paths[:2]:
            with safe_open(str(p), framework="pt") as f:
                token = (f.metadata() or {}).get("nndsl.token")
                if token != meta.get("token"):
                    raise TrainError(f"the checkpoint in {folder} is incomplete: {p.name} is from "
                                     f"another save than {paths[2].name} (the run was stopped "
                                     f"while saving)", code="E1218",
                                     hint=f"resume from {folder / 'best.safetensors'} with "
                                          f"init, or start again")
                out.append({k: f.get_tensor(k) for k in f.keys()})
    except (OSError, ValueError, SafetensorError, json.JSONDecodeError) as e:
        raise TrainError(f"cannot read the checkpoint in {folder}: {e}", code="E1218") from None
    weights, tensors = out
    return weights, unpack(meta["state"], tensors)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def write_metrics(path: Path, history: list) -> None:
    atomic_write_text(path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in history))
