"""Syntax: .nn text -> AST with source spans (lark, LALR)."""

from nndsl.syntax.parser import parse, read_source

__all__ = ["parse", "read_source"]
