"""Elaboration: AST -> typed graph IR (names, blocks, loops, parameters, shape checks)."""

from nndsl.elab.elaborate import Elaborator
from nndsl.elab.loader import Program, load_program

__all__ = ["Elaborator", "Program", "load_program"]
