import sys

from ftwatch.app.cli import main

sys.exit(main())
