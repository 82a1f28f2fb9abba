import pytest

from fastconv import benchmark as fastconv_bench


@pytest.fixture(scope="session", autouse=True)
def pinned_threads():
    """Every implementation in a table runs with the same thread count (printed in the header)."""
    pinned = fastconv_bench.pin_threads(fastconv_bench.get_num_threads())
    print(f"\nthreads pinned: {', '.join(pinned)}")
    return pinned
