"""``python -m redis_spanner.infra.cli``: the same command line as ``redis-spanner``."""

from redis_spanner.infra.cli.app import main

if __name__ == "__main__":
    main()
