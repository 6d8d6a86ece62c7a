"""Where :mod:`fedrs.procs` (the process-tree watchdog) lived while only Flower deployments used
it; kept so that ``from fedrs.federated.flower.reaper import MARKER_VAR, Watchdog`` goes on working.
"""

from fedrs.procs import MARKER_VAR, Watchdog, marked, process_alive, process_start_time, sweep, watch

__all__ = ["MARKER_VAR", "marked", "process_alive", "process_start_time", "sweep", "watch", "Watchdog"]
