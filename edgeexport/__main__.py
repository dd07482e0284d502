"""``python -m edgeexport``: the same entry point as the ``edgeexport`` console script."""

from edgeexport.cli.main import main

if __name__ == "__main__":
    main()
