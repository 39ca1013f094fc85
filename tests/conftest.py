import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from local_cluster import local_cluster  # noqa: E402, F401  (the two-node cluster fixture)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session (2 CPUs, no dashboard)."""
    import ray

    # ignore_reinit_error: a test that built an algorithm first may have started Ray already
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


# Slow tests of modules that carry no marks of their own, marked here by name (file: tests);
# durations on the loaded 2-core machine.
SLOW_BY_NAME = {
    "test_cli.py": {
        "test_every_algorithm_trains_resumes_and_evaluates_with_relative_paths",  # 13-22 s each
        "test_resume_continues_counters_and_progress",  # 5 s
        "test_tune_runs_the_search_and_reports_the_best_trial",  # 27 s
    },
    "test_config.py": {"test_errors_come_before_any_ray_actor"},  # 12 s
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.originalname in SLOW_BY_NAME.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)
