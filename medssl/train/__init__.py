"""Training: optimisers and schedules (the loop, checkpoints and monitoring build on them)."""
