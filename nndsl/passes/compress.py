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


@dataclass(frozen=True)
class Compression:
    quantize: str | None = None
    group: int | None = None
    prune: str | None = None
    keep: tuple = ()                     # scopes left in float by quantization
    prune_scopes: tuple | None = None    # scopes pruned (None: all)
    prune_exclude: tuple = ()            # scopes never pruned

    def __post_init__(self):
        if self.quantize is not None:
            quant_passes.check_options(self.quantize, self.group)
        elif self.group is not None:
            raise ArgumentError("--group needs --quantize int8-weight or int4-weight",
                                code="E0230")
        if self.prune is not None:
            prune_passes.parse_prune(self.prune)

    @property
    def empty(self) -> bool:
        return self.quantize is None and self.prune is None

    @property
    def prune_kind(self):
        return None if self.prune is None else prune_passes.parse_prune(self.prune)

    def before(self, weights_fn) -> list[tuple[str, object]]:
        """``(name, pass)`` to run before the level's pipeline. ``weights_fn()`` gives the
        weight values channel pruning ranks channels by."""
        if self.prune is None:
            return []
        kind, value = self.prune_kind
        if kind == "channels":
            return [("prune_channels", prune_passes.prune_channels(
                value, weights_fn(), self.prune_scopes, self.prune_exclude))]
        return [(f"prune_{kind}", prune_passes.mask_weights(kind, value, self.prune_scopes,
                                                             self.prune_exclude))]

    def after(self) -> list[tuple[str, object]]:
        """``(name, pass)`` to run after the level's pipeline."""
        if self.quantize is None:
            return []
        opts = quant_passes.QuantOptions(self.quantize, self.group, tuple(self.keep))
        return [(f"quantize_{self.quantize.replace('-', '_')}",
                 quant_passes.SCHEMES[self.quantize](opts))]

    def describe(self) -> str:
        parts = []
        if self.prune:
            parts.append(f"prune {self.prune}")
        if self.quantize:
            parts.append(f"quantize {self.quantize}" + (f" (group {self.group})"
                                                       if self.group else ""))
        return ", ".join(parts)
