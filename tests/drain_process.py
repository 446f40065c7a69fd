"""Run one drain in its own process: ``python -m tests.drain_process START BUDGET IDLE``.

The tests start several at once to race real worker processes against one database. Each
waits until the wall-clock time START so they begin together, then prints its attempt count.
"""

from __future__ import annotations

import os
import sys
import time

from app import create_app
from app.deliveries.jobs import drain


def main() -> None:
    start, budget, idle = (float(a) for a in sys.argv[1:4])
    app = create_app(dict(os.environ), instance_path=os.environ["HERALD_INSTANCE"])
    with app.app_context():
        time.sleep(max(0.0, start - time.time()))
        made = drain(budget=budget, idle=idle)
    print(made, flush=True)


if __name__ == "__main__":
    main()
