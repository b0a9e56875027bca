from tests.api.live import api, http  # noqa: F401  (session fixtures shared with tests/api and tests/cli)
