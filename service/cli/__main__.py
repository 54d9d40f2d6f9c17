"""``python -m service.cli`` = ``ddp``."""

from service.cli import main

raise SystemExit(main())
