"""`python -m grlib ...`: the course's command line (`grlib.course.cli`)."""
import sys

from grlib.course.cli import main

sys.exit(main())
