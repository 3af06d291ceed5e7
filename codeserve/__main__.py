"""`python -m codeserve ...`, the same as the `codeserve` command."""

import sys

from codeserve.cli.main import main

sys.exit(main())
