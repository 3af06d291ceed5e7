"""What every layer shares: domain errors, settings helpers, statistics."""
