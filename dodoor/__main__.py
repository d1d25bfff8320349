import sys

from dodoor.tools.cli import main

sys.exit(main())
