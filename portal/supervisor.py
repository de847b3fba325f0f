"""Keep long-running child processes alive: what a command does as supervisor.

:func:`supervise` starts each child, restarts one that dies (after 1 s,
doubling up to 30 s while it keeps dying; back to 1 s once it ran for a
minute) while the others go on, and on SIGTERM or SIGINT passes the signal
to every child and returns when they have exited. ``manage.py sample_gpus``
runs its sampler under it; ``run_worker`` supervises its two workers the
same way (its own loop predates this module).
"""

import signal
import subprocess
import time

__all__ = ["supervise"]

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
# A child that ran this long before dying starts again after FIRST_DELAY.
HEALTHY_AFTER = 60.0


def supervise(children, *, env=None, cwd=None, log=print, restart=True):
    """Run ``children`` (``{name: argv}``) until a signal; return exit codes.

    Without ``restart`` the children run once (a burst): the call returns
    when all have exited. ``log`` receives one line per restart.
    """
    processes, delays, stopping = {}, {}, []

    def spawn(name):
        child = subprocess.Popen(children[name], env=env, cwd=cwd)
        child.started_at = time.monotonic()
        processes[name] = child

    def forward(signum, frame):
        stopping.append(signum)
        for child in processes.values():
            if child.poll() is None:
                child.send_signal(signum)

    for name in children:
        spawn(name)
        delays[name] = FIRST_DELAY
    previous = {
        sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        while any(child.poll() is None for child in processes.values()) or (
            restart and not stopping
        ):
            if restart and not stopping:
                for name, child in list(processes.items()):
                    code = child.poll()
                    if code is None:
                        continue
                    if time.monotonic() - child.started_at > HEALTHY_AFTER:
                        delays[name] = FIRST_DELAY
                    log(
                        f"{name} exited with {code}; restarting it in "
                        f"{delays[name]:.0f} s."
                    )
                    time.sleep(delays[name])
                    delays[name] = min(MAX_DELAY, delays[name] * 2)
                    if not stopping:
                        spawn(name)
            time.sleep(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return {name: child.wait() for name, child in processes.items()}
