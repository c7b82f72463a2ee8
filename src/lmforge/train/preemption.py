"""Preemption: a cloud machine about to be taken back sends SIGTERM and waits a grace
period; Ctrl-C sends SIGINT. Either one during training finishes the current optimizer
step, saves a checkpoint and stops the run cleanly (run.json status `interrupted`, exit 0),
so `--resume` continues exactly where it stopped. A second signal stops at once; a save that
overruns `train.preemption_grace_s` ends the process with exit code 1 (the previous
checkpoint stays intact).

With several processes, the request is combined over all of them at every step (an
all-reduce of one flag), so they stop after the same step.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import torch
from transformers import TrainerCallback

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preemption(TrainerCallback):
    def __init__(self, grace_seconds: float):
        self.grace_seconds = grace_seconds
        self.requested = False
        self.stopped_at: int | None = None
        """The step whose checkpoint was saved on request; None when training ran to its end."""
        self._previous: dict[int, object] = {}
        self._watchdog: threading.Timer | None = None

    # -- signals -----------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        if self.requested:  # the second signal: stop now, as without this handler
            self._restore()
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopping without a checkpoint")
        self.requested = True
        print(
            f"[lmforge] {signal.Signals(signum).name}: finishing this step, saving a checkpoint, then stopping "
            f"(grace {self.grace_seconds:g} s; signal again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
        self._watchdog = threading.Timer(self.grace_seconds, self._overdue)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _overdue(self) -> None:
        print(
            f"[lmforge] error: the checkpoint was not saved within the {self.grace_seconds:g} s grace period "
            "(train.preemption_grace_s); stopping; --resume continues from the last complete checkpoint",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    # -- the training loop ---------------------------------------------------------

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():  # Python delivers signals there only
            self._previous = {signum: signal.signal(signum, self._on_signal) for signum in SIGNALS}

    def on_step_end(self, args, state, control, **kwargs):
        if _any_process(self.requested):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        """Cancel the grace timer and put the previous signal handlers back (also when
        training ended with an exception, which skips on_train_end)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._restore()


def _any_process(flag: bool) -> bool:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    if torch.distributed.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)])
    if torch.distributed.get_backend() == "nccl":
        value = value.cuda()
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())
