"""Which checkpoint a pretraining run resumes from (``train.resume`` / ``--resume``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from medssl.errors import MedSSLError
from medssl.train import distributed as D
from medssl.train.checkpoint_rotation import CheckpointManager


def find_resume(resume: Union[bool, str], ckpts: CheckpointManager) -> Optional[Path]:
    """The checkpoint to resume from: none (``False``), the newest in the run directory
    (``True``: one must exist; ``"auto"``: if any) or the file ``resume`` names."""
    if resume is False:
        return None
    if resume is True or resume == "auto":
        found = ckpts.latest()
        if found is None and resume is True:
            raise MedSSLError(f"train.resume is true but {ckpts.dir} holds no checkpoint")
        return found
    path = Path(str(resume))
    if not path.is_file():
        raise MedSSLError(f"train.resume points at {path}, which does not exist")
    return path


def agree_on_resume(resume: Optional[Path], dist: D.DistInfo) -> Optional[Path]:
    """Rank 0's choice on every rank, so no rank resumes while another starts afresh (e.g.
    a node that cannot see the checkpoint directory); a rank that cannot read it fails."""
    if not dist.enabled:
        return resume
    chosen = D.broadcast_object(resume if dist.is_main else None)
    if chosen is not None and not Path(chosen).is_file():  # type: ignore[arg-type]
        raise D.DistributedError(
            f"rank {dist.rank} cannot read the checkpoint {chosen} that rank 0 resumes from; "
            "out_dir must be on a filesystem every node can read"
        )
    return chosen  # type: ignore[return-value]
