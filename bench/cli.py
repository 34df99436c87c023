"""Command-line entry point `mlpbench`."""
import sys


def main(argv=None) -> int:
    print("mlpbench: sub-commands: run, show (engine in progress)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
