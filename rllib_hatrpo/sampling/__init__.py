"""Sampling: `TeamEnvRunner` steps a vector of team envs (`vector_env`) into `TeamFragment`s,
which `team_batch` turns into the learner's row-aligned batch; `env_probe` builds the env from
a config on the driver."""
