"""utils.common.isolation: a function run in a spawned process, its result brought back."""
import os

import pytest

from utils.common import isolation


def test_the_result_comes_back_from_another_process():
    assert isolation.run_in_fresh_process(dict, {"a": 1, "b": [2, 3]}) == {"a": 1, "b": [2, 3]}
    assert isolation.run_in_fresh_process(os.getpid, {}) != os.getpid()


def test_a_failing_function_is_named_in_the_error():
    with pytest.raises(RuntimeError, match="the bad step: its process exited with code 1"):
        isolation.run_in_fresh_process(int, {"x": "not a number"}, name="the bad step")
