"""The algorithms on RLlib's split: configs (`config`, `hatrpo`, `happo`, `trpo`), the
training iteration (`algorithm`), and the learners (`learner`: advantages, sequential update,
critic fit; `hatrpo_learner`, `first_order_learner`: the agent steps)."""
