"""``python -m keypoints.cli`` runs the command line (as ``python -m keypoints``)."""

import sys

from . import main

sys.exit(main())
