import sys

from dodoor.cli import main

sys.exit(main())
