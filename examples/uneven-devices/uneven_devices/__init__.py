"""uneven-devices: which strategy reaches the target soonest on a population of uneven devices."""
