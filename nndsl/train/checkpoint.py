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


MAX_STATE_JSON = 1 << 30    # no state nndsl writes comes near this
DAMAGED = ("the run folder was changed or damaged since nndsl wrote it; resume an intact run, "
           "or start again (init = \"RUN/checkpoints/best.safetensors\" keeps its weights)")


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


class BadState(ValueError):
    """A checkpoint's state that :func:`pack` cannot have written: ``where`` is its field."""

    def __init__(self, where: str, message: str):
        super().__init__(f"`{where}` {message}")
        self.where, self.message = where, message


def unpack(data, tensors: dict, where: str = "state"):
    """The inverse of :func:`pack`; :class:`BadState` for anything it cannot have written."""
    if isinstance(data, list):
        return [unpack(v, tensors, f"{where}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, dict):
        if len(data) != 1:
            raise BadState(where, "is not a value a checkpoint holds")
        (tag, inner), = data.items()
        if tag == "__tensor__":
            if not isinstance(inner, str) or inner not in tensors:
                raise BadState(where, f"names the tensor {json.dumps(inner)[:80]}, which the "
                                      f"state tensors file does not hold")
            return tensors[inner]
        if tag == "__dict__":
            if not isinstance(inner, dict):
                raise BadState(where, "is not a value a checkpoint holds")
            return {k: unpack(v, tensors, f"{where}.{k}") for k, v in inner.items()}
        if tag == "__pairs__":
            if not isinstance(inner, list) or not all(isinstance(kv, list) and len(kv) == 2
                                                      for kv in inner):
                raise BadState(where, "is not a value a checkpoint holds")
            out = {}
            for k, v in inner:
                key = unpack(k, tensors, where)
                if not isinstance(key, (int, float, str, bool, tuple)) and key is not None:
                    raise BadState(where, "has a key a checkpoint never holds")
                out[key] = unpack(v, tensors, f"{where}.{key}")
            return out
        if tag == "__tuple__":
            if not isinstance(inner, list):
                raise BadState(where, "is not a value a checkpoint holds")
            return tuple(unpack(v, tensors, f"{where}[{i}]") for i, v in enumerate(inner))
        raise BadState(where, "is not a value a checkpoint holds")
    return data


def _writes(fn):
    """``fn`` with a failed write (a full disk, a folder removed or made read-only) turned
    into a clear error naming the path."""
    import functools

    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        try:
            return fn(path, *args, **kwargs)
        except OSError as e:
            where = e.filename or path
            raise TrainError(f"cannot write {where}: {e.strerror or e}", code="E1228",
                             hint="check that the run folder is writable and the disk has "
                                  "room; the files already written are complete") from None
    return wrapper


def _save_tensors(path: Path, tensors: dict, metadata: dict) -> None:
    from safetensors.torch import save
    atomic_write_bytes(path, save(tensors, metadata={k: str(v) for k, v in metadata.items()}))


def weights_for_file(state_dict) -> dict:
    """A module's state dict, as separate contiguous CPU tensors (safetensors refuses shared
    storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}


@_writes
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
    from nndsl.train.paths import regular_file
    for p in paths:
        regular_file(p, "the checkpoint file", "E1218",
                     limit=MAX_STATE_JSON if p.suffix == ".json" else None)
    meta = read_json(paths[2], "the checkpoint file")
    try:
        if not isinstance(meta, dict) or not isinstance(meta.get("token"), str) or \
                "state" not in meta:
            raise TrainError(f"{paths[2]} is not a checkpoint's state: it needs an object "
                             f"with `token` and `state`", code="E1218", hint=DAMAGED)
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
    except (OSError, ValueError, SafetensorError) as e:
        raise TrainError(f"cannot read the checkpoint in {folder}: {e}", code="E1218",
                         hint=DAMAGED) from None
    weights, tensors = out
    try:
        state = unpack(meta["state"], tensors)
    except BadState as e:
        raise TrainError(f"{paths[2]}: {e}", code="E1218", hint=DAMAGED) from None
    except RecursionError:
        raise TrainError(f"cannot read {paths[2]}: nested too deeply", code="E1218",
                         hint=DAMAGED) from None
    return weights, state


def read_json(path: Path, what: str, limit: int = MAX_STATE_JSON):
    """A JSON file of a run folder: a regular file, not too large, valid JSON."""
    from nndsl.train.paths import regular_file
    regular_file(path, what, "E1218", limit=limit)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise TrainError(f"cannot read {path}: it is not UTF-8 JSON", code="E1218",
                         hint=DAMAGED) from None
    except json.JSONDecodeError as e:
        raise TrainError(f"cannot read {path}: not valid JSON (line {e.lineno}, column "
                         f"{e.colno})", code="E1218", hint=DAMAGED) from None
    except RecursionError:
        raise TrainError(f"cannot read {path}: nested too deeply", code="E1218",
                         hint=DAMAGED) from None
    except OSError as e:
        raise TrainError(f"cannot read {path}: {e.strerror or e}", code="E1218") from None


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


@_writes
def write_metrics(path: Path, history: list) -> None:
    atomic_write_text(path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in history))
