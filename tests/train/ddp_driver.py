"""torchrun driver for tests/train/test_distributed.py (not a test module itself).

``torchrun --nproc_per_node=2 tests/train/ddp_driver.py CONFIG DUMP_DIR [--die-after-step N | --hang-after-step N]``
runs :class:`medssl.train.loop.Pretrainer` on CONFIG and has every rank save what it ended
with (model and objective weights, support set, per-step losses) to ``DUMP_DIR/rank{r}.pt``,
so a test can check that the ranks agree. With ``--die-after-step N`` rank 1 exits
abruptly (``os._exit(1)``, no clean-up) right after step N, as a crashed worker would; with
``--hang-after-step N`` it stops responding instead (sleeps, and dies on SIGTERM), as a
deadlocked worker would; with ``--signal-after-step N`` only rank 1 gets SIGTERM after step N.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path
from typing import Any, List

import torch

from medssl.train.config import load_pretrain_config
from medssl.train import distributed as D
from medssl.train.loop import Pretrainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("dump_dir")
    ap.add_argument("--die-after-step", type=int, default=None)
    ap.add_argument("--hang-after-step", type=int, default=None)
    ap.add_argument("--signal-after-step", type=int, default=None)
    args = ap.parse_args()

    trainer = Pretrainer(load_pretrain_config(args.config), progress=False)
    losses: List[float] = []
    step = trainer.train_step

    def recording_step(batch: Any) -> Any:
        loss, diag = step(batch)
        losses.append(loss)
        if trainer.dist.rank == 1 and trainer.step == args.die_after_step:
            os._exit(1)
        if trainer.dist.rank == 1 and trainer.step == args.hang_after_step:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the loop's handler would only set a flag
            time.sleep(600)
        if trainer.dist.rank == 1 and trainer.step == args.signal_after_step:
            os.kill(os.getpid(), signal.SIGTERM)  # only this rank is told to stop
        return loss, diag

    trainer.train_step = recording_step  # type: ignore[method-assign]
    try:
        trainer.fit()
    finally:
        D.cleanup()
    dump = {
        "rank": trainer.dist.rank,
        "world_size": trainer.dist.world_size,
        "step": trainer.step,
        "losses": torch.tensor(losses, dtype=torch.float64),
        "model": trainer.model.state_dict(),
        "objective": trainer.objective.state_dict(),
        "support_set": trainer.support.state_dict() if trainer.support is not None else None,
    }
    out = Path(args.dump_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(dump, out / f"rank{trainer.dist.rank}.pt")


if __name__ == "__main__":
    main()
