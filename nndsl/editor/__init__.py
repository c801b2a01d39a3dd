"""Editor support: the formatter (`nndsl fmt`), the Pygments lexer and the language server (`nndsl lsp`)."""
