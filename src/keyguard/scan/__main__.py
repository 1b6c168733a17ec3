"""``python -m keyguard.scan``: the ``keyguard scan`` command on its own."""

from keyguard.scan.cli import scan_command

if __name__ == "__main__":  # pragma: no cover
    scan_command(prog_name="keyguard scan")
