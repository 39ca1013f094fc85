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
