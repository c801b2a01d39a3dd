"""``python -m nndsl.editor.lsp``: the language server over stdio."""

import sys

from nndsl.editor.lsp import main

sys.exit(main())
