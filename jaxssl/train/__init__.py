"""Training: state, optimisers, the jitted step, the loop and checkpoints."""
