"""``python -m echo_monai.apps.deploy -i INPUT -o OUTPUT -m MODEL``, and the entry a packaged application runs."""

import sys

from echo_monai.apps.deploy.app import main

if __name__ == "__main__":
    sys.exit(main())
