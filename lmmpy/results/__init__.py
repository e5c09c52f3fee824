"""The results layer: a fitted model's estimates, its variance components and its summary."""
