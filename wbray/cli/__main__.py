import sys

from wbray.cli import main

sys.exit(main())
