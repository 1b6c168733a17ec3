"""``python -m keyguard ...``: the ``keyguard`` command."""

from keyguard.cli.main import main

if __name__ == "__main__":  # pragma: no cover
    main()
