"""``nndsl search``: architecture search over the search space a spec's model parameters declare
(``choice(...)``, ``range(...)``, see :mod:`nndsl.elab.space`), under the limits of its
``search`` section, with optuna's samplers (docs/SEARCH.md).

``objectives.py`` names what a search optimizes and in which direction; ``pareto.py`` the
non-dominated trials and the Pareto-front picture; ``rewrite.py`` writes a spec back with the
chosen values; ``study.py`` is the optuna side (samplers, storage, the trial loop shared by
several worker processes); ``run.py`` runs one search and writes its outputs; ``cli_commands.py``
is the command's parser. optuna is an optional dependency (``pip install "nndsl[search]"``),
imported only when a search runs.
"""

from nndsl.search.run import SearchResult, run_search

__all__ = ["run_search", "SearchResult"]
