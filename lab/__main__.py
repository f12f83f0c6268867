"""Runs the lab's command line: python -m lab up|down|show|step STEP (see lab/cli.py)."""

import sys

from lab.cli import main

sys.exit(main())
