"""Tools that use a running control plane, never part of it: `sc demo`, the load
generator (`python -m cluster.tools.load`), `sc history`/`sc report`, the CLI's tables
and `sc bench`. They may import the bring-up modules of `cluster` (local, deploy,
placement, serve_deploy); bring-up never imports them (`.importlinter`).
"""
