"""Recording what happened during a run and condensing it into summary metrics."""
