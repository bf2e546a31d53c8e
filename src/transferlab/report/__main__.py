"""python -m transferlab.report <multirun dir>"""

import sys

from transferlab.report.cli import main

sys.exit(main())
