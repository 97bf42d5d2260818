"""The method: networks, optimiser, replay buffer, constraint signals, penalties, multipliers and the SAC update
(docs/algorithm.md §2-§6)."""
