import sys

from ftwatch.cli import main

sys.exit(main())
