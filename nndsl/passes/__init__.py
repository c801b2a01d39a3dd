"""Graph passes and the optimization pipelines (``O0``/``O1``/``O2``).

``PIPELINES`` is the one table that names the passes of each level; the CLI, the API and the
tests read it. ``verify`` runs before the first pass and after every pass.
"""

from nndsl.passes.pipeline import PASSES, PIPELINES, PassRecord, PipelineRun, run_pipeline

__all__ = ["PIPELINES", "PASSES", "run_pipeline", "PassRecord", "PipelineRun"]
