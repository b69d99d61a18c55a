"""``python -m pollinate.cli``: the same as the ``pollinate`` command."""

from . import main

if __name__ == "__main__":
    main()
