from __future__ import annotations

import pytest

from tests.reliability.figures import publish
from tests.test_apply import workload, ws  # noqa: F401  (the engine-with-test-workload fixtures)


@pytest.fixture
def figures(capsys, request):
    """figures(suite, title, values): record the calling suite's figures and print them."""

    def emit(suite: str, title: str, values: dict[str, object]) -> None:
        text = publish(suite, title, values, request.node.path)
        with capsys.disabled():
            print(text, end="")

    return emit
