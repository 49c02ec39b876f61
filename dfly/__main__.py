import sys

from dfly.cli import main

sys.exit(main())
