"""The hand-off from ``on_cfg_denoiser`` to the callbacks after the model (which get neither ``p`` nor sigma).

One stack per thread, of weak references to jobs: every model call pushes its entry (an empty one when it has
no correction to run), and the after-CFG callback of the same call pops it. A nested generation (another extension calling ``process_images`` between the two callbacks) pushes
and pops its own entry above it, so each prediction meets its own call; another thread has its own stack. Weak
references never keep a finished or failed generation (and its tensors) alive.
"""

from __future__ import annotations

import threading
import weakref
from typing import Optional

from lib_latentfix.runtime import Job

_local = threading.local()


def _stack() -> list:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _nobody() -> None:
    return None


def push(job: Optional[Job]) -> None:
    """A model call starts on this thread; ``job`` corrects its predictions (None: nothing to correct)."""
    stack = _stack()
    while len(stack) > 64 and stack[0]() is None:  # entries of calls that raised before their after-CFG
        stack.pop(0)
    stack.append(_nobody if job is None else weakref.ref(job))


def peek() -> Optional[Job]:
    """The job of the model call in progress on this thread, if any."""
    stack = _stack()
    return stack[-1]() if stack else None


def pop() -> Optional[Job]:
    """The model call in progress on this thread is over: its job (None if it had none)."""
    stack = _stack()
    return stack.pop()() if stack else None


def forget(job: Job) -> None:
    """Drop every entry of ``job`` on this thread (its generation is over, finished or not)."""
    _local.stack = [ref if ref() is not job else _nobody for ref in _stack()]


def pending() -> int:
    """Entries on this thread's stack (for tests)."""
    return len([ref for ref in _stack() if ref() is not None])
