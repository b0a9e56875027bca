"""`sc bench`: benchmarks that print tables and write JSON and PNG; not part of the tests.

Each verb has its module (`reaction`, `scale`, ...) with the measurement and its CLI
`command`; `common` holds what they share. Ray is imported only when a bench runs.
"""
