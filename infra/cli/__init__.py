"""The ``redis-spanner`` command line: the app and its top-level commands (``app``), one module
per command group, and what every command shares at the edge: errors turned into one line and
an exit status, log output, reachability checks, tables, and the audit trail of operator
actions."""
