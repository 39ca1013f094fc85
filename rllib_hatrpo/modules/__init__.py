"""The RLModules: each agent's actor, the learner-only shared critic, and their MLP body."""
