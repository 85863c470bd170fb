"""conciser: RL fine-tuning that makes reasoning models concise.

The installed namespace maps `conciser.rewards`, `conciser.trainers` and `conciser.eval` to the
repository's top-level `rewards/`, `trainers/` and `eval/` folders.
"""

__version__ = "0.1.0"
