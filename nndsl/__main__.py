import sys

from nndsl.cli import main

sys.exit(main())
