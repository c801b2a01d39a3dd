"""Compression options (``--quantize``, ``--group``, ``--prune``) and the passes they add.

One :class:`Compression` names what a user asked for; :meth:`Compression.passes` turns it into
passes for :func:`nndsl.passes.pipeline.run_pipeline`: pruning runs *before* the level's
pipeline (on the graph as written, where every layer, norm and activation is its own node),
quantization *after* it (on the optimized graph, so a merged QKV projection or a folded
convolution is quantized as one layer).
"""

from __future__ import annotations

from dataclasses import dataclass

from nndsl.errors import ArgumentError
from nndsl.passes import prune as prune_passes
from nndsl.passes import quantize as quant_passes
from nndsl.passes.pipeline import Pass

# QAT: the training form of a precision, by its bits; the trained weights convert with the
# weight-only scheme of the same bits (int8-weight's q · s is what int8 QAT rounds to).
QAT = {"int8": 8, "int4": 4}


@dataclass(frozen=True)
class Compression:
    quantize: str | None = None
    group: int | None = None
    prune: str | None = None
    keep: tuple = ()                     # scopes left in float by quantization
    prune_scopes: tuple | None = None    # scopes pruned (None: all)
    prune_exclude: tuple = ()            # scopes never pruned
    qat: str | None = None               # quantization-aware training: int8 | int4
    calibrate: object = None             # int8-static: a built-in data set name or a path
    observer: str = "minmax"             # int8-static: how calibration ranges are read

    def __post_init__(self):
        for key in ("quantize", "prune", "qat"):
            self.check_entry(key, getattr(self, key))
        if self.quantize is not None:
            quant_passes.check_options(self.quantize, self.group)
        elif self.group is not None and self.qat is None:
            raise ArgumentError("--group needs --quantize int8-weight or int4-weight",
                                code="E0254")
        if (self.quantize == "int8-static") != (self.calibrate is not None):
            raise ArgumentError("int8-static needs calibration data (--calibrate NAME|PATH), "
                                "and --calibrate is for int8-static only", code="E0237",
                                hint="e.g. --quantize int8-static --calibrate digits")
        if self.qat is not None and self.quantize is not None:
            raise ArgumentError("--qat trains with quantization noise; quantize the trained "
                                "weights afterwards, not in the same compile", code="E0235",
                                hint="train with --qat, then nndsl compile --quantize ... "
                                     "--weights the run's best.safetensors")

    @staticmethod
    def check_entry(key: str, value) -> None:
        """The checks of one option on its own (the others are checked together)."""
        if value is None:
            return
        if key == "quantize":
            quant_passes.check_options(value, None)
        elif key == "prune":
            prune_passes.parse_prune(value)
        elif key == "qat" and value not in QAT:
            raise ArgumentError(f"--qat {value} has no training form", code="E0235",
                                hint="quantization-aware training takes int8 or int4 (f16 and "
                                     "bf16 train with --amp)")

    @property
    def empty(self) -> bool:
        return self.quantize is None and self.prune is None and self.qat is None

    @property
    def prune_kind(self):
        return None if self.prune is None else prune_passes.parse_prune(self.prune)

    def before(self, weights_fn) -> list[Pass]:
        """Passes to run before the level's pipeline. ``weights_fn()`` gives the weight values
        channel pruning ranks channels by."""
        if self.prune is None or self.prune_kind[0] == "heads":
            return []
        kind, value = self.prune_kind
        if kind == "channels":
            return [Pass("prune_channels", prune_passes.prune_channels(
                value, weights_fn(), self.prune_scopes, self.prune_exclude),
                f"remove {value:.0%} of the channels", bodies=False)]
        return [Pass(f"prune_{kind}", prune_passes.mask_weights(
            kind, value, self.prune_scopes, self.prune_exclude,
            weights_fn() if kind == "global" else None),
            f"mask weights ({self.prune})", bodies=False)]

    def after(self, weights_fn=None) -> list[Pass]:
        """Passes to run after the level's pipeline: head pruning (it reads the fused attention
        op), then quantization (for inference only) or QAT's noise (for training)."""
        out = []
        if self.prune is not None and self.prune_kind[0] == "heads":
            from nndsl.passes.prune_heads import prune_heads
            out.append(Pass("prune_heads", prune_heads(self.prune_kind[1], weights_fn()),
                            f"remove {self.prune_kind[1]:.0%} of the attention heads",
                            bodies=False))
        if self.quantize is not None and self.quantize != "int8-static":
            opts = quant_passes.QuantOptions(self.quantize, self.group, tuple(self.keep))
            out.append(Pass(f"quantize_{self.quantize.replace('-', '_')}",
                            quant_passes.SCHEMES[self.quantize](opts),
                            f"quantize {self.quantize}", inference_only=True, bodies=False))
        if self.qat is not None:
            out.append(Pass(f"qat_{self.qat}", quant_passes.fake_quantize_weights(
                QAT[self.qat], self.group, tuple(self.keep)),
                f"{self.qat} quantization noise on the weights (QAT)", bodies=False))
        return out

    def static(self, stats: dict) -> list[Pass]:
        """The int8-static pass, once calibration has given ``stats``."""
        from nndsl.passes.quantize_static import static_quantize
        return [Pass("quantize_int8_static", static_quantize(stats, tuple(self.keep)),
                     "quantize int8-static", inference_only=True, bodies=False)]

    def describe(self) -> str:
        parts = []
        if self.prune:
            parts.append(f"prune {self.prune}")
        if self.quantize:
            parts.append(f"quantize {self.quantize}" + (f" (group {self.group})"
                                                       if self.group else "") +
                         (f" (calibrated on {self.calibrate}, {self.observer})"
                          if self.calibrate is not None else ""))
        if self.qat:
            parts.append(f"qat {self.qat}")
        return ", ".join(parts)
