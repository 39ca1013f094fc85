"""Running it for long and on clusters: crash-safe checkpoints that know their algorithm, and
resource checks before any actor starts."""
