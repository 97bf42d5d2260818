"""statewise: state-wise safe reinforcement learning."""
