"""Scopes of a model's parameters, as the train section names them (``freeze``, ``init``'s
``only``, a recipe's ``adapt``): ``conv1`` holds ``conv1.weight`` and ``conv1.bias``."""

from __future__ import annotations


def scope_names(compiled) -> list[str]:
    """Every parameter name of ``compiled`` and every scope above one, in spec order."""
    from nndsl.ir.weights import spec_params
    names = [n.name for n in spec_params(compiled.graph)]
    scopes = []
    for n in names:
        parts = n.split(".")
        for i in range(1, len(parts)):
            scopes.append(".".join(parts[:i]))
    return list(dict.fromkeys(scopes + names))


def in_scope(name: str, scope: str) -> bool:
    """Whether the parameter ``name`` is ``scope`` or lies under it."""
    return name == scope or name.startswith(scope + ".")
