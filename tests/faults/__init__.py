import pytest

# The harness asserts the end state of every fault test: rewritten as a test module is, a
# failing assertion there shows the values it compared.
pytest.register_assert_rewrite("tests.faults.harness")
