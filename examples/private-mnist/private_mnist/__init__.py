"""private-mnist: W1's skewed digits trained with client clipping, SecAgg+ and server DP noise."""
