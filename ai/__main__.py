import sys

from ai.cli import main

sys.exit(main())
