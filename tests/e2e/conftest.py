import pytest

from tests.e2e.harness import OpenGSLB, stop_nodes


@pytest.fixture
def gslb_factory(tmp_path):
    """Start real opengslb processes; every one is stopped at the end of the test."""
    started = []

    def start(config_text, wait=True, **kwargs):
        directory = tmp_path / f"node{len(started)}"
        directory.mkdir()
        node = OpenGSLB(directory, config_text, **kwargs)
        started.append(node)
        return node.start(wait=wait)

    yield start
    stop_nodes(started)


@pytest.fixture
def backends():
    """Real loopback backends created by the test, all stopped at the end."""
    made = []

    def add(backend):
        made.append(backend)
        return backend

    yield add
    for backend in made:
        backend.stop()
